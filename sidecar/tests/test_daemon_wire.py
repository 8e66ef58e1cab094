"""Our daemon in-process on 127.0.0.1 with pilot-rendezvous in the same loop, and a hand-driven peer
(the sans-I/O TunnelSession on its own UDP socket): control ping on port 0, datagrams to IPC clients,
and tampered, replayed, forged and garbage frames that must change nothing."""
from __future__ import annotations

import asyncio
import os
import random

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from pilot_daemon import config, identity
from pilot_daemon.io.daemon import Daemon
from pilot_daemon.io.registry_client import RegistryClient
from pilot_daemon.io.udp import UDPSocket
from pilot_daemon.proto import ipc
from pilot_daemon.proto import packet as pk
from pilot_daemon.proto import registry as reg
from pilot_daemon.proto import tunnel as tn
from pilot_daemon.proto.addr import Addr
from pilot_rendezvous.beacon_proto import Beacon
from pilot_rendezvous.registry import Registry
from pilot_rendezvous.server import RendezvousServer
from pilot_rendezvous.store_sqlite import SQLiteStore

pytestmark = pytest.mark.timeout(30)


class Peer:
    """A node made of the protocol core and a UDP socket; ``events`` collects what the tunnel reports."""

    def __init__(self) -> None:
        self.ident = identity.Identity(Ed25519PrivateKey.generate())
        self.tunnel: tn.TunnelSession | None = None
        self.udp: UDPSocket | None = None
        self.packets: asyncio.Queue = asyncio.Queue()
        self.sent: list[bytes] = []
        self.received_raw: list[bytes] = []

    async def start(self, registry: str, daemon_node: int, daemon_key: bytes, daemon_ep) -> None:
        self.daemon_node, self.daemon_ep = daemon_node, daemon_ep
        self.udp = await UDPSocket.open("127.0.0.1:0", self._datagram)
        client = RegistryClient(registry)
        ep = f"127.0.0.1:{self.udp.local[1]}"
        reply = await client.request(reg.register(self.ident.sign_b64, ep, self.ident.public_b64, "t@x", "1.18.0"))
        self.node = reply["node_id"]
        await client.request(reg.set_visibility(self.ident.sign_b64, self.node, True))
        await client.close()
        self.tunnel = tn.TunnelSession(local_node=self.node, identity=self.ident.key)
        self.tunnel.provide_peer_identity(daemon_node, daemon_key, 0.0)
        self.tunnel.start_key_exchange(daemon_node, 0.0)
        self._flush()

    def _datagram(self, data: bytes, addr) -> None:
        self.received_raw.append(data)
        self.tunnel.receive_datagram(data, 0.0, addr=addr)
        while (ev := self.tunnel.next_event()) is not None:
            if isinstance(ev, tn.PacketReceived):
                self.packets.put_nowait(ev.packet)
        self._flush()

    def _flush(self) -> None:
        for _, frame in self.tunnel.datagrams_to_send():
            self.send_raw(frame)

    def send_raw(self, frame: bytes) -> None:
        self.sent.append(frame)
        self.udp.send(frame, self.daemon_ep)

    def send(self, packet: pk.Packet) -> bytes:
        frame = self.tunnel.seal(self.daemon_node, packet.encode())
        self.send_raw(frame)
        return frame

    def ping(self, seq: int, payload: bytes) -> bytes:
        return self.send(pk.Packet(protocol=pk.Proto.CONTROL, src=Addr(0, self.node), dst=Addr(0, self.daemon_node),
                                   seq=seq, payload=payload))


def run_lab(tmp_path, scenario) -> None:
    """Start rendezvous, our daemon and a peer in one event loop, run ``scenario(daemon, peer)``, stop all."""
    asyncio.run(_lab(tmp_path, scenario))


async def _lab(tmp_path, scenario) -> None:
    rdv = RendezvousServer(Registry(SQLiteStore()), Beacon(), registry_listen=("127.0.0.1", 0),
                           beacon_listen=("127.0.0.1", 0))
    await rdv.start()
    registry = "%s:%d" % rdv.registry_address
    settings = config.resolve(config.parse_argv([
        "-socket", str(tmp_path / "d.sock"), "-registry", registry, "-beacon", "%s:%d" % rdv.beacon_address,
        "-listen", "127.0.0.1:0", "-public"]), {}, None)
    daemon = Daemon(settings, identity.generate())
    await daemon.start()
    peer = Peer()
    await peer.start(registry, daemon.node_id, daemon.identity.public_bytes, daemon.udp.local)
    try:
        await scenario(daemon, peer)
    finally:
        peer.udp.close()
        await daemon.stop()
        await rdv.stop()


async def next_packet(peer: Peer, timeout: float = 3.0) -> pk.Packet:
    return await asyncio.wait_for(peer.packets.get(), timeout)


def test_control_ping_is_answered_and_bad_frames_change_nothing(tmp_path):
    run_lab(tmp_path, _ping_and_bad_frames)


async def _ping_and_bad_frames(daemon: Daemon, peer: Peer) -> None:
    await asyncio.sleep(0.2)                     # key exchange on loopback
    assert peer.tunnel.has_session(daemon.node_id)
    first = peer.ping(77, b"ping!")
    reply = await next_packet(peer)
    assert (reply.protocol, reply.flags, reply.ack, reply.payload) == (pk.Proto.CONTROL, pk.Flag.ACK, 78, b"ping!")
    assert (reply.src.node, reply.dst.node) == (daemon.node_id, peer.node)

    rng = random.Random(5)
    tampered = bytearray(first)
    tampered[-1] ^= 1
    forged = tn.encode_auth_key_exchange(peer.node, os.urandom(32), Ed25519PrivateKey.generate())
    # beacon orders from a stranger (punch: fire at an endpoint; relay delivery) are ignored
    punch_order = b"\x04\x04\x7f\x00\x00\x01" + peer.udp.local[1].to_bytes(2, "big")
    spoofed_relay = b"\x06" + peer.node.to_bytes(4, "big") + first
    for frame in [first, bytes(tampered), forged, punch_order, spoofed_relay, b"PILS" + bytes(8), b"\x05" + bytes(3), b"ZZZZ" + bytes(40),
                  *(rng.randbytes(rng.randrange(1, 200)) for _ in range(200))]:
        peer.send_raw(frame)
    await asyncio.sleep(0.2)
    assert peer.packets.empty()                  # the replayed ping got no second answer
    assert not any(f.startswith(b"PILP") for f in peer.received_raw)
    assert daemon.counters.encrypt_fail >= 2

    peer.ping(100, b"still there?")
    reply = await next_packet(peer)
    assert (reply.ack, reply.payload) == (101, b"still there?")


def test_datagrams_reach_every_ipc_client(tmp_path):
    run_lab(tmp_path, _datagrams)


async def _datagrams(daemon: Daemon, peer: Peer) -> None:
    await asyncio.sleep(0.2)
    readers = [await asyncio.open_unix_connection(daemon.s["socket"]) for _ in range(2)]
    await asyncio.sleep(0.05)
    peer.send(pk.Packet(protocol=pk.Proto.DATAGRAM, src=Addr(0, peer.node), dst=Addr(0, daemon.node_id),
                        src_port=49999, dst_port=5005, payload=b"dgram"))
    for r, w in readers:
        frame = await asyncio.wait_for(r.readexactly(4 + 1 + 10 + 5), 3)
        got = ipc.decode_reply(ipc.Frame(frame[4], frame[5:]))
        assert got == ipc.RecvFrom(Addr(0, peer.node), 49999, 5005, b"dgram")
        w.close()


def test_a_syn_flood_is_rate_limited_and_the_daemon_stays_responsive(tmp_path):
    run_lab(tmp_path, _syn_flood)


async def _syn_flood(daemon: Daemon, peer: Peer) -> None:
    await asyncio.sleep(0.2)
    for i in range(2000):
        peer.send(pk.Packet(protocol=pk.Proto.STREAM, src=Addr(0, peer.node), dst=Addr(0, daemon.node_id),
                            src_port=10000 + i, dst_port=pk.PORT_ECHO, flags=pk.Flag.SYN, window=512))
        if i % 200 == 0:
            await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    answers = []
    while not peer.packets.empty():
        answers.append(peer.packets.get_nowait())
    syn_acks = [p for p in answers if p.flags == pk.Flag.SYN | pk.Flag.ACK]
    assert 0 < len(syn_acks) <= 100        # per-source and global SYN budgets; the rest dropped silently
    assert len(daemon.conns.table.streams) <= 100
    peer.ping(5, b"alive?")
    reply = await next_packet(peer)
    assert reply.payload == b"alive?"
