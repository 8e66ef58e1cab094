"""Beacon core: STUN replies (IPv4/IPv6), punch coordination, relay; and the UDP glue on loopback."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest

from pilot_rendezvous.beacon_proto import Beacon, decode_endpoint, encode_endpoint
from pilot_rendezvous.registry import Registry
from pilot_rendezvous.server import RendezvousServer
from pilot_rendezvous.store_sqlite import SQLiteStore

A, B = ("198.51.100.7", 40001), ("203.0.113.9", 40002)


def discover(node: int, kind: int = 0x01) -> bytes:
    return struct.pack(">BI", kind, node)


def test_discover_replies_with_observed_endpoint_v4_and_v6():
    beacon = Beacon()
    [(reply, dest)] = beacon.datagram_received(discover(7), A, 0.0)
    assert dest == A and reply == bytes([0x02, 4, 198, 51, 100, 7]) + struct.pack(">H", 40001)
    v6 = ("2001:db8::5", 4242)
    [(reply6, _)] = beacon.datagram_received(discover(8), v6, 0.0)
    assert reply6[:2] == bytes([0x02, 16]) and decode_endpoint(reply6[1:]) == v6
    mapped = ("::ffff:192.0.2.1", 99)
    assert encode_endpoint(mapped) == bytes([4, 192, 0, 2, 1, 0, 99])
    assert sorted(beacon.endpoints) == [7, 8]
    beacon.datagram_received(discover(0), A, 0.0)      # unregistered nodes get STUN only
    assert 0 not in beacon.endpoints


def test_punch_tells_both_sides_the_other_endpoint():
    beacon = Beacon()
    beacon.datagram_received(discover(2), B, 0.0)
    out = beacon.datagram_received(struct.pack(">BII", 0x03, 1, 2), A, 1.0)
    assert out == [(b"\x04" + encode_endpoint(B), A), (b"\x04" + encode_endpoint(A), B)]
    assert beacon.datagram_received(struct.pack(">BII", 0x03, 1, 99), A, 1.0) == []


def test_relay_delivers_to_the_destination_in_both_shapes():
    beacon = Beacon()
    beacon.datagram_received(discover(2), B, 0.0)
    frame = b"PILA" + bytes(60)
    [(out, dest)] = beacon.datagram_received(struct.pack(">BII", 0x05, 1, 2) + frame, A, 0.0)
    assert dest == B and out == struct.pack(">BI", 0x06, 1) + frame
    beacon.datagram_received(discover(3, kind=0x08), A, 0.0)     # DiscoverEx -> 0x09 deliveries
    [(out, dest)] = beacon.datagram_received(struct.pack(">BII", 0x05, 2, 3) + frame, B, 0.0)
    assert dest == A and out == struct.pack(">BII", 0x09, 2, 3) + frame
    assert beacon.stats.relayed_frames == 2 and beacon.stats.relayed_bytes == 2 * len(frame)


def test_garbage_and_stale_endpoints_are_dropped():
    beacon = Beacon(ttl=10)
    for junk in (b"", b"\x01\x00", b"\x05" + bytes(7), b"\x0f" + bytes(20), b"\x03\x00\x00"):
        assert beacon.datagram_received(junk, A, 0.0) == []
    beacon.datagram_received(discover(2), B, 0.0)
    assert beacon.datagram_received(struct.pack(">BII", 0x05, 1, 2) + b"x", A, 11.0) == []
    assert 2 not in beacon.endpoints


@pytest.mark.timeout(10)
def test_udp_glue_answers_on_ipv4_and_ipv6_loopback():
    async def main() -> None:
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            server = RendezvousServer(Registry(SQLiteStore()), Beacon(), registry_listen=None,
                                      beacon_listen=(host, 0))
            try:
                await server.start()
            except OSError:
                if family == socket.AF_INET6:
                    pytest.skip("no IPv6 loopback here")
                raise
            sock = socket.socket(family, socket.SOCK_DGRAM)
            sock.setblocking(False)
            sock.bind((host, 0))
            loop = asyncio.get_running_loop()
            await loop.sock_sendto(sock, discover(5), server.beacon_address)
            data = await asyncio.wait_for(loop.sock_recv(sock, 64), 2)
            assert decode_endpoint(data[1:]) == sock.getsockname()[:2]
            sock.close()
            await server.stop()
    asyncio.run(main())
