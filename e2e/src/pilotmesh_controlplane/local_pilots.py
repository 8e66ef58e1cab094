"""A local pilot-rendezvous and Python pilot-daemons on 127.0.0.1 (for the demo): all our own code, so
nothing here reaches beyond loopback (the official binaries only ever run in private namespaces)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from . import procs


def _script(name: str) -> str:
    return str(Path(sys.executable).with_name(name)) if Path(sys.executable).with_name(name).exists() else name


class LocalPilots:
    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir)
        self.registry = f"127.0.0.1:{procs.free_port()}"
        self.beacon = f"127.0.0.1:{procs.free_port()}"
        self.pids: list[int] = []

    def start_rendezvous(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pids.append(procs.spawn([_script("pilot-rendezvous"), "-registry-listen", self.registry,
                                      "-beacon-listen", self.beacon, "-db", str(self.workdir / "rendezvous.sqlite")],
                                     self.workdir / "rendezvous.log"))

    def start_daemon(self, name: str) -> Path:
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        sock = home / "pilot.sock"
        self.pids.append(procs.spawn([_script("pilot-daemon"), "-socket", str(sock), "-registry", self.registry,
                                      "-beacon", self.beacon, "-listen", "127.0.0.1:0", "-identity",
                                      str(home / "identity.json"), "-hostname", name, "-public"],
                                     self.workdir / f"{name}.log"))
        procs.wait_until(f"pilot-daemon {name} socket", sock.exists, 30, [self.workdir / f"{name}.log"])
        return sock

    def stop(self) -> None:
        for pid in reversed(self.pids):
            procs.stop(pid, timeout=10)
        self.pids.clear()

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)
