"""`-metrics-listen` (a PilotMesh extension): Prometheus text at /metrics read from the live daemon at scrape
time; the transport in use, counters that grow with traffic, and bad requests answered with an error status."""
from __future__ import annotations

import subprocess
import sys

import pytest

from daemon_harness import our_daemons  # noqa: F401  (fixture)
from daemon_harness import metric, metrics_port, raw_http, scrape
from netlab import ok, rtts
from pilot_daemon import config
from pilot_daemon.io.metrics import parse_listen

pytestmark = pytest.mark.timeout(90)


def status(reply: bytes) -> int:
    """The status code of a raw HTTP reply (HTTP/1.0 or 1.1)."""
    version, code, _ = reply.split(b" ", 2)
    assert version in (b"HTTP/1.0", b"HTTP/1.1"), reply[:200]
    return int(code)


def test_the_flag_its_environment_variable_and_bad_addresses():
    parsed = config.resolve(config.parse_argv([]), {"PILOT_METRICS_LISTEN": "127.0.0.1:9103"}, None)
    assert parsed["metrics_listen"] == "127.0.0.1:9103"
    assert config.resolve(config.parse_argv([]), {}, None)["metrics_listen"] == ""    # off by default
    assert "PilotMesh extension" in config.BY_NAME["metrics-listen"].help
    assert parse_listen(":9103") == ("", 9103) and parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9103", "host:port", "127.0.0.1:70000"):
        with pytest.raises(ValueError, match="-metrics-listen"):
            parse_listen(bad)
    run = subprocess.run([sys.executable, "-m", "pilot_daemon", "-registry", "127.0.0.1:1", "-beacon", "127.0.0.1:1",
                          "-metrics-listen", "nowhere"], capture_output=True, text=True, timeout=30)
    assert run.returncode == 1 and "-metrics-listen 'nowhere': use HOST:PORT" in run.stderr, run.stderr


def test_metrics_show_the_transport_and_counters_that_grow(rendezvous, our_daemons):
    rdv = rendezvous()
    a = our_daemons("node-a", rdv.registry, rdv.beacon, "-public", "-metrics-listen", "127.0.0.1:0")
    b = our_daemons("node-b", rdv.registry, rdv.beacon, "-public")
    port = metrics_port(a)
    info = a.info()
    before = scrape(a.ns, port)
    assert metric(before, "pilot_daemon_transport_info", mode="udp", transport="udp",
                  path=info["transport_path"]) == 1
    assert metric(before, "pilot_daemon_node_info", node_id=str(info["node_id"]), hostname="node-a") == 1
    assert metric(before, "pilot_daemon_transport_switches_total") == 0
    assert metric(before, "pilot_daemon_compat_tunnel_up") == 0
    assert metric(before, "pilot_daemon_uptime_seconds") >= 0

    assert rtts(ok(a.ctl("ping", b.info()["address"], "--count", "3", timeout=30)))
    after = scrape(a.ns, port)
    for name in ("pilot_daemon_packets_sent_total", "pilot_daemon_packets_received_total",
                 "pilot_daemon_bytes_sent_total", "pilot_daemon_bytes_received_total"):
        assert metric(after, name) > metric(before, name), name
    assert metric(after, "pilot_daemon_tunnel_encryption_total", result="ok") >= 3
    assert metric(after, "pilot_daemon_tunnel_encryption_total", result="fail") == 0
    assert metric(after, "pilot_daemon_peers") == metric(after, "pilot_daemon_encrypted_peers") == 1

    tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)) + b"\r\n\r\n"
    for request, code in ((tls_hello, 400), (b"HELLO there\r\n\r\n", 400), (b"GET /%%%\x00 HTTP/1.1\r\n\r\n", 400),
                          (b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404),
                          (b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", 405)):
        reply = raw_http(a.ns, port, request)
        assert status(reply) == code, (request, reply[:300])
    again = scrape(a.ns, port)
    assert metric(again, "pilot_daemon_packets_sent_total") >= metric(after, "pilot_daemon_packets_sent_total")
    assert a.proc.poll() is None and a.info()["node_id"] == info["node_id"]
    assert "watching network changes" not in a.log.read_text()     # netlink only in -transport auto
