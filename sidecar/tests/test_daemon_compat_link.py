"""The compat WebSocket link in-process, against a small beacon on 127.0.0.1 (TLS with a test CA): the
challenge/response, one datagram per binary message both ways, reconnecting after a connection cut in the
middle of a frame, a refused auth reported with the beacon's words; and the transport settings."""
from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from websockets.asyncio.server import serve

from pilot_daemon import config
from pilot_daemon.io.compat import COMPAT_ADDR, CompatLink
from pilot_daemon.io.transport import TransportError, compat_registry, compat_tls, read_transport_file
from pilot_rendezvous.tlsfiles import make_ca, make_leaf

pytestmark = pytest.mark.timeout(30)
NODE = 4242


class Beacon:
    """Sends the challenge, checks the signature, echoes each binary message back with 0x06 in front;
    ``cut_next`` makes the next session's first binary message get half a frame and a closed socket."""

    def __init__(self, key: Ed25519PrivateKey, *, refuse: bool = False) -> None:
        self.public = key.public_key()
        self.refuse = refuse
        self.sessions = 0
        self.cut_next = False
        self.received: list[bytes] = []

    async def handler(self, ws) -> None:
        self.sessions += 1
        await ws.send(json.dumps({"type": "auth_challenge", "nonce": "ab" * 32, "ts": 1700000000}))
        reply = json.loads(await ws.recv())
        self.public.verify(base64.b64decode(reply["sig"]), f"compat_auth:{NODE}:1700000000:{'ab' * 32}".encode())
        assert reply["node_id"] == NODE and ws.subprotocol == "pilot.v1"
        if self.refuse:
            await ws.send(json.dumps({"type": "auth_error", "error": "node 4242 is not registered"}))
            await ws.close(1008)
            return
        await ws.send(json.dumps({"type": "auth_ok"}))
        async for message in ws:
            self.received.append(message)
            if self.cut_next:
                self.cut_next = False
                ws.transport.write(b"\x82\x7e")       # a binary frame header with its length missing
                ws.transport.abort()
                return
            await ws.send(b"\x06" + message[1:])


async def run_link(beacon: Beacon, key: Ed25519PrivateKey, body) -> None:
    ca_cert, ca_key = make_ca("compat link test CA")
    leaf, leaf_key = make_leaf(ca_cert, ca_key, ["localhost"])
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile() as cert_file, tempfile.NamedTemporaryFile() as key_file:
        cert_file.write(leaf), key_file.write(leaf_key)
        cert_file.flush(), key_file.flush()
        server_ctx.load_cert_chain(cert_file.name, key_file.name)
    client_ctx = ssl.create_default_context(cadata=ca_cert.decode())
    got: list[bytes] = []
    async with serve(beacon.handler, "127.0.0.1", 0, ssl=server_ctx, subprotocols=["pilot.v1"]) as server:
        port = server.sockets[0].getsockname()[1]
        public = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
        link = CompatLink(f"wss://localhost:{port}/v1/compat", tls=client_ctx, fingerprint="", proxies=None,
                          sign=lambda text: base64.b64encode(key.sign(text.encode())).decode(), public_key=public,
                          on_datagram=lambda data, addr: got.append((data, addr)), on_batch_end=lambda: None)
        try:
            await body(link, got)
        finally:
            link.close()


async def _until(predicate, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def test_datagrams_both_ways_and_a_reconnect_after_a_cut_mid_frame():
    key = Ed25519PrivateKey.generate()
    beacon = Beacon(key)

    async def body(link: CompatLink, got: list) -> None:
        link.start(NODE)
        assert await link.wait_up(5) and link.state == "up"
        link.send(b"\x05" + bytes(8) + b"PILS-frame", COMPAT_ADDR)
        link.send(b"\x05direct?", ("10.0.0.9", 4000))          # no direct paths in compat: dropped
        await _until(lambda: got)
        assert got == [(b"\x06" + bytes(8) + b"PILS-frame", COMPAT_ADDR)] and link.dropped == 1
        beacon.cut_next = True
        link.send(b"\x01" + bytes(4), COMPAT_ADDR)
        await _until(lambda: link.connects == 2, timeout=8)    # reconnected with backoff, authenticated again
        assert beacon.sessions == 2 and link.state == "up" and link.last_error == ""     # recovered
        link.send(b"\x05" + bytes(8) + b"again", COMPAT_ADDR)
        await _until(lambda: len(got) == 2)

    asyncio.run(run_link(beacon, key, body))


def test_a_refused_auth_is_reported_with_the_beacons_words():
    key = Ed25519PrivateKey.generate()

    async def body(link: CompatLink, got: list) -> None:
        link.start(NODE)
        assert not await link.wait_up(1.5)
        assert "compat auth rejected" in link.last_error and "node 4242 is not registered" in link.last_error
        assert link.state != "up" and link.failures >= 1

    asyncio.run(run_link(Beacon(key, refuse=True), key, body))


def test_transport_settings(tmp_path):
    base = config.resolve(config.parse_argv([]), {}, None)
    assert compat_registry(base) == ("registry.pilotprotocol.network:443", "system", "")
    plain = {**base, "registry": "rdv.example:9000", "registry_fingerprint": "AB:CD"}
    assert compat_registry(plain) == ("rdv.example:443", "pinned", "AB:CD")
    assert compat_registry({**plain, "registry": "[fd00::1]:9443"})[0] == "[fd00::1]:9443"
    with pytest.raises(TransportError, match="needs -registry-fingerprint"):
        compat_tls({**base, "tls_trust": "pinned"})
    assert compat_tls({**base, "tls_trust": "pinned", "registry_fingerprint": "AB:cd"})[1] == "abcd"
    f = tmp_path / "transport"
    assert read_transport_file(str(f)) is None
    f.write_text("Compat\n")
    assert read_transport_file(str(f)) == "compat"
    f.write_text("carrier-pigeon")
    assert read_transport_file(str(f)) is None
