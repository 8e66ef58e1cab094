"""Per-peer path state: where to send a node's frames (direct UDP endpoint or beacon relay)."""
from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from .udp import Endpoint, join_host_port

MAX_QUEUED = 512   # packets held per peer while its key exchange runs


@dataclass
class Peer:
    node: int
    endpoint: Endpoint | None = None
    relay: bool = False
    public_key: str = ""
    authenticated: bool = False
    encrypted: bool = False
    last_rx: float = 0.0
    direct_rx: float = 0.0     # last frame straight from ``endpoint`` (not relayed)
    queue: deque[bytes] = field(default_factory=lambda: deque(maxlen=MAX_QUEUED))
    resolving: asyncio.Task | None = None
    resolve_error: str = ""    # the registry's answer when the last resolve was refused (no such node, private)
    key_waiters: list[asyncio.Future] = field(default_factory=list)

    @property
    def reachable(self) -> bool:
        return self.relay or self.endpoint is not None

    def row(self) -> dict:
        """One ``peer_list`` entry of the info reply."""
        endpoint = join_host_port(*self.endpoint) if self.endpoint else ""
        return {"authenticated": self.authenticated, "encrypted": self.encrypted, "endpoint": endpoint,
                "node_id": self.node, "relay": self.relay}

    def wake(self, ok: bool) -> None:
        for fut in self.key_waiters:
            if not fut.done():
                fut.set_result(ok)
        self.key_waiters.clear()


class PeerTable(dict[int, Peer]):
    def get_or_add(self, node: int) -> Peer:
        peer = self.get(node)
        if peer is None:
            peer = self[node] = Peer(node)
        return peer
