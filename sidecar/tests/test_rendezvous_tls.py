"""Interop through the single TLS listener: official 1.18 daemons in `-transport compat` (registry
over TLS + WSS beacon, SNI-routed on one port) with UDP daemons, in a private netns; refusals of bad
clients while they run; and the startup errors for unusable certificates."""
from __future__ import annotations

import datetime
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from pilot_harness import sockets_of, wait_for
from pilot_rendezvous.cli import build_parser, main
from pilot_rendezvous.tlsfiles import make_ca, make_leaf, write_pair

REG, BEA, PORT = "registry.pilot.test", "beacon.pilot.test", 443
COMPAT = ("-transport", "compat", "-compat-beacon", f"wss://{BEA}/v1/compat")


def _ok(envelope: dict) -> dict:
    assert envelope.get("status") == "ok", envelope
    return envelope["data"]


class Lab:
    """Our rendezvous with the TLS listener in a netns whose /etc/hosts knows the two SNI names."""

    def __init__(self, netns, rendezvous, official_daemons, tmp_path: Path) -> None:
        self.ns, self.daemons, self.dir = netns, official_daemons, tmp_path / "tls"
        self.dir.mkdir()
        self.ca = make_ca("pilotmesh test CA")
        (self.dir / "ca.pem").write_bytes(self.ca[0])
        self.cert, self.key = self.dir / "tls.crt", self.dir / "tls.key"
        write_pair(self.cert, self.key, *make_leaf(*self.ca, [REG, BEA]))
        netns.hosts({REG: "127.0.0.1", BEA: "127.0.0.1"})
        self.rdv = rendezvous(flags=["-tls-listen", f"127.0.0.1:{PORT}", "-tls-cert", str(self.cert),
                                     "-tls-key", str(self.key), "-domain", "pilot.test",
                                     "-tls-reload-interval", "0.3", "-metrics-listen", "127.0.0.1:9102"])
        self.fingerprint = next(e["fingerprint"] for e in self.events() if e.get("msg") == "TLS listening")

    def events(self) -> list[dict]:
        out = []
        for line in self.rdv.log.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                pass
        return out

    def compat(self, name: str, *flags: str):
        """The daemon gets the TLS registry by flag; PILOT_REGISTRY (read by pilotctl, whose own
        registry lookups speak plain TCP in 1.18) is our plain port. The flag wins in the daemon."""
        return self.daemons(name, f"{REG}:{PORT}", self.rdv.beacon, *COMPAT, *flags,
                            env={"SSL_CERT_FILE": str(self.dir / "ca.pem"), "PILOT_REGISTRY": self.rdv.registry})

    def udp(self, name: str, *flags: str):
        return self.daemons(name, self.rdv.registry, self.rdv.beacon, *flags)

    def python(self, code: str, *args: str, timeout: float = 20) -> str:
        proc = self.ns.run([sys.executable, "-c", code, *args], timeout=timeout,
                           env={**os.environ, "SSL_CERT_FILE": str(self.dir / "ca.pem")})
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    def metrics(self) -> str:
        return self.python("import urllib.request as u; print(u.urlopen('http://127.0.0.1:9102/metrics').read().decode())")


@pytest.fixture
def lab(netns, rendezvous, official_daemons, tmp_path) -> Lab:
    return Lab(netns, rendezvous, official_daemons, tmp_path)


def _rtts(ping: dict) -> list[float]:
    assert not ping["timeout"] and ping["results"], ping
    return [r["rtt_ms"] for r in ping["results"]]


@pytest.mark.official
@pytest.mark.timeout(90)
def test_compat_daemon_reaches_udp_daemons_through_one_tls_port(lab):
    c = lab.compat("node-c", "-public")
    u, v = lab.udp("node-u", "-public"), lab.udp("node-v", "-public")
    info_c = c.info()
    assert info_c["transport"] == "compat" and info_c["hostname"] == "node-c"
    mixed_in = _rtts(_ok(u.ctl("ping", info_c["address"], "--count", "3", timeout=40)))
    mixed_out = _rtts(_ok(c.ctl("ping", u.info()["address"], "--count", "3", timeout=40)))
    direct = _rtts(_ok(u.ctl("ping", v.info()["address"], "--count", "3", timeout=40)))

    held = sockets_of(c.proc.pid)
    assert held["udp"] == [], held                       # compat: no UDP socket at all
    remote_ports = {int(remote.rsplit(":", 1)[1], 16) for _, remote in held["tcp"]}
    assert remote_ports == {PORT}, held                   # registry pool and WSS share the one TLS port

    events = lab.events()
    assert any(e.get("msg") == "compat node connected" and e["node_id"] == info_c["node_id"] for e in events)
    challenge = next(json.loads(e["text"]) for e in events if e.get("msg") == "compat auth_challenge")
    reply = next(json.loads(e["text"]) for e in events if e.get("msg") == "compat auth_reply")
    assert set(challenge) == {"type", "nonce", "ts"} and set(reply) == {"type", "node_id", "public_key", "sig"}
    assert reply["node_id"] == info_c["node_id"] and reply["public_key"] == info_c["public_key"]
    metrics = lab.metrics()
    assert "pilot_rendezvous_compat_sessions 1.0" in metrics
    assert 'pilot_rendezvous_tls_connections_total{route="registry"}' in metrics
    relayed = re.search(r'pilot_rendezvous_relayed_frames_total\{path="compat"\} (\d+)', metrics)
    assert relayed and int(relayed.group(1)) > 0
    print(f"\nFIGURES ping_rtt_ms udp->compat={mixed_in} compat->udp={mixed_out} udp->udp={direct} "
          f"compat_sockets={held}")


@pytest.mark.official
@pytest.mark.timeout(90)
def test_two_compat_daemons_one_pinning_the_registry_fingerprint(lab):
    a = lab.compat("node-a", "-public")
    b = lab.compat("node-b", "-public", "-registry-trust", "pinned", "-registry-fingerprint", lab.fingerprint)
    info_a = a.info()
    rtts = _rtts(_ok(b.ctl("ping", info_a["address"], "--count", "3", timeout=40)))
    size = os.environ.get("PILOTMESH_BENCH_MIB", "2")
    bench = _ok(b.ctl("bench", info_a["address"], size, timeout=120))
    assert bench["complete"] and bench["recv_bytes"] == int(size) << 20
    peers = {p["node_id"]: p for p in b.info()["peer_list"]}
    assert peers[info_a["node_id"]]["relay"] is True
    # restart the rendezvous: both reconnect (registry pool and WSS) and traffic resumes, same ids
    lab.rdv.restart()
    t0 = time.monotonic()
    wait_for(lambda: sum(e.get("msg") == "compat node connected" for e in lab.events()) >= 4, 25,
             "both compat daemons to reconnect their WebSocket")
    reconnect_s = time.monotonic() - t0
    again = _rtts(_ok(b.ctl("ping", info_a["address"], "--count", "2", timeout=40)))
    assert a.info()["node_id"] == info_a["node_id"]
    print(f"\nFIGURES compat<->compat ping_rtt_ms={rtts} bench={bench} reconnect_s={reconnect_s:.1f} "
          f"after_restart_ms={again}")


BAD_CLIENTS = r"""
import asyncio, base64, json, socket, ssl, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
NODE = int(sys.argv[1])
ctx = ssl.create_default_context()
out = {}

async def main():
    # garbage on the TLS port
    r, w = await asyncio.open_connection("127.0.0.1", 443)
    w.write(b"GET / HTTP/1.0\r\n\r\n" + bytes(100))
    try:
        out["garbage"] = (await asyncio.wait_for(r.read(), 5))[:8].hex()
    except ConnectionResetError:
        out["garbage"] = "reset"
    # a WebSocket without the subprotocol
    try:
        async with connect("wss://beacon.pilot.test:443/v1/compat", ssl=ctx, open_timeout=5):
            out["nosub"] = "accepted"
    except InvalidStatus as err:
        out["nosub"] = [err.response.status_code, err.response.body.decode()]
    # a bad signature for a registered node
    async with connect("wss://beacon.pilot.test:443/v1/compat", ssl=ctx, subprotocols=["pilot.v1"]) as ws:
        ch = json.loads(await ws.recv())
        key = Ed25519PrivateKey.generate()
        sig = key.sign(f"compat_auth:{NODE}:{ch['ts']}:{ch['nonce']}".encode())
        await ws.send(json.dumps({"type": "auth_reply", "node_id": NODE, "sig": base64.b64encode(sig).decode()}))
        out["badsig"] = json.loads(await ws.recv())
        try:
            await asyncio.wait_for(ws.recv(), 5)
        except ConnectionClosed as err:
            out["badsig_close"] = err.rcvd.code
    # the served certificate still verifies against the CA
    r, w = await asyncio.open_connection("127.0.0.1", 443, ssl=ctx, server_hostname="registry.pilot.test")
    w.write(len(b'{"type":"list_networks"}').to_bytes(4, "big") + b'{"type":"list_networks"}')
    n = int.from_bytes(await r.readexactly(4), "big")
    out["registry"] = json.loads(await r.readexactly(n))["type"]
    w.close()

asyncio.run(main())
print(json.dumps(out))
"""


@pytest.mark.official
@pytest.mark.timeout(90)
def test_bad_clients_and_an_expired_cert_leave_the_daemons_working(lab):
    c = lab.compat("node-c", "-public")
    u = lab.udp("node-u", "-public")
    addr_c = c.info()["address"]
    _rtts(_ok(u.ctl("ping", addr_c, "--count", "1", timeout=40)))

    got = json.loads(lab.python(BAD_CLIENTS, str(c.info()["node_id"])))
    assert got["garbage"] in ("reset", "") or got["garbage"].startswith("15"), got      # a TLS alert or a close
    assert got["nosub"][0] == 400 and "missing WebSocket subprotocol pilot.v1" in got["nosub"][1]
    assert got["badsig"]["type"] == "auth_error" and "signature verification failed" in got["badsig"]["error"]
    assert got["badsig_close"] == 1008 and got["registry"] == "list_networks_ok"

    # an expired certificate dropped in place is refused; the previous one stays in service
    now = datetime.datetime.now(datetime.timezone.utc)
    write_pair(lab.cert, lab.key, *make_leaf(*lab.ca, [REG, BEA], not_before=now - datetime.timedelta(days=2),
                                             not_after=now - datetime.timedelta(days=1)))
    failed = wait_for(lambda: [e for e in lab.events() if e.get("msg", "").startswith("TLS certificate reload failed")],
                      10, "the reload to refuse the expired certificate")
    assert "expired" in failed[0]["error"]

    assert c.proc.poll() is None and u.proc.poll() is None
    again = _rtts(_ok(u.ctl("ping", addr_c, "--count", "2", timeout=40)))
    back = _rtts(_ok(c.ctl("ping", u.info()["address"], "--count", "2", timeout=40)))
    metrics = lab.metrics()
    for kind in ("tls_handshake", "compat_subprotocol", "compat_auth", "tls_reload"):
        assert f'pilot_rendezvous_errors_total{{kind="{kind}"}} 1.0' in metrics, (kind, metrics)
    # a fresh certificate is picked up without a restart
    write_pair(lab.cert, lab.key, *make_leaf(*lab.ca, [REG, BEA]))
    wait_for(lambda: any(e.get("msg") == "TLS certificate reloaded" for e in lab.events()), 10, "the reload")
    print(f"\nFIGURES after bad clients: udp->compat {again} compat->udp {back}")


def test_help_documents_the_tls_and_metrics_flags():
    text = build_parser().format_help()
    for flag in ("-tls-listen", "-tls-cert", "-tls-key", "-tls-self-signed", "-tls-reload-interval", "-domain",
                 "-registry-sni", "-beacon-sni", "-metrics-listen", "-registry-fingerprint"):
        assert flag in text, flag


@pytest.mark.timeout(30)
def test_unusable_certificates_stop_the_start_with_a_clear_error(tmp_path, capsys):
    ca = make_ca()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    write_pair(cert, key, *make_leaf(*ca, [REG, BEA], not_before=now - datetime.timedelta(days=30),
                                     not_after=now - datetime.timedelta(hours=1)))
    base = ["-registry-listen", "", "-beacon-listen", "", "-tls-listen", "127.0.0.1:0", "-db", ":memory:",
            "-domain", "pilot.test"]
    assert main([*base, "-tls-cert", str(cert), "-tls-key", str(key)]) == 1
    err = capsys.readouterr().err
    assert "cannot start: TLS certificate" in err and "expired at" in err and "renew it" in err
    start = time.monotonic()
    assert main([*base, "-tls-cert", str(tmp_path / "missing.crt"), "-tls-key", str(key)]) == 1
    assert "does not exist" in capsys.readouterr().err
    write_pair(cert, key, *make_leaf(*ca, ["registry.other.test"]))
    assert main([*base, "-tls-cert", str(cert), "-tls-key", str(key)]) == 1
    assert "does not cover registry.pilot.test, beacon.pilot.test" in capsys.readouterr().err
    assert main([*base, "-tls-cert", str(cert)]) == 1
    assert "give both -tls-cert and -tls-key" in capsys.readouterr().err
    assert time.monotonic() - start < 10
