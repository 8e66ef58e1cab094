"""What the registry keeps, and the small storage interface it keeps it behind.

A `Store` holds durable state only: nodes, the key -> node id bindings (kept after deregister so
a key always gets its old id back), networks and members, network invitations, trust (directed: a pair is trusted when
both sides vouched) and the relayed-handshake inboxes (a request stays until answered; a poll
hands it out once). Liveness (last heartbeat) is not stored. `store_sqlite.SQLiteStore` is the embedded
implementation; a shared database can implement the same methods to serve several replicas.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class NodeRecord:
    node_id: int
    public_key: str            # base64 std of the 32-byte Ed25519 key
    real_addr: str = ""        # UDP endpoint other nodes reach it at
    public: bool = False
    hostname: str = ""
    tags: list[str] = field(default_factory=list)
    owner: str = ""
    lan_addrs: list[str] = field(default_factory=list)
    version: str = ""
    relay_only: bool = False
    key_created: float = 0.0   # unix seconds; reset by rotate_key


@dataclass
class NetworkRecord:
    network_id: int
    name: str
    join_rule: str = "open"    # open | token | invite
    token: str = ""
    created: float = 0.0
    max_members: int = 0
    allowed_ports: list[int] = field(default_factory=list)
    description: str = ""


@dataclass
class Invite:
    network_id: int
    inviter_id: int
    timestamp: int


@dataclass
class HandshakeRequest:
    from_node_id: int
    justification: str
    timestamp: int


@dataclass
class HandshakeResponse:
    from_node_id: int
    accept: bool
    timestamp: int


class Store(Protocol):
    # nodes and key bindings
    def node(self, node_id: int) -> NodeRecord | None: ...
    def node_by_hostname(self, hostname: str) -> NodeRecord | None: ...
    def bound_node_id(self, public_key: str) -> int | None: ...
    def allocate_node_id(self, public_key: str) -> int: ...
    def rebind_key(self, node_id: int, old_key: str, new_key: str) -> None: ...
    def put_node(self, rec: NodeRecord) -> None: ...
    def delete_node(self, node_id: int) -> None: ...
    def node_count(self) -> int: ...
    # networks
    def network(self, network_id: int) -> NetworkRecord | None: ...
    def networks(self) -> list[NetworkRecord]: ...
    def create_network(self, rec: NetworkRecord) -> int: ...
    def member_networks(self, node_id: int) -> list[int]: ...
    def members(self, network_id: int) -> list[int]: ...
    def add_member(self, network_id: int, node_id: int) -> None: ...
    def remove_member(self, network_id: int, node_id: int) -> bool: ...
    # network invitations (one pending per network and invitee, until answered)
    def add_invite(self, target: int, invite: Invite) -> None: ...     # replaces an earlier one
    def invites(self, target: int) -> list[Invite]: ...
    def take_invite(self, target: int, network_id: int) -> Invite | None: ...
    # trust and relayed handshakes
    def trusted(self, a: int, b: int) -> bool: ...            # both a->b and b->a vouched
    def add_trust(self, a: int, b: int) -> None: ...            # a vouches for b
    def remove_trust(self, a: int, b: int) -> bool: ...         # both directions
    def add_handshake_request(self, to_node: int, req: HandshakeRequest) -> None: ...
    def handshake_requests(self, to_node: int) -> list[HandshakeRequest]: ...   # delivered or not
    def close_handshake_request(self, to_node: int, from_node: int) -> bool: ...
    def take_handshakes(self, node_id: int) -> tuple[list[HandshakeRequest], list[HandshakeResponse]]: ...
    def add_handshake_response(self, to_node: int, resp: HandshakeResponse) -> None: ...
    def close(self) -> None: ...
