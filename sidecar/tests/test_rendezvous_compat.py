"""Compat bridge and TLS listener in-process on 127.0.0.1: auth codec, routing between compat and
UDP nodes, SNI routing, refusals (garbage TLS, no subprotocol, bad signature), reload, metrics."""
from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import socket
import ssl
import struct
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from pilot_rendezvous import compat_proto
from pilot_rendezvous.beacon_proto import Beacon, CompatPeer, encode_endpoint
from pilot_rendezvous.errors import BadRequest, Forbidden, NotFound
from pilot_rendezvous.metrics import MetricsServer
from pilot_rendezvous.registry import Registry
from pilot_rendezvous.registry_proto import encode_json_frame
from pilot_rendezvous.server import RendezvousServer
from pilot_rendezvous.store_sqlite import SQLiteStore
from pilot_rendezvous.tls_frontend import TLSFrontend, TLSSettings, route_for, sniff_route
from pilot_rendezvous.tlsfiles import TLSConfigError, TLSFiles, ensure_self_signed, inspect_pem, make_ca, make_leaf, write_pair
from test_rendezvous_registry import Node

pytestmark = pytest.mark.timeout(30)
REG, BEA = "registry.pilot.test", "beacon.pilot.test"
UDP_A = ("198.51.100.7", 40001)


# -- sans-I/O parts ---------------------------------------------------------------------------
def test_auth_reply_is_verified_against_the_registered_key():
    reg = Registry(SQLiteStore())
    node, other = Node(), Node()
    node.register(reg)
    keys = {node.node_id: node.public_key}
    ch = compat_proto.Challenge("ab" * 32, 1_700_000_000)
    assert json.loads(ch.encode()) == {"type": "auth_challenge", "nonce": "ab" * 32, "ts": 1_700_000_000}
    assert ch.signed_text(7) == f"compat_auth:7:1700000000:{'ab' * 32}"

    def reply(signer: Node, node_id: int, text: str | None = None, **extra) -> str:
        sig = signer.sign(text or ch.signed_text(node_id))
        return json.dumps({"type": "auth_reply", "node_id": node_id, "public_key": signer.public_key,
                           "sig": sig, **extra})
    assert compat_proto.verify_reply(reply(node, node.node_id), ch, keys.get) == node.node_id
    with pytest.raises(Forbidden, match="signature verification failed"):
        compat_proto.verify_reply(reply(node, node.node_id, text=f"compat_auth:{node.node_id}:{'ab' * 32}"),
                                  ch, keys.get)      # the pre-1.18 string without ts
    with pytest.raises(Forbidden, match="does not match the key registered"):
        compat_proto.verify_reply(reply(other, node.node_id), ch, keys.get)
    with pytest.raises(NotFound, match="not registered"):
        compat_proto.verify_reply(reply(node, 4242), ch, keys.get)
    for junk in ("nope", "[]", '{"type":"auth_reply","node_id":0}', '{"type":"hello"}',
                 '{"type":"auth_reply","node_id":true}'):
        with pytest.raises(BadRequest):
            compat_proto.verify_reply(junk, ch, keys.get)


def test_beacon_routes_between_compat_and_udp_nodes():
    beacon = Beacon()
    beacon.datagram_received(struct.pack(">BI", 0x01, 3), UDP_A, 0.0)       # node 3 over UDP
    beacon.attach(1, ("192.0.2.10", 5555))
    beacon.attach(2, ("192.0.2.11", 5556))
    frame = b"PILS" + bytes(40)
    assert beacon.compat_datagram(1, struct.pack(">BII", 0x05, 1, 2) + frame, 1.0) == [
        (struct.pack(">BI", 0x06, 1) + frame, CompatPeer(2))]
    assert beacon.compat_datagram(1, struct.pack(">BII", 0x05, 1, 3) + frame, 1.0) == [
        (struct.pack(">BI", 0x06, 1) + frame, UDP_A)]
    assert beacon.datagram_received(struct.pack(">BII", 0x05, 3, 1) + frame, UDP_A, 1.0) == [
        (struct.pack(">BI", 0x06, 3) + frame, CompatPeer(1))]
    assert beacon.compat_datagram(1, struct.pack(">BI", 0x01, 1), 1.0) == [
        (b"\x02" + encode_endpoint(("192.0.2.10", 5555)), CompatPeer(1))]
    assert beacon.compat_datagram(1, struct.pack(">BII", 0x05, 2, 3) + frame, 1.0) == []   # spoofed source
    assert beacon.compat_datagram(1, frame, 1.0) == []                                     # no destination
    assert beacon.compat_datagram(1, b"", 1.0) == []
    assert (beacon.stats.compat_spoofed, beacon.stats.compat_unroutable) == (1, 2)
    assert beacon.stats.relayed_to_compat == 2 and beacon.stats.relayed_frames == 3
    beacon.detach(2)
    assert beacon.compat_datagram(1, struct.pack(">BII", 0x05, 1, 2) + frame, 1.0) == []


def test_routes_by_sni_then_by_first_bytes():
    assert route_for("Registry.Pilot.Test.", REG, BEA) == "registry"
    assert route_for(BEA, REG, BEA) == "beacon"
    assert route_for(None, REG, BEA) is None and route_for("other.test", REG, BEA) is None
    assert sniff_route(b"GET /v1/compat HTTP/1.1") == "beacon"
    assert sniff_route(b"\x00\x00\x01\x28{") == "registry" and sniff_route(b"PILT\x01") == "registry"


# -- certificate files ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> tuple[bytes, bytes]:
    return make_ca("test CA")


def _pair(directory: Path, ca, names=(REG, BEA), **validity) -> TLSFiles:
    files = TLSFiles(directory / "tls.crt", directory / "tls.key")
    write_pair(files.cert, files.key, *make_leaf(*ca, list(names), **validity))
    return files


def test_unusable_certificates_are_refused_with_the_fix(tmp_path, ca):
    now = datetime.datetime.now(datetime.timezone.utc)
    with pytest.raises(TLSConfigError, match="does not exist"):
        TLSFiles(tmp_path / "none.crt", tmp_path / "none.key").load()
    for sub in "efmg":
        (tmp_path / sub).mkdir()
    expired = _pair(tmp_path / "e", ca, not_before=now - datetime.timedelta(days=10),
                    not_after=now - datetime.timedelta(days=1))
    with pytest.raises(TLSConfigError, match="expired at .* renew it"):
        expired.load()
    future = _pair(tmp_path / "f", ca, not_before=now + datetime.timedelta(days=1))
    with pytest.raises(TLSConfigError, match="not valid before"):
        future.load()
    good = _pair(tmp_path, ca)
    mismatched = _pair(tmp_path / "m", ca)
    mismatched.key.write_bytes(good.key.read_bytes())
    with pytest.raises(TLSConfigError, match="key does not match"):
        mismatched.load()
    with pytest.raises(TLSConfigError, match="does not cover beacon.other.test"):
        good.load((REG, "beacon.other.test"))
    (tmp_path / "g" / "tls.crt").write_text("not a certificate")
    (tmp_path / "g" / "tls.key").write_text("x")
    with pytest.raises(TLSConfigError, match="not a PEM certificate"):
        TLSFiles(tmp_path / "g" / "tls.crt", tmp_path / "g" / "tls.key").load()
    ctx, info = good.load((REG, BEA))
    assert set(info.names) == {REG, BEA} and len(info.fingerprint) == 64


def test_lab_ca_is_kept_and_the_leaf_reissued_only_when_needed(tmp_path):
    files = ensure_self_signed(tmp_path, [REG, BEA])
    ca_pem = (tmp_path / "ca.pem").read_bytes()
    first = inspect_pem(files.cert.read_bytes())
    assert set(first.names) == {REG, BEA} and (tmp_path / "ca.key").stat().st_mode & 0o777 == 0o600
    ssl.create_default_context(cadata=ca_pem.decode()).load_cert_chain(files.cert, files.key)
    assert inspect_pem(ensure_self_signed(tmp_path, [REG, BEA]).cert.read_bytes()) == first     # reused
    again = inspect_pem(ensure_self_signed(tmp_path, [REG, "beacon.other.test"]).cert.read_bytes())
    assert set(again.names) == {REG, "beacon.other.test"}
    assert (tmp_path / "ca.pem").read_bytes() == ca_pem
    later = first.not_after.timestamp() - 86400            # within a week of expiry: renewed
    renewed = ensure_self_signed(tmp_path, [REG, "beacon.other.test"], now=later)
    assert inspect_pem(renewed.cert.read_bytes()).fingerprint != again.fingerprint


# -- the whole bridge in-process ---------------------------------------------------------------
class Env:
    def __init__(self, server: RendezvousServer, tls: TLSFrontend, metrics: MetricsServer, ca_pem: bytes) -> None:
        self.server, self.tls, self.metrics = server, tls, metrics
        self.client_ctx = ssl.create_default_context(cadata=ca_pem.decode())
        self.port = tls.address[1]

    async def registry_call(self, msg: dict, sni: str | None = REG) -> dict:
        ctx = self.client_ctx
        if sni is None:
            ctx = ssl.create_default_context(cadata=None)
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, ssl=ctx, server_hostname=sni)
        writer.write(encode_json_frame(msg))
        (length,) = struct.unpack(">I", await reader.readexactly(4))
        reply = json.loads(await reader.readexactly(length))
        writer.close()
        return reply

    async def register(self, node: Node) -> int:
        listen = "127.0.0.1:4000"
        reply = await self.registry_call({"type": "register", "listen_addr": listen, "public_key": node.public_key,
                                          "signature": node.sign(f"register:{listen}:{node.public_key}"),
                                          "relay_only": True})
        node.node_id = reply["node_id"]
        return node.node_id

    @asynccontextmanager
    async def compat(self, node: Node, *, signer: Node | None = None, subprotocols=("pilot.v1",)):
        async with connect(f"wss://127.0.0.1:{self.port}/v1/compat", ssl=self.client_ctx, server_hostname=BEA,
                           subprotocols=list(subprotocols) or None, open_timeout=5) as ws:
            assert ws.subprotocol == "pilot.v1"
            challenge = json.loads(await ws.recv())
            assert challenge["type"] == "auth_challenge" and len(challenge["nonce"]) == 64
            signed = f"compat_auth:{node.node_id}:{challenge['ts']}:{challenge['nonce']}"
            await ws.send(json.dumps({"type": "auth_reply", "node_id": node.node_id,
                                      "public_key": node.public_key, "sig": (signer or node).sign(signed)}))
            ws.auth_answer = json.loads(await ws.recv())
            yield ws

    async def http_get(self, port: int, path: str, *, tls: bool = False) -> tuple[int, str]:
        scheme = "https" if tls else "http"
        conn = aiohttp.TCPConnector(ssl=self.client_ctx if tls else False,
                                    resolver=_StaticResolver(self.tls.address[0]))
        async with aiohttp.ClientSession(connector=conn) as http:
            host = BEA if tls else "127.0.0.1"
            async with http.get(f"{scheme}://{host}:{port}{path}") as resp:
                return resp.status, await resp.text()


class _StaticResolver(aiohttp.abc.AbstractResolver):
    def __init__(self, ip: str) -> None:
        self.ip = ip

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        return [{"hostname": host, "host": self.ip, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def running(tmp_path: Path, ca):
    files = _pair(tmp_path, ca)
    server = RendezvousServer(Registry(SQLiteStore(), beacon_addr="127.0.0.1:9"), Beacon(),
                              registry_listen=None, beacon_listen=("127.0.0.1", 0))
    tls = TLSFrontend(server, TLSSettings(("127.0.0.1", 0), files, REG, BEA, handshake_timeout=2))
    metrics = MetricsServer(server, ("127.0.0.1", 0), tls)
    await server.start()
    await tls.start()
    await metrics.start()
    try:
        yield Env(server, tls, metrics, ca[0])
    finally:
        await metrics.stop()
        await tls.stop()
        await server.stop()


def test_compat_nodes_relay_to_each_other_and_to_udp_nodes(tmp_path, ca):
    async def main() -> None:
        async with running(tmp_path, ca) as env:
            a, b, c = Node(), Node(), Node()
            for n in (a, b, c):
                await env.register(n)
            lookup = await env.registry_call({"type": "lookup", "node_id": a.node_id}, sni=None)   # no SNI: sniffed
            assert lookup["public_key"] == a.public_key
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.setblocking(False)
            udp.bind(("127.0.0.1", 0))
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(udp, struct.pack(">BI", 0x01, c.node_id), env.server.beacon_address)
            await asyncio.wait_for(loop.sock_recv(udp, 64), 2)
            async with env.compat(a) as wa, env.compat(b) as wb:
                assert wa.auth_answer == wb.auth_answer == {"type": "auth_ok"}
                frame = b"PILS" + bytes(1200)
                await wa.send(struct.pack(">BII", 0x05, a.node_id, b.node_id) + frame)
                assert await asyncio.wait_for(wb.recv(), 2) == struct.pack(">BI", 0x06, a.node_id) + frame
                await wa.send(struct.pack(">BII", 0x05, a.node_id, c.node_id) + frame)
                got = await asyncio.wait_for(loop.sock_recv(udp, 2048), 2)
                assert got == struct.pack(">BI", 0x06, a.node_id) + frame
                await loop.sock_sendto(udp, struct.pack(">BII", 0x05, c.node_id, b.node_id) + frame,
                                       env.server.beacon_address)
                assert await asyncio.wait_for(wb.recv(), 2) == struct.pack(">BI", 0x06, c.node_id) + frame
                await wa.send(struct.pack(">BI", 0x01, a.node_id))
                reply = await asyncio.wait_for(wa.recv(), 2)
                assert reply[:2] == b"\x02\x04"
                await asyncio.wait_for(await wa.ping(), 2)
                assert env.server.beacon.stats.relayed_to_compat == 2
                assert len(env.server.compat_sessions) == 2
                async with env.compat(a) as wa2:      # a second session of the same node replaces the first
                    assert wa2.auth_answer["type"] == "auth_ok"
                    with pytest.raises(ConnectionClosed) as closed:
                        await asyncio.wait_for(wa.recv(), 2)
                    assert closed.value.rcvd.reason == "replaced by a newer session"
            udp.close()
            await asyncio.sleep(0.05)
            assert env.server.compat_sessions == {}
    asyncio.run(main())


def test_bad_clients_are_refused_clearly_and_others_keep_working(tmp_path, ca):
    async def main() -> None:
        async with running(tmp_path, ca) as env:
            good, stranger = Node(), Node()
            await env.register(good)
            # garbage instead of a ClientHello
            reader, writer = await asyncio.open_connection("127.0.0.1", env.port)
            writer.write(b"\x16\x03\x01\x00\x05hello" + bytes(200))
            try:
                answer = await asyncio.wait_for(reader.read(), 3)
            except ConnectionResetError:
                answer = b""
            assert answer == b"" or answer[0] == 0x15       # closed, at most after a TLS alert
            writer.close()
            # a WebSocket without the subprotocol
            with pytest.raises(InvalidStatus) as refused:
                async with env.compat(good, subprotocols=()):
                    pass
            assert refused.value.response.status_code == 400
            assert b"missing WebSocket subprotocol pilot.v1" in refused.value.response.body
            # a bad signature: auth_error with the reason, then close 1008
            async with env.compat(good, signer=stranger) as ws:
                assert ws.auth_answer["type"] == "auth_error"
                assert "signature verification failed" in ws.auth_answer["error"]
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 2)
                assert closed.value.rcvd.code == 1008
            # an unregistered node
            stranger.node_id = 999
            async with env.compat(stranger) as ws:
                assert "not registered" in ws.auth_answer["error"]
            # HTTPS on the beacon name: health, and a clear 404 elsewhere
            assert await env.http_get(env.port, "/healthz", tls=True) == (200, "ok\n")
            status, text = await env.http_get(env.port, "/nope", tls=True)
            assert status == 404 and "/v1/compat" in text
            # everything else still works
            async with env.compat(good) as ws:
                assert ws.auth_answer == {"type": "auth_ok"}
            errors = env.server.errors
            assert errors["tls_handshake"] == 1 and errors["compat_subprotocol"] == 1
            assert errors["compat_auth"] == 2 and errors["http_not_found"] == 1
            status, body = await env.http_get(env.metrics.address[1], "/metrics")
            assert status == 200
            for line in ('pilot_rendezvous_errors_total{kind="compat_auth"} 2.0',
                         'pilot_rendezvous_registry_requests_total{result="ok",type="register"} 1.0',
                         "pilot_rendezvous_nodes 1.0", 'pilot_rendezvous_tls_connections_total{route="beacon"}'):
                assert line in body, line
            assert await env.http_get(env.metrics.address[1], "/readyz") == (200, "ready\n")
            assert await env.http_get(env.metrics.address[1], "/healthz") == (200, "ok\n")
    asyncio.run(main())


def test_certificate_reload_keeps_serving_and_skips_a_bad_pair(tmp_path, ca):
    async def served_fingerprint(env: Env) -> str:
        reader, writer = await asyncio.open_connection("127.0.0.1", env.port, ssl=env.client_ctx,
                                                       server_hostname=BEA)
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.close()
        return hashlib.sha256(der).hexdigest()

    async def main() -> None:
        async with running(tmp_path, ca) as env:
            first = env.tls.cert.fingerprint
            assert await served_fingerprint(env) == first
            assert env.tls.reload_if_changed() is False
            files = env.tls.settings.files
            write_pair(files.cert, files.key, *make_leaf(*ca, [REG, BEA]))
            assert env.tls.reload_if_changed() is True
            second = env.tls.cert.fingerprint
            assert second != first and await served_fingerprint(env) == second
            now = datetime.datetime.now(datetime.timezone.utc)
            write_pair(files.cert, files.key, *make_leaf(*ca, [REG, BEA], not_before=now - datetime.timedelta(2),
                                                         not_after=now - datetime.timedelta(1)))
            assert env.tls.reload_if_changed() is False
            assert env.server.errors["tls_reload"] == 1
            assert await served_fingerprint(env) == second
            assert env.tls.reload_if_changed() is False and env.server.errors["tls_reload"] == 1   # reported once
    asyncio.run(main())


def test_oversize_message_closes_only_that_session(tmp_path, ca):
    async def main() -> None:
        async with running(tmp_path, ca) as env:
            a = Node()
            await env.register(a)
            async with env.compat(a) as ws:
                await ws.send(bytes(compat_proto.MAX_DATAGRAM + 1))
                with pytest.raises(ConnectionClosed) as closed:
                    await asyncio.wait_for(ws.recv(), 2)
                assert closed.value.rcvd.code == 1009
            async with env.compat(a) as ws:
                assert ws.auth_answer == {"type": "auth_ok"}
            await asyncio.sleep(0.05)
            assert env.server.errors["compat_oversize"] == 1
    asyncio.run(main())

