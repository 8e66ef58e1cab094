"""Helpers for running the official Pilot Protocol binaries against our code (imported by conftest.py and
tests: a uniquely named module, because every test folder's conftest.py is imported under the same name).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from pilotmesh_controlplane.pytest_plugin import unavailable as missing  # noqa: F401 - skip locally, fail in CI
from pilotmesh_controlplane.tools import OFFICIAL_PILOT_VERSION as OFFICIAL_VERSION  # noqa: F401
from pilotmesh_controlplane.tools import official_pilot_dir

OFFICIAL_DIR = official_pilot_dir()


class NetNS:
    """A network namespace with only `lo`. Everything started here is stopped by pid on close."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.procs: list[subprocess.Popen] = []

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], *, env: dict[str, str] | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(argv), env=env, capture_output=True, text=True, timeout=timeout)

    def spawn(self, argv: list[str], *, env: dict[str, str] | None = None, log: Path) -> subprocess.Popen:
        with open(log, "ab") as out:
            proc = subprocess.Popen(self.argv(argv), env=env, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen, timeout: float = 5) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    def hosts(self, names: dict[str, str]) -> None:
        """Name -> IP entries seen inside the namespace (`ip netns exec` mounts /etc/netns/NAME/hosts)."""
        etc = Path("/etc/netns") / self.name
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{ip} {name}" for name, ip in names.items())]
        (etc / "hosts").write_text("\n".join(lines) + "\n")

    def close(self) -> None:
        for proc in list(self.procs):
            self.stop(proc)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / self.name, ignore_errors=True)


def sockets_of(pid: int) -> dict[str, list[tuple[str, str]]]:
    """{'tcp': [(local, remote)], 'udp': [...]} of the sockets process ``pid`` holds (its netns' /proc tables)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            m = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(fd))
        except OSError:
            continue
        if m:
            inodes.add(m.group(1))
    out: dict[str, list[tuple[str, str]]] = {"tcp": [], "udp": []}
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if cols[9] in inodes:
                out[table.rstrip("6")].append((cols[1], cols[2]))
    return out



def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@dataclass
class Rendezvous:
    """Our pilot-rendezvous inside a namespace; `restart()` keeps the same database and ports."""
    ns: NetNS
    workdir: Path
    registry: str = "127.0.0.1:9000"
    beacon: str = "127.0.0.1:9001"
    db: Path = field(default=None)  # type: ignore[assignment]
    flags: list[str] = field(default_factory=list)      # e.g. the TLS listener's
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.workdir / "rendezvous.log"

    def start(self) -> "Rendezvous":
        self.db = self.db or self.workdir / "rendezvous.sqlite"
        offset = self.log.stat().st_size if self.log.exists() else 0
        self.proc = self.ns.spawn([sys.executable, "-m", "pilot_rendezvous", "-registry-listen", self.registry,
                                   "-beacon-listen", self.beacon, "-db", str(self.db), "-log-format", "json",
                                   "-log-level", "debug", *self.flags], log=self.log)
        self.starts += 1
        wait_for(lambda: self.proc.poll() is not None or b"pilot-rendezvous ready" in self.log.read_bytes()[offset:],
                 15, "pilot-rendezvous to start")
        assert self.proc.poll() is None, f"pilot-rendezvous exited: {self.log.read_text()[-2000:]}"
        return self

    def stop(self) -> int:
        return self.ns.stop(self.proc) if self.proc else 0

    def restart(self) -> "Rendezvous":
        self.stop()
        return self.start()


@dataclass
class OfficialDaemon:
    ns: NetNS
    bin_dir: Path
    home: Path
    registry: str
    beacon: str
    proc: subprocess.Popen | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def socket(self) -> Path:
        return self.home / "pilot.sock"

    @property
    def log(self) -> Path:
        return self.home / "daemon.log"

    def env(self) -> dict[str, str]:
        return {"HOME": str(self.home), "PATH": "/usr/bin:/bin", "PILOT_REGISTRY": self.registry,
                "PILOT_BEACON": self.beacon, "PILOT_SOCKET": str(self.socket), "PILOT_TELEMETRY_URL": "",
                "PILOT_MOTD_URL": "", "PILOT_NO_SKILLINJECT": "1", "PILOT_PROXY": "off", **self.extra_env}

    def ctl(self, *args: str, timeout: float = 30) -> dict:
        """`pilotctl --json ARGS` -> the parsed envelope ({"status": "ok", "data": ...} or an error)."""
        proc = self.ns.run([str(self.bin_dir / "pilotctl"), "--json", *args], env=self.env(), timeout=timeout)
        for text in (proc.stdout, proc.stderr):     # errors come on stderr
            try:
                return json.loads(text)
            except json.JSONDecodeError:
                pass
        return {"status": "error", "error": f"rc={proc.returncode} out={proc.stdout!r} err={proc.stderr!r}"}

    def info(self) -> dict:
        return self.ctl("info").get("data") or {}

