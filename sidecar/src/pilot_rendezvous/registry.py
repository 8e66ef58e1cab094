"""The registry's state machine: one JSON request in, one JSON reply out, over a `Store`.

Message and reply shapes follow the official client (`pilot-protocol/common` registry/client) and
what the official 1.18 daemon sent and accepted (research note §3). Every reply has `type`
(`<request>_ok`, or `error` with an `error` text the client shows as `registry: <text>`).
Requests that change a node carry an Ed25519 signature by that node (see `signatures`).
Sans-I/O: time comes in as `now` (unix seconds); nothing here touches sockets.
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import re
from collections.abc import Callable

from . import signatures
from .errors import BadRequest, Conflict, Forbidden, NotFound, RendezvousError
from .fields import BACKBONE, HOSTNAME_RE, Message, address, bool_of, str_list_of, str_of, uint_of
from .networks import NetworkHandlers
from .store import HandshakeRequest, HandshakeResponse, NodeRecord, Store

__all__ = ["Registry", "address", "error_reply", "sanitize_listen_addr", "validate_hostname"]
log = logging.getLogger("pilot_rendezvous.registry")

TAG_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
RESERVED_HOSTNAMES = frozenset({"localhost", "backbone", "broadcast"})
MAX_TAGS = 10
MAX_HANDSHAKE_INBOX = 100
MAX_JUSTIFICATION = 1024
# Go's net.IP.IsPrivate: RFC 1918 and RFC 4193 only (Python's is_private also covers test nets).
_PRIVATE_NETS = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"))


def validate_hostname(name: str) -> None:
    """Raise BadRequest unless `name` is empty (clears) or a valid, unreserved hostname."""
    if not name:
        return
    if len(name) > 63:
        raise BadRequest("hostname too long (max 63 chars)")
    if not HOSTNAME_RE.match(name):
        raise BadRequest("hostname must be lowercase alphanumeric with hyphens, start/end with alphanumeric")
    if name in RESERVED_HOSTNAMES:
        raise BadRequest(f'hostname "{name}" is reserved')


def normalize_tags(raw: object) -> list[str]:
    """Strip a leading '#', drop duplicates, validate; raise BadRequest on a bad list."""
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise BadRequest("tags must be a list of strings")
    tags: list[str] = []
    for t in raw:
        t = t[1:] if t.startswith("#") else t
        if t not in tags:
            tags.append(t)
    if len(tags) > MAX_TAGS:
        raise BadRequest(f"too many tags (max {MAX_TAGS})")
    for t in tags:
        if not t:
            raise BadRequest("empty tag not allowed")
        if len(t) > 32:
            raise BadRequest(f'tag "{t}" too long (max 32 chars)')
        if not TAG_RE.match(t):
            raise BadRequest(f'tag "{t}" must be lowercase alphanumeric with hyphens')
    return tags


def sanitize_listen_addr(remote: str, listen_addr: str) -> str:
    """The endpoint other nodes should use: the client's port, and the TCP source IP instead of a
    wildcard, private, loopback or link-local host the client reported (as the official registry)."""
    if not listen_addr:
        return remote
    host, sep, port = listen_addr.rpartition(":")
    if not sep:
        return listen_addr
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host) if host else None
    except ValueError:
        return listen_addr
    private = ip is not None and any(ip in net for net in _PRIVATE_NETS if net.version == ip.version)
    if ip is None or ip.is_unspecified or private or ip.is_loopback or ip.is_link_local:
        remote_host = remote.rpartition(":")[0].strip("[]")
        if remote_host:
            return f"[{remote_host}]:{port}" if ":" in remote_host else f"{remote_host}:{port}"
    return listen_addr


def error_reply(err: RendezvousError) -> Message:
    code = {BadRequest: "bad_request", NotFound: "not_found", Forbidden: "forbidden",
            Conflict: "conflict"}.get(type(err), "error")
    return {"type": "error", "error": str(err), "code": code}


class Registry(NetworkHandlers):
    """Handles registry requests. `beacon_addr` is advertised in beacon_list and for relay-only
    nodes; `admin_token` (empty = admin operations disabled) gates network creation and listings."""

    def __init__(self, store: Store, *, beacon_addr: str = "", admin_token: str = "",
                 on_request: Callable[[str, bool], None] | None = None) -> None:
        self.store = store
        self.beacon_addr = beacon_addr
        self.admin_token = admin_token
        self.on_request = on_request
        self.last_seen: dict[int, float] = {}
        self._handlers: dict[str, Callable[[Message, str, float], Message]] = {
            name[len("_h_"):]: getattr(self, name) for name in dir(self) if name.startswith("_h_")}

    @property
    def message_types(self) -> list[str]:
        return sorted(self._handlers)

    def handle(self, msg: object, remote: str, now: float) -> Message:
        """Answer one request. Never raises for client mistakes: they become `error` replies."""
        mtype = msg.get("type") if isinstance(msg, dict) else None
        try:
            if not isinstance(msg, dict):
                raise BadRequest("request must be a JSON object")
            if not isinstance(mtype, str) or not mtype:
                raise BadRequest('request has no "type"')
            handler = self._handlers.get(mtype)
            if handler is None:
                raise BadRequest(f'unknown message type: "{mtype}" (this registry speaks: '
                                 f'{", ".join(self.message_types)})')
            reply = handler(msg, remote, now)
            ok = True
        except RendezvousError as err:
            reply, ok = error_reply(err), False
        except Exception:   # a bug or a storage failure must not take the connection down
            log.exception("registry request failed", extra={"type": mtype, "remote": remote})
            reply, ok = {"type": "error", "error": "internal error (see the rendezvous log)", "code": "internal"}, False
        label = mtype if isinstance(mtype, str) and mtype in self._handlers else "unknown"
        if self.on_request is not None:
            self.on_request(label, ok)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("registry request", extra={"type": label, "ok": ok, "remote": remote,
                                                 "error": reply.get("error", "")})
        return reply

    # -- helpers -----------------------------------------------------------------------------
    def _node(self, node_id: int) -> NodeRecord:
        rec = self.store.node(node_id)
        if rec is None:
            raise NotFound(f"node {node_id}: node not found (register first)")
        return rec

    def _signed(self, msg: Message, rec: NodeRecord, kind: str, *parts: object) -> None:
        signatures.verify(signatures.decode_public_key(rec.public_key),
                          signatures.challenge(kind, *parts), msg.get("signature"))

    def _is_admin(self, msg: Message) -> bool:
        token = msg.get("admin_token")
        return bool(self.admin_token) and isinstance(token, str) and hmac.compare_digest(
            token.encode(), self.admin_token.encode())

    def _networks_of(self, node_id: int) -> list[int]:
        return [BACKBONE, *self.store.member_networks(node_id)]

    def _may_see(self, requester_id: int, target: NodeRecord) -> bool:
        """Public nodes are visible to all; private ones to themselves, trusted peers and
        members of a shared non-backbone network."""
        if target.public or requester_id == target.node_id:
            return True
        if self.store.trusted(requester_id, target.node_id):
            return True
        return bool(set(self.store.member_networks(requester_id)) & set(self.store.member_networks(target.node_id)))

    def _endpoint(self, rec: NodeRecord) -> str:
        return self.beacon_addr if rec.relay_only else rec.real_addr

    # -- nodes -------------------------------------------------------------------------------
    def _h_register(self, msg: Message, remote: str, now: float) -> Message:
        public_key = str_of(msg, "public_key")
        if not public_key:
            raise BadRequest("registration requires public_key")
        raw_key = signatures.decode_public_key(public_key)
        listen_addr = str_of(msg, "listen_addr")
        signatures.verify(raw_key, signatures.challenge("register", listen_addr, public_key), msg.get("signature"))
        hostname = str_of(msg, "hostname")
        hostname_error = ""
        try:
            validate_hostname(hostname)
        except BadRequest as err:
            hostname, hostname_error = "", str(err)

        node_id = self.store.bound_node_id(public_key)
        if node_id is None:
            node_id = self.store.allocate_node_id(public_key)
        rec = self.store.node(node_id) or NodeRecord(node_id=node_id, public_key=public_key, key_created=now)
        rec.real_addr = sanitize_listen_addr(remote, listen_addr)
        rec.lan_addrs = str_list_of(msg, "lan_addrs")
        rec.version = str_of(msg, "version") or rec.version
        rec.relay_only = bool_of(msg, "relay_only")
        rec.owner = rec.owner or str_of(msg, "owner")
        if hostname and hostname != rec.hostname:
            holder = self.store.node_by_hostname(hostname)
            if holder is not None and holder.node_id != node_id:
                hostname_error = f'hostname "{hostname}" already in use'
            else:
                rec.hostname = hostname
        self.store.put_node(rec)
        self.last_seen[node_id] = now
        reply: Message = {"type": "register_ok", "node_id": node_id, "network_id": BACKBONE,
                          "address": address(BACKBONE, node_id), "public_key": public_key,
                          "observed_addr": rec.real_addr}
        if rec.hostname:
            reply["hostname"] = rec.hostname
        if hostname_error:
            reply["hostname_error"] = hostname_error
        return reply

    def _h_heartbeat(self, msg: Message, remote: str, now: float) -> Message:
        node_id = uint_of(msg, "node_id")
        self._signed(msg, self._node(node_id), "heartbeat", node_id)
        self.last_seen[node_id] = now
        return {"type": "heartbeat_ok", "time": int(now)}

    def _h_lookup(self, msg: Message, remote: str, now: float) -> Message:
        rec = self._node(uint_of(msg, "node_id"))
        reply: Message = {"type": "lookup_ok", "node_id": rec.node_id, "address": address(BACKBONE, rec.node_id),
                          "networks": self._networks_of(rec.node_id), "public_key": rec.public_key,
                          "public": rec.public}
        if rec.hostname:
            reply["hostname"] = rec.hostname
        if rec.tags:
            reply["tags"] = rec.tags
        if rec.public:
            reply["real_addr"] = reply["endpoint"] = self._endpoint(rec)
            if rec.relay_only:
                reply["relay_only"] = True
        if rec.version:
            reply["version"] = rec.version
        return reply

    def _h_resolve(self, msg: Message, remote: str, now: float) -> Message:
        node_id, requester_id = uint_of(msg, "node_id"), uint_of(msg, "requester_id")
        requester = self.store.node(requester_id)
        if requester is None:
            raise Forbidden(f"resolve denied: requester node {requester_id} is not registered")
        self._signed(msg, requester, "resolve", requester_id, node_id)
        target = self._node(node_id)
        if not self._may_see(requester_id, target):
            raise Forbidden(f"resolve denied: node {node_id} is private (establish mutual trust first)")
        reply: Message = {"type": "resolve_ok", "node_id": node_id, "real_addr": self._endpoint(target),
                          "key_age_days": max(0, int((now - target.key_created) // 86400))}
        if target.relay_only:
            reply["relay_only"] = True
        elif target.lan_addrs:
            reply["lan_addrs"] = target.lan_addrs
        return reply

    def _h_resolve_hostname(self, msg: Message, remote: str, now: float) -> Message:
        hostname = str_of(msg, "hostname")
        if not hostname:
            raise BadRequest("hostname required")
        rec = self.store.node_by_hostname(hostname)
        requester_id = msg.get("requester_id")
        requester_id = requester_id if isinstance(requester_id, int) else -1
        if rec is None or not self._may_see(requester_id, rec):
            raise NotFound(f'hostname "{hostname}" not found')
        return {"type": "resolve_hostname_ok", "node_id": rec.node_id, "address": address(BACKBONE, rec.node_id),
                "public": rec.public, "hostname": rec.hostname}

    def _h_set_visibility(self, msg: Message, remote: str, now: float) -> Message:
        node_id = uint_of(msg, "node_id")
        rec = self._node(node_id)
        if not self._is_admin(msg):
            self._signed(msg, rec, "set_visibility", node_id)
        rec.public = bool_of(msg, "public")
        self.store.put_node(rec)
        return {"type": "set_visibility_ok", "node_id": node_id, "visibility": "public" if rec.public else "private"}

    def _h_set_hostname(self, msg: Message, remote: str, now: float) -> Message:
        node_id, hostname = uint_of(msg, "node_id"), str_of(msg, "hostname")
        try:
            validate_hostname(hostname)
        except BadRequest as err:
            raise BadRequest(f"invalid hostname: {err}") from None
        rec = self._node(node_id)
        if not self._is_admin(msg):
            self._signed(msg, rec, "set_hostname", node_id)
        holder = self.store.node_by_hostname(hostname) if hostname else None
        if holder is not None and holder.node_id != node_id:
            raise Conflict(f'hostname "{hostname}" already in use by node {holder.node_id}')
        rec.hostname = hostname
        self.store.put_node(rec)
        return {"type": "set_hostname_ok", "node_id": node_id, "hostname": hostname}

    def _h_set_tags(self, msg: Message, remote: str, now: float) -> Message:
        node_id, tags = uint_of(msg, "node_id"), normalize_tags(msg.get("tags"))
        rec = self._node(node_id)
        if not self._is_admin(msg):
            self._signed(msg, rec, "set_tags", node_id)
        rec.tags = tags
        self.store.put_node(rec)
        return {"type": "set_tags_ok", "node_id": node_id, "tags": tags}

    def _h_deregister(self, msg: Message, remote: str, now: float) -> Message:
        node_id = uint_of(msg, "node_id")
        rec = self.store.node(node_id)
        if rec is None:
            return {"type": "deregister_ok"}
        if not self._is_admin(msg):
            self._signed(msg, rec, "deregister", node_id)
        for net_id in self.store.member_networks(node_id):
            self.store.remove_member(net_id, node_id)
        self.store.delete_node(node_id)     # the key keeps its node id for a later register
        self.last_seen.pop(node_id, None)
        return {"type": "deregister_ok"}

    def _h_rotate_key(self, msg: Message, remote: str, now: float) -> Message:
        node_id, new_key = uint_of(msg, "node_id"), str_of(msg, "new_public_key")
        if not new_key:
            raise BadRequest("rotate_key requires new_public_key")
        signatures.decode_public_key(new_key)
        rec = self._node(node_id)
        try:    # 1.18 daemons sign rotate:<id>:<new key>; older clients rotate:<id>
            self._signed(msg, rec, "rotate_key", node_id, new_key)
        except Forbidden:
            self._signed(msg, rec, "rotate_key", node_id)
        bound = self.store.bound_node_id(new_key)
        if bound is not None and bound != node_id:
            raise Conflict(f"new_public_key is already bound to node {bound}")
        self.store.rebind_key(node_id, rec.public_key, new_key)
        rec.public_key, rec.key_created = new_key, now
        self.store.put_node(rec)
        return {"type": "rotate_key_ok", "node_id": node_id, "address": address(BACKBONE, node_id),
                "public_key": new_key}

    def _h_punch(self, msg: Message, remote: str, now: float) -> Message:
        requester_id, a, b = uint_of(msg, "requester_id"), uint_of(msg, "node_a"), uint_of(msg, "node_b")
        if requester_id not in (a, b):
            raise Forbidden("punch denied: requester must be participant")
        self._signed(msg, self._node(requester_id), "punch", a, b)
        rec_a, rec_b = self._node(a), self._node(b)
        other = rec_b if requester_id == a else rec_a
        if not self._may_see(requester_id, other):
            raise Forbidden(f"punch denied: node {other.node_id} is private (establish mutual trust first)")
        return {"type": "punch_ok", "node_a": a, "node_a_addr": self._endpoint(rec_a),
                "node_b": b, "node_b_addr": self._endpoint(rec_b)}

    def _h_beacon_list(self, msg: Message, remote: str, now: float) -> Message:
        beacons = [{"id": 1, "addr": self.beacon_addr}] if self.beacon_addr else []
        return {"type": "beacon_list_ok", "beacons": beacons}

    # -- trust and relayed handshakes -----------------------------------------------------
    def _h_request_handshake(self, msg: Message, remote: str, now: float) -> Message:
        from_id, to_id = uint_of(msg, "from_node_id"), uint_of(msg, "to_node_id")
        justification = str_of(msg, "justification")[:MAX_JUSTIFICATION]
        self._signed(msg, self._node(from_id), "request_handshake", from_id, to_id)
        self._node(to_id)
        pending = self.store.handshake_requests(to_id)
        if any(r.from_node_id == from_id for r in pending):
            raise Conflict(f"handshake request already pending from node {from_id}")
        if len(pending) >= MAX_HANDSHAKE_INBOX:
            raise Conflict(f"handshake inbox full for node {to_id}")
        self.store.add_handshake_request(to_id, HandshakeRequest(from_id, justification, int(now)))
        return {"type": "request_handshake_ok", "status": "delivered"}

    def _h_poll_handshakes(self, msg: Message, remote: str, now: float) -> Message:
        node_id = uint_of(msg, "node_id")
        self._signed(msg, self._node(node_id), "poll_handshakes", node_id)
        requests, responses = self.store.take_handshakes(node_id)
        return {"type": "poll_handshakes_ok",
                "requests": [{"from_node_id": r.from_node_id, "justification": r.justification,
                              "timestamp": r.timestamp} for r in requests],
                "responses": [{"from_node_id": r.from_node_id, "accept": r.accept, "timestamp": r.timestamp}
                              for r in responses]}

    def _h_respond_handshake(self, msg: Message, remote: str, now: float) -> Message:
        node_id, peer_id, accept = uint_of(msg, "node_id"), uint_of(msg, "peer_id"), bool_of(msg, "accept")
        self._signed(msg, self._node(node_id), "respond_handshake", node_id, peer_id)
        self._node(peer_id)
        if not self.store.close_handshake_request(node_id, peer_id):
            # the 1.18 daemon answers twice; a repeat of a settled answer is fine, an unasked approval is not
            if accept and not self.store.trusted(node_id, peer_id):
                raise NotFound(f"no handshake request from node {peer_id} is pending for node {node_id}")
            return {"type": "respond_handshake_ok", "accept": accept, "peer_id": peer_id}
        if accept:
            self.store.add_trust(node_id, peer_id)
            self.store.add_trust(peer_id, node_id)
        self.store.add_handshake_response(peer_id, HandshakeResponse(node_id, accept, int(now)))
        return {"type": "respond_handshake_ok", "accept": accept, "peer_id": peer_id}

    def _h_report_trust(self, msg: Message, remote: str, now: float) -> Message:
        node_id, peer_id = uint_of(msg, "node_id"), uint_of(msg, "peer_id")
        self._signed(msg, self._node(node_id), "report_trust", node_id, peer_id)
        self._node(peer_id)
        self.store.add_trust(node_id, peer_id)     # a pair counts once both sides reported it
        return {"type": "report_trust_ok"}

    def _h_revoke_trust(self, msg: Message, remote: str, now: float) -> Message:
        node_id, peer_id = uint_of(msg, "node_id"), uint_of(msg, "peer_id")
        self._signed(msg, self._node(node_id), "revoke_trust", node_id, peer_id)
        if not self.store.remove_trust(node_id, peer_id):
            raise NotFound(f"no trust pair between {node_id} and {peer_id}")
        return {"type": "revoke_trust_ok"}

    def _h_check_trust(self, msg: Message, remote: str, now: float) -> Message:
        a, b = uint_of(msg, "node_id"), uint_of(msg, "peer_id")
        return {"type": "check_trust_ok", "trusted": self.store.trusted(a, b)}
