"""Beacon messages as the daemon sends and reads them (sans-I/O).

They share the tunnel's UDP socket; the first byte (< 0x10) is the type. Integers big-endian; an
endpoint is ``[iplen u8 = 4|16][ip][port u16]`` (official ``common/protocol/header.go``)::

    0x01 Discover       [node u32]                 daemon -> beacon (STUN; node 0 before registration)
    0x02 DiscoverReply  [endpoint]                 beacon -> daemon: how the beacon sees us
    0x03 PunchRequest   [requester u32][target u32]
    0x04 PunchCommand   [endpoint]                 beacon -> both sides: fire PILP at this endpoint
    0x05 Relay          [src u32][dst u32][frame]  daemon -> beacon
    0x06 RelayDeliver   [src u32][frame]           beacon -> daemon
    0x09 RelayDeliverDest [src u32][dst u32][frame]
"""
from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Union

DISCOVER, DISCOVER_REPLY, PUNCH_REQUEST, PUNCH_COMMAND = 0x01, 0x02, 0x03, 0x04
RELAY, RELAY_DELIVER, RELAY_DELIVER_DEST = 0x05, 0x06, 0x09

_U32 = struct.Struct(">I")
_TWO_U32 = struct.Struct(">II")

Endpoint = tuple[str, int]


@dataclass(frozen=True, slots=True)
class DiscoverReply:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class PunchCommand:
    endpoint: Endpoint


@dataclass(frozen=True, slots=True)
class RelayDeliver:
    src_node: int
    frame: bytes


BeaconMessage = Union[DiscoverReply, PunchCommand, RelayDeliver]


def discover(node: int) -> bytes:
    return bytes((DISCOVER,)) + _U32.pack(node)


def punch_request(requester: int, target: int) -> bytes:
    return bytes((PUNCH_REQUEST,)) + _TWO_U32.pack(requester, target)


def relay(src: int, dst: int, frame: bytes) -> bytes:
    return bytes((RELAY,)) + _TWO_U32.pack(src, dst) + frame


def _endpoint(data: bytes, offset: int) -> Endpoint | None:
    if len(data) <= offset:
        return None
    n = data[offset]
    if n not in (4, 16) or len(data) < offset + 1 + n + 2:
        return None
    ip = ipaddress.ip_address(bytes(data[offset + 1:offset + 1 + n]))
    return str(ip), struct.unpack_from(">H", data, offset + 1 + n)[0]


def decode(data: bytes) -> BeaconMessage | None:
    """Parse a beacon message meant for a daemon; None for anything else or malformed (drop it)."""
    if not data:
        return None
    kind = data[0]
    if kind in (DISCOVER_REPLY, PUNCH_COMMAND):
        ep = _endpoint(data, 1)
        if ep is None:
            return None
        return DiscoverReply(ep) if kind == DISCOVER_REPLY else PunchCommand(ep)
    if kind == RELAY_DELIVER and len(data) > 5:
        return RelayDeliver(_U32.unpack_from(data, 1)[0], bytes(data[5:]))
    if kind == RELAY_DELIVER_DEST and len(data) > 9:
        return RelayDeliver(_U32.unpack_from(data, 1)[0], bytes(data[9:]))
    return None


def is_usable_public(host: str) -> bool:
    """Whether a STUN answer is worth advertising (the official daemon discards private/loopback ones)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified)
