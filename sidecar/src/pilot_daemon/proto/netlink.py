"""rtnetlink notifications (Linux ``NETLINK_ROUTE``), reduced to what changed: link, address or route.

Pure: bytes in, names out. A datagram holds one or more messages, each a 16-byte ``nlmsghdr`` (length, type,
flags, sequence, port id; host byte order) and a body padded to 4 bytes; only the type is read.
"""
from __future__ import annotations

import struct
from collections import Counter

# Multicast groups (linux/rtnetlink.h): links, IPv4/IPv6 addresses, IPv4/IPv6 routes.
RTMGRP_LINK = 0x1
RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV4_ROUTE = 0x40
RTMGRP_IPV6_IFADDR = 0x100
RTMGRP_IPV6_ROUTE = 0x400
GROUPS = RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE

NLMSG_OVERRUN = 4
LOST = "notifications lost"   # an overrun: the kernel dropped some; something changed
KINDS = {
    16: "link changed",       # RTM_NEWLINK (also carriers and flags going up or down)
    17: "link removed",       # RTM_DELLINK
    20: "address added",      # RTM_NEWADDR
    21: "address removed",    # RTM_DELADDR
    24: "route added",        # RTM_NEWROUTE
    25: "route removed",      # RTM_DELROUTE
    NLMSG_OVERRUN: LOST,
}
HEADER = struct.Struct("=IHHII")


def kind(msg_type: int) -> str | None:
    """What a message type says changed; None for types that say nothing about the network (NOOP, DONE, ...)."""
    return KINDS.get(msg_type)


def changes(data: bytes) -> list[str]:
    """The kinds of change in one datagram, in order; a truncated or malformed message ends the parse."""
    out = []
    pos = 0
    while pos + HEADER.size <= len(data):
        length, msg_type, _, _, _ = HEADER.unpack_from(data, pos)
        if length < HEADER.size or pos + length > len(data):
            break
        name = kind(msg_type)
        if name is not None:
            out.append(name)
        pos += (length + 3) & ~3
    return out


def describe(kinds: list[str]) -> str:
    """``["route added", "address added", "route added"]`` -> ``"address added, route added x2"``."""
    return ", ".join(name if n == 1 else f"{name} x{n}" for name, n in sorted(Counter(kinds).items()))
