"""The registry's network requests (a mixin of `Registry`): list, create, join, leave, policy and invitations.

Join rules: open, token (the network's token) or invite (an existing member invited the node, or the node
has a pending invitation); an admin token skips the rules. An invitation stays pending until the invitee
answers it or joins; at most MAX_PENDING_INVITES per node.
"""
from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from .errors import BadRequest, Conflict, Forbidden, NotFound
from .fields import BACKBONE, HOSTNAME_RE, Message, address, bool_of, str_of, uint_of
from .store import Invite, NetworkRecord, NodeRecord, Store

JOIN_RULES = ("open", "token", "invite")
MAX_PENDING_INVITES = 100


class NetworkHandlers:
    store: Store
    admin_token: str

    if TYPE_CHECKING:
        def _node(self, node_id: int) -> NodeRecord: ...
        def _signed(self, msg: Message, rec: NodeRecord, kind: str, *parts: object) -> None: ...
        def _is_admin(self, msg: Message) -> bool: ...

    def _network(self, net_id: int) -> NetworkRecord:
        if net_id == BACKBONE:
            return NetworkRecord(network_id=BACKBONE, name="backbone")
        rec = self.store.network(net_id)
        if rec is None:
            raise NotFound(f"network {net_id}: network not found")
        return rec

    def _h_list_networks(self, msg: Message, remote: str, now: float) -> Message:
        admin = self._is_admin(msg)
        nets = []
        for rec in [self._network(BACKBONE), *self.store.networks()]:
            entry: Message = {"id": rec.network_id, "name": rec.name, "join_rule": rec.join_rule}
            if admin:
                entry["members"] = (self.store.node_count() if rec.network_id == BACKBONE
                                    else len(self.store.members(rec.network_id)))
            nets.append(entry)
        return {"type": "list_networks_ok", "networks": nets}

    def _h_list_nodes(self, msg: Message, remote: str, now: float) -> Message:
        net_id = uint_of(msg, "network_id", 16)
        if net_id == BACKBONE:
            raise Forbidden("listing backbone nodes is not permitted (use lookup with a specific node_id)")
        self._network(net_id)
        nodes = []
        for node_id in self.store.members(net_id):
            rec = self.store.node(node_id)
            if rec is None:
                nodes.append({"node_id": node_id, "address": address(net_id, node_id), "offline": True})
                continue
            entry: Message = {"node_id": node_id, "address": address(net_id, node_id), "public": rec.public}
            if rec.hostname:
                entry["hostname"] = rec.hostname
            if rec.tags:
                entry["tags"] = rec.tags
            if rec.public:
                entry["real_addr"] = self._endpoint(rec)
            nodes.append(entry)
        return {"type": "list_nodes_ok", "nodes": nodes}

    def _h_create_network(self, msg: Message, remote: str, now: float) -> Message:
        if not self.admin_token:
            raise Forbidden("network creation is disabled (start pilot-rendezvous with -admin-token)")
        if not self._is_admin(msg):
            raise Forbidden("invalid admin token")
        name, rule, token = str_of(msg, "name"), str_of(msg, "join_rule") or "open", str_of(msg, "token")
        if not name or len(name) > 63 or not HOSTNAME_RE.match(name) or name == "backbone":
            raise BadRequest("network name must be 1-63 lowercase alphanumerics or hyphens, not \"backbone\"")
        if rule not in JOIN_RULES:
            raise BadRequest(f"unknown join rule: {rule} (use one of {', '.join(JOIN_RULES)})")
        if rule == "token" and not token:
            raise BadRequest("join_rule token requires a token")
        if any(n.name == name for n in self.store.networks()):
            raise Conflict(f'network "{name}" already exists')
        creator = uint_of(msg, "node_id") if msg.get("node_id") is not None else 0
        if creator:      # `pilotctl network create` sends node_id 0: an operator's network, nobody in it yet
            self._node(creator)
        net_id = self.store.create_network(NetworkRecord(network_id=0, name=name, join_rule=rule, token=token,
                                                         created=now))
        if creator:
            self.store.add_member(net_id, creator)
        return {"type": "create_network_ok", "network_id": net_id, "name": name}

    def _h_join_network(self, msg: Message, remote: str, now: float) -> Message:
        node_id, net_id = uint_of(msg, "node_id"), uint_of(msg, "network_id", 16)
        rec = self._node(node_id)
        admin = self._is_admin(msg)
        if not admin:
            self._signed(msg, rec, "join_network", node_id, net_id)
        if net_id == BACKBONE:
            raise Conflict(f"node {node_id} already in network 0 (the backbone)")
        net = self._network(net_id)
        members = self.store.members(net_id)
        if node_id in members:
            raise Conflict(f"node {node_id} already in network {net_id}")
        if not admin:
            if net.join_rule == "token" and not hmac.compare_digest(
                    str_of(msg, "token").encode(), net.token.encode()):
                raise Forbidden(f"invalid token for network {net_id}")
            if net.join_rule == "invite" and not (msg.get("inviter_id") in members or self._invited(node_id, net_id)):
                raise Forbidden(f"invite required for network {net_id} (an existing member must invite you)")
        self._admit(net, node_id, members)
        return {"type": "join_network_ok", "network_id": net_id, "address": address(net_id, node_id)}

    def _admit(self, net: NetworkRecord, node_id: int, members: list[int]) -> None:
        if net.max_members and len(members) >= net.max_members:
            raise Conflict(f"network {net.network_id} is full (max {net.max_members} members)")
        self.store.add_member(net.network_id, node_id)
        self.store.take_invite(node_id, net.network_id)     # joined: an invitation to it is settled

    def _h_leave_network(self, msg: Message, remote: str, now: float) -> Message:
        node_id, net_id = uint_of(msg, "node_id"), uint_of(msg, "network_id", 16)
        rec = self._node(node_id)
        if not self._is_admin(msg):
            self._signed(msg, rec, "leave_network", node_id, net_id)
        if net_id == BACKBONE:
            raise BadRequest("cannot leave the backbone network")
        self._network(net_id)
        if not self.store.remove_member(net_id, node_id):
            raise NotFound(f"node {node_id} is not a member of network {net_id}")
        return {"type": "leave_network_ok", "network_id": net_id}

    def _h_get_network_policy(self, msg: Message, remote: str, now: float) -> Message:
        net = self._network(uint_of(msg, "network_id", 16))
        return {"type": "get_network_policy_ok", "network_id": net.network_id, "max_members": net.max_members,
                "allowed_ports": net.allowed_ports, "description": net.description}

    # -- invitations (official signed strings: invite:<inviter>:<network>:<target>, poll_invites:<node>,
    #    respond_invite:<node>:<network>) -------------------------------------------------------
    def _h_invite_to_network(self, msg: Message, remote: str, now: float) -> Message:
        inviter, target = uint_of(msg, "inviter_id"), uint_of(msg, "target_node_id")
        net_id = uint_of(msg, "network_id", 16)
        rec = self._node(inviter)
        admin = self._is_admin(msg)
        if not admin:
            self._signed(msg, rec, "invite", inviter, net_id, target)
        if net_id == BACKBONE:
            raise BadRequest("every node is in the backbone: nothing to invite to")
        self._network(net_id)
        self._node(target)
        members = self.store.members(net_id)
        if not admin and inviter not in members:
            raise Forbidden(f"inviter {inviter} is not a member of network {net_id}")
        if target in members:
            raise Conflict(f"node {target} already in network {net_id}")
        if len(self.store.invites(target)) >= MAX_PENDING_INVITES:
            raise Conflict(f"node {target} has {MAX_PENDING_INVITES} pending invitations; it must answer some first")
        self.store.add_invite(target, Invite(net_id, inviter, int(now)))
        return {"type": "invite_to_network_ok", "network_id": net_id, "target_node_id": target}

    def _invited(self, node_id: int, net_id: int) -> bool:
        return any(i.network_id == net_id for i in self.store.invites(node_id))

    def _h_poll_invites(self, msg: Message, remote: str, now: float) -> Message:
        """The pending invitations; each stays until answered (respond_invite) or the node joins."""
        node_id = uint_of(msg, "node_id")
        self._signed(msg, self._node(node_id), "poll_invites", node_id)
        out = []
        for inv in self.store.invites(node_id):
            net = self.store.network(inv.network_id)
            if net is not None:
                out.append({"network_id": inv.network_id, "network_name": net.name, "inviter_id": inv.inviter_id,
                            "timestamp": inv.timestamp})
        return {"type": "poll_invites_ok", "invites": out}

    def _h_respond_invite(self, msg: Message, remote: str, now: float) -> Message:
        node_id, net_id, accept = uint_of(msg, "node_id"), uint_of(msg, "network_id", 16), bool_of(msg, "accept")
        self._signed(msg, self._node(node_id), "respond_invite", node_id, net_id)
        net = self._network(net_id)
        if not self._invited(node_id, net_id):
            raise NotFound(f"no pending invitation to network {net_id} for node {node_id}")
        reply: Message = {"type": "respond_invite_ok", "network_id": net_id, "accepted": accept}
        if accept:
            members = self.store.members(net_id)
            if node_id not in members:
                self._admit(net, node_id, members)
            reply["address"] = address(net_id, node_id)
        self.store.take_invite(node_id, net_id)
        return reply
