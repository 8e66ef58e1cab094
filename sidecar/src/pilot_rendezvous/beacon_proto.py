"""Beacon, sans-I/O: one UDP datagram in, the datagrams to send out (common/protocol/header.go).

All integers big-endian; an endpoint is `[iplen u8 = 4|16][ip][port u16]`.
  0x01 Discover     [node u32]           -> 0x02 DiscoverReply [endpoint] to the sender (STUN);
                                            remembers node -> sender endpoint (node 0 = not registered)
  0x08 DiscoverEx   [node u32]           -> same reply; relayed frames then arrive as 0x09
  0x03 PunchRequest [requester][target]  -> 0x04 PunchCommand [endpoint of the other] to both sides
  0x05 Relay        [src u32][dst u32][frame] -> 0x06 RelayDeliver [src][frame] to dst
                                            (0x09 RelayDeliverDest [src][dst][frame] if dst used 0x08)
Unknown types and short messages are dropped. Endpoints not refreshed within `ttl` are forgotten.

Compat (WebSocket) nodes are attached by node id while their session lives: a relay to one is
delivered as 0x06 to `CompatPeer(node)` (the glue writes it as one binary message), and their own
binary messages go through `compat_datagram`, where the relay source must be the authenticated node.
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

DISCOVER, DISCOVER_REPLY, PUNCH_REQUEST, PUNCH_COMMAND = 0x01, 0x02, 0x03, 0x04
RELAY, RELAY_DELIVER, SYNC, DISCOVER_EX, RELAY_DELIVER_DEST = 0x05, 0x06, 0x07, 0x08, 0x09
ENDPOINT_TTL = 300.0

Addr = tuple[str, int]      # (host, port) as the socket layer reports it


@dataclass(frozen=True)
class CompatPeer:
    """Destination: the WebSocket session of an attached compat node."""
    node_id: int


Dest = Addr | CompatPeer
Out = list[tuple[bytes, Dest]]


def encode_endpoint(addr: Addr) -> bytes:
    ip = ipaddress.ip_address(addr[0].split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    raw = ip.packed
    return bytes([len(raw)]) + raw + struct.pack(">H", addr[1])


def decode_endpoint(data: bytes) -> Addr:
    n = data[0]
    if n not in (4, 16) or len(data) < 1 + n + 2:
        raise ValueError("bad endpoint")
    return str(ipaddress.ip_address(data[1:1 + n])), struct.unpack_from(">H", data, 1 + n)[0]


@dataclass
class Endpoint:
    addr: Addr
    extended: bool      # registered with DiscoverEx: wants 0x09 deliveries
    seen: float


@dataclass
class BeaconStats:
    discovers: int = 0
    punches: int = 0
    relayed_frames: int = 0
    relayed_bytes: int = 0
    relayed_to_compat: int = 0      # of relayed_frames, delivered over a WebSocket
    dropped: int = 0
    compat_unroutable: int = 0      # compat messages with no destination (raw tunnel frames, punches)
    compat_spoofed: int = 0         # relays whose source was not the authenticated node


class Beacon:
    def __init__(self, *, ttl: float = ENDPOINT_TTL) -> None:
        self.ttl = ttl
        self.endpoints: dict[int, Endpoint] = {}
        self.compat: dict[int, Addr] = {}       # attached compat node -> its observed TCP address
        self.stats = BeaconStats()

    def attach(self, node_id: int, observed: Addr) -> None:
        self.compat[node_id] = observed

    def detach(self, node_id: int) -> None:
        self.compat.pop(node_id, None)

    def endpoint(self, node_id: int, now: float) -> Endpoint | None:
        ep = self.endpoints.get(node_id)
        if ep is not None and now - ep.seen > self.ttl:
            del self.endpoints[node_id]
            return None
        return ep

    def expire(self, now: float) -> None:
        for node_id in [n for n, ep in self.endpoints.items() if now - ep.seen > self.ttl]:
            del self.endpoints[node_id]

    def compat_datagram(self, node_id: int, data: bytes, now: float) -> Out:
        """One binary message from the authenticated compat node `node_id`."""
        kind, body = (data[0], data[1:]) if data else (-1, b"")
        if kind in (DISCOVER, DISCOVER_EX) and len(body) >= 4:
            self.stats.discovers += 1
            return [(bytes([DISCOVER_REPLY]) + encode_endpoint(self.compat[node_id]), CompatPeer(node_id))]
        if kind == RELAY and len(body) >= 8:
            src, dst = struct.unpack_from(">II", body)
            if src != node_id:
                self.stats.compat_spoofed += 1
                return []
            return self._relay(src, dst, body[8:], now)
        self.stats.compat_unroutable += 1
        return []

    def datagram_received(self, data: bytes, addr: Addr, now: float) -> Out:
        if not data:
            return []
        kind, body = data[0], data[1:]
        if kind in (DISCOVER, DISCOVER_EX) and len(body) >= 4:
            return self._discover(struct.unpack_from(">I", body)[0], kind == DISCOVER_EX, addr, now)
        if kind == PUNCH_REQUEST and len(body) >= 8:
            return self._punch(*struct.unpack_from(">II", body), addr, now)
        if kind == RELAY and len(body) >= 8:
            return self._relay(*struct.unpack_from(">II", body), body[8:], now)
        self.stats.dropped += 1
        return []

    def _discover(self, node_id: int, extended: bool, addr: Addr, now: float) -> Out:
        self.stats.discovers += 1
        if node_id:
            self.endpoints[node_id] = Endpoint(addr, extended, now)
        return [(bytes([DISCOVER_REPLY]) + encode_endpoint(addr), addr)]

    def _punch(self, requester: int, target: int, addr: Addr, now: float) -> Out:
        mine = self.endpoints.get(requester)
        self.endpoints[requester] = Endpoint(addr, mine.extended if mine else False, now)
        other = self.endpoint(target, now)
        if other is None:
            self.stats.dropped += 1
            return []
        self.stats.punches += 1
        return [(bytes([PUNCH_COMMAND]) + encode_endpoint(other.addr), addr),
                (bytes([PUNCH_COMMAND]) + encode_endpoint(addr), other.addr)]

    def _relay(self, src: int, dst: int, frame: bytes, now: float) -> Out:
        if not frame:
            self.stats.dropped += 1
            return []
        if dst in self.compat:
            self._count_relay(frame)
            self.stats.relayed_to_compat += 1
            return [(struct.pack(">BI", RELAY_DELIVER, src) + frame, CompatPeer(dst))]
        ep = self.endpoint(dst, now)
        if ep is None:
            self.stats.dropped += 1
            return []
        self._count_relay(frame)
        if ep.extended:
            return [(struct.pack(">BII", RELAY_DELIVER_DEST, src, dst) + frame, ep.addr)]
        return [(struct.pack(">BI", RELAY_DELIVER, src) + frame, ep.addr)]

    def _count_relay(self, frame: bytes) -> None:
        self.stats.relayed_frames += 1
        self.stats.relayed_bytes += len(frame)
