"""Harness for our Python pilot-daemon in the test namespace, next to the official binaries.

``our_daemons(name, registry, beacon, *flags)`` starts ``python -m pilot_daemon`` in the ``netns`` fixture's
namespace and returns a handle with the same interface as conftest's ``OfficialDaemon`` (``ctl``, ``info``,
``socket``, ``env``), so one test drives the official pilotctl against either daemon.
Import the fixture into a test module: ``from daemon_harness import our_daemons  # noqa: F401``.
``metrics_port``, ``scrape`` and ``raw_http`` read its ``-metrics-listen`` endpoint from inside a namespace.
"""
from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pilot_harness import NetNS, OfficialDaemon, wait_for


class OurDaemon(OfficialDaemon):
    """Our daemon; ``pilotctl`` calls still use the official client binary."""

    def argv(self, name: str, *flags: str) -> list[str]:
        return [sys.executable, "-m", "pilot_daemon", "-socket", str(self.socket), "-registry", self.registry,
                "-beacon", self.beacon, "-listen", "127.0.0.1:0", "-identity", str(self.home / "identity.json"),
                "-hostname", name, "-log-format", "json", "-log-level", "debug", *flags]


@pytest.fixture
def our_daemons(official_bin, netns, tmp_path):
    started: list[OurDaemon] = []

    def start(name: str, registry: str, beacon: str, *flags: str, timeout: float = 20,
              env: dict[str, str] | None = None, wait: bool = True) -> OurDaemon:
        """``env`` adds to the environment (of the daemon and of its pilotctl calls); ``wait=False``
        returns at once instead of waiting for the socket."""
        home = tmp_path / name
        home.mkdir(exist_ok=True)
        d = OurDaemon(netns, official_bin, home, registry, beacon, extra_env=dict(env or {}))
        d.proc = netns.spawn(d.argv(name, *flags), env=d.env(), log=d.log)
        started.append(d)
        if not wait:
            return d
        wait_for(lambda: d.proc.poll() is not None or d.socket.exists(), timeout, f"our daemon {name}'s socket")
        assert d.proc.poll() is None, f"our pilot-daemon {name} exited: {d.log.read_text()[-3000:]}"
        return d

    yield start
    for d in started:
        if d.proc is not None:
            netns.stop(d.proc)


class RawIPC:
    """A bare IPC client for byte-level probes (no official driver in between)."""

    def __init__(self, path, timeout: float = 10) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, cmd: int, payload: bytes = b"") -> bytes:
        self.send(struct.pack(">I", 1 + len(payload)) + bytes((cmd,)) + payload)
        return self.read_frame()

    def read_frame(self) -> bytes:
        """One whole frame, length prefix included (the form the capture vectors use)."""
        head = self._exactly(4)
        return head + self._exactly(struct.unpack(">I", head)[0])

    def _exactly(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self.sock.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("daemon closed the IPC connection")
            buf += chunk
        return buf

    def close(self) -> None:
        self.sock.close()


def wait_socket_gone(path, timeout: float = 10) -> None:
    wait_for(lambda: not path.exists(), timeout, f"{path} to disappear")


def elapsed_ms(t0: float) -> float:
    return (time.monotonic() - t0) * 1000


# -- our daemon's -metrics-listen -------------------------------------------------------------------------
_HTTP_CLIENT = """
import socket, sys
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])), 5)
sock.settimeout(5)
sock.sendall(sys.stdin.buffer.read())
reply = b""
while chunk := sock.recv(65536):
    reply += chunk
sys.stdout.buffer.write(reply)
"""


def metrics_port(d: OurDaemon, timeout: float = 10) -> int:
    """The port of our daemon's metrics listener, from its "metrics listening" log line."""
    def find():
        for line in d.log.read_text().splitlines():
            if '"metrics listening"' in line:
                return int(json.loads(line)["addr"].rsplit(":", 1)[1])
        return 0
    return wait_for(find, timeout, "the metrics listener")


def raw_http(ns: NetNS, port: int, request: bytes, host: str = "127.0.0.1") -> bytes:
    """Send ``request`` as is to ``host:port`` inside ``ns``; the whole reply (the server closes)."""
    proc = subprocess.run(ns.argv([sys.executable, "-c", _HTTP_CLIENT, host, str(port)]), input=request,
                          capture_output=True, timeout=20)
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def scrape(ns: NetNS, port: int) -> dict[str, list[tuple[dict[str, str], float]]]:
    """GET /metrics -> {sample name: [(labels, value)]}, parsed by prometheus_client."""
    reply = raw_http(ns, port, b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def metric(samples: dict, name: str, **labels: str) -> float:
    """The value of the one sample ``name`` whose labels include ``labels``."""
    found = [v for got, v in samples.get(name, []) if labels.items() <= got.items()]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]
