"""Network broadcast (IPC 0x29, ``pilotctl broadcast``) as the official 1.18 daemon decides it (sans-I/O).

Order of the checks, each with the official text: the daemon must have an admin token (``-admin-token`` or
``$PILOT_ADMIN_TOKEN``), the caller's token must equal it, the backbone (network 0) is refused, then the registry's
member list (``list_nodes`` carrying the admin token) must contain this node. Every other member then gets one
datagram from ``network:self`` on one ephemeral source port. A reply without a node list means nobody to send to.
"""
from __future__ import annotations

import hmac
from typing import Any

from . import gojson

BACKBONE = 0


class BroadcastDenied(ValueError):
    """Why a broadcast was refused, in the official daemon's words."""


def authorize(configured: str, given: str, network: int) -> None:
    if not configured:
        raise BroadcastDenied("broadcast denied: daemon has no admin token configured")
    if not hmac.compare_digest(given.encode(), configured.encode()):
        raise BroadcastDenied("broadcast denied: invalid admin token")
    if network == BACKBONE:
        raise BroadcastDenied("broadcast not permitted on backbone network")


def recipients(reply: dict[str, Any], self_node: int, network: int) -> list[int]:
    """The members to send to (each once, never ourselves) from a ``list_nodes`` reply."""
    nodes = reply.get("nodes")
    if not isinstance(nodes, list):
        return []
    members = list(dict.fromkeys(node_id for entry in nodes if (node_id := _node_id(entry)) is not None))
    if self_node not in members:
        raise BroadcastDenied(f"broadcast denied: node {self_node} is not a member of network {network}")
    return [node for node in members if node != self_node]


def _node_id(entry: Any) -> int | None:
    """A JSON number that is a whole uint32 (the official client reads node ids as float64), else None."""
    value = entry.get("node_id") if isinstance(entry, dict) else None
    if not gojson.is_number(value) or not 0 <= value <= 0xFFFFFFFF or value != int(value):   # NaN fails the range
        return None
    return int(value)
