"""Registry framing and the TCP glue: bad JSON, oversize frames, binary mode, slow clients."""
from __future__ import annotations

import asyncio
import base64
import json
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pilot_rendezvous.beacon_proto import Beacon
from pilot_rendezvous.registry import Registry
from pilot_rendezvous.registry_proto import RegistryConnection, encode_binary_frame, encode_json_frame
from pilot_rendezvous.server import RendezvousServer
from pilot_rendezvous.store_sqlite import SQLiteStore


def frames(data: bytes) -> list[dict]:
    out = []
    while data:
        (n,) = struct.unpack_from(">I", data)
        out.append(json.loads(data[4:4 + n]))
        data = data[4 + n:]
    return out


@pytest.fixture
def conn() -> RegistryConnection:
    return RegistryConnection(Registry(SQLiteStore()), "127.0.0.1:1", max_frame=4096)


def test_requests_split_across_reads_and_pipelined(conn):
    wire = encode_json_frame({"type": "beacon_list"}) * 2 + encode_json_frame({"type": "list_networks"})
    out = b"".join(conn.receive_data(wire[i:i + 3], 0.0) for i in range(0, len(wire), 3))
    assert [f["type"] for f in frames(out)] == ["beacon_list_ok", "beacon_list_ok", "list_networks_ok"]
    assert not conn.closed and not conn.pending


def test_bad_json_gets_an_error_and_the_connection_lives_on(conn):
    for body in (b"{nope", b"\xff\xfe", b"[" * 4000, b"", b"42", b'{"type": 5}'):
        [reply] = frames(conn.receive_data(struct.pack(">I", len(body)) + body, 0.0))
        assert reply["type"] == "error", body[:10]
    [ok] = frames(conn.receive_data(encode_json_frame({"type": "beacon_list"}), 0.0))
    assert ok["type"] == "beacon_list_ok"


def test_oversize_frame_closes_with_an_error(conn):
    [reply] = frames(conn.receive_data(struct.pack(">I", 1 << 30) + b"{}", 0.0))
    assert reply["type"] == "error" and "outside" in reply["error"]
    assert conn.closed and conn.receive_data(encode_json_frame({"type": "beacon_list"}), 0.0) == b""


def test_binary_mode_heartbeat_lookup_and_json_passthrough():
    reg = Registry(SQLiteStore())
    key = Ed25519PrivateKey.generate()
    pub = base64.b64encode(key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()
    listen = "127.0.0.1:4000"
    sig = base64.b64encode(key.sign(f"register:{listen}:{pub}".encode())).decode()
    node = reg.handle({"type": "register", "listen_addr": listen, "public_key": pub, "signature": sig},
                      "127.0.0.1:1", 0.0)["node_id"]
    conn = RegistryConnection(reg, "127.0.0.1:1")
    hb = struct.pack(">I", node) + key.sign(f"heartbeat:{node}".encode())
    out = conn.receive_data(b"PILT\x01" + encode_binary_frame(0x01, hb), 1234.0)
    assert out == encode_binary_frame(0x81, struct.pack(">QB", 1234, 0))
    out = conn.receive_data(encode_binary_frame(0x02, struct.pack(">I", node)), 0.0)
    assert out[4] == 0x82 and struct.unpack_from(">I", out, 5)[0] == node
    assert base64.b64decode(pub) in out
    out = conn.receive_data(encode_binary_frame(0x01, struct.pack(">I", node) + bytes(64)), 0.0)
    assert out[4] == 0xFF and b"signature verification failed" in out
    out = conn.receive_data(encode_binary_frame(0x00, b'{"type":"beacon_list"}'), 0.0)
    assert out[4] == 0x00 and json.loads(out[5:])["type"] == "beacon_list_ok"
    assert conn.receive_data(encode_binary_frame(0x7E, b""), 0.0)[4] == 0xFF


@pytest.mark.timeout(20)
def test_server_survives_garbage_slow_clients_and_keeps_serving():
    async def main() -> None:
        server = RendezvousServer(Registry(SQLiteStore()), Beacon(), registry_listen=("127.0.0.1", 0),
                                  beacon_listen=None, frame_timeout=0.3, idle_timeout=5)
        await server.start()
        host, port = server.registry_address

        async def ask(payload: bytes) -> bytes:
            r, w = await asyncio.open_connection(host, port)
            w.write(payload)
            await w.drain()
            data = await asyncio.wait_for(r.read(65536), 3)
            w.close()
            return data

        slow_r, slow_w = await asyncio.open_connection(host, port)
        slow_w.write(struct.pack(">I", 100) + b"{")           # half a frame, then nothing
        await slow_w.drain()
        garbage = await ask(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert frames(garbage)[0]["type"] == "error"           # "GET " read as a huge length
        ok = frames(await ask(encode_json_frame({"type": "frobnicate"})))[0]
        assert "unknown message type" in ok["error"]
        assert await asyncio.wait_for(slow_r.read(100), 3) == b""   # the slow client was cut off
        slow_w.close()
        served = frames(await ask(encode_json_frame({"type": "beacon_list"})))
        assert served[0]["type"] == "beacon_list_ok"
        await server.stop()
    asyncio.run(main())
