"""Harness for running the official Pilot Protocol binaries against our code.

Fixtures:
  official_bin      bin dir of the official 1.18 wheel (pip-installed once, apart from the venv)
  netns             a private network namespace with only loopback; processes run in it by pid
  official_daemons  factory: start official pilot-daemons in a namespace, call pilotctl on them
  rendezvous        factory: start our `pilot-rendezvous` in a namespace (restartable)

The official binaries only ever run inside a private namespace, with -registry/-beacon and
PILOT_REGISTRY/PILOT_BEACON set, telemetry and the MOTD feed off. With CI=true a missing
prerequisite fails the test instead of skipping it.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from pilotmesh_controlplane.tools import install_official_pilot
from pilot_harness import OFFICIAL_DIR, OFFICIAL_VERSION, NetNS, OfficialDaemon, Rendezvous, missing, wait_for


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "official: runs the official Pilot 1.18 binaries in a private netns")


@pytest.fixture(scope="session")
def official_bin() -> Path:
    try:
        return install_official_pilot()     # the same install step as `make tools`; a no-op when present
    except subprocess.CalledProcessError as exc:
        missing(f"cannot install pilotprotocol=={OFFICIAL_VERSION} into {OFFICIAL_DIR}: pip exited {exc.returncode}")


@pytest.fixture
def netns():
    if shutil.which("ip") is None or os.geteuid() != 0:
        missing("private network namespaces need root and iproute2 (`ip netns`)")
    name = f"pm-test-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode:
        missing(f"`ip netns add` failed: {made.stderr.strip()}")
    ns = NetNS(name)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield ns
    finally:
        ns.close()


@pytest.fixture
def rendezvous(netns, tmp_path):
    def make(**kw) -> Rendezvous:
        return Rendezvous(netns, tmp_path, **kw).start()
    return make


@pytest.fixture
def official_daemons(official_bin, netns, tmp_path):
    """start(name, registry, beacon, *flags, env={...}) -> a registered OfficialDaemon (node_id > 0)."""
    started: list[OfficialDaemon] = []

    def start(name: str, registry: str, beacon: str, *flags: str, timeout: float = 20,
              env: dict[str, str] | None = None) -> OfficialDaemon:
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        d = OfficialDaemon(netns, official_bin, home, registry, beacon, extra_env=dict(env or {}))
        argv = [str(official_bin / "pilot-daemon"), "-socket", str(d.socket), "-registry", registry,
                "-beacon", beacon, "-listen", "127.0.0.1:0", "-identity", str(home / "identity.json"),
                "-hostname", name, "-telemetry-url", "", "-motd-feed-url", "", "-no-skillinject",
                "-proxy", "off", "-log-format", "json", "-log-level", "debug", *flags]
        d.proc = netns.spawn(argv, env=d.env(), log=d.log)
        started.append(d)
        wait_for(lambda: d.proc.poll() is not None or d.info().get("node_id"), timeout,
                 f"official daemon {name} to register", interval=0.1)
        assert d.proc.poll() is None, f"pilot-daemon {name} exited: {d.log.read_text()[-3000:]}"
        return d

    yield start
    for d in started:
        if d.proc is not None:
            netns.stop(d.proc)
