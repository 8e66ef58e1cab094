"""The IPC verbs: one method per request type, answering as the official 1.18 daemon does."""
from __future__ import annotations

import asyncio
import base64
import binascii
import inspect
import logging
import secrets
from typing import TYPE_CHECKING, Any

from .. import identity as ident_mod
from ..proto import broadcast as bc
from ..proto import gojson
from ..proto import ipc
from ..proto import registry as reg
from ..proto import reqsig
from ..proto.addr import Addr, SocketAddr
from ..proto.errors import IPCRequestError
from ..proto.ipc import Cmd, HandshakeSub, NetworkSub
from ..proto.webhook import WebhookURLError
from . import clock, status
from .ipc_server import LATER, Client
from .trust import TrustError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.ipc")

VERIFIED_KEYS_MAX = 1024     # signer keys remembered by verify_envelope (cleared when full)
ONLINE_WITHIN = 180          # seconds since last_seen_unix for "online", as the official daemon
BROADCAST_NEEDS_TOKEN = "broadcast address requires admin token: use BroadcastDatagram"
NOT_SUPPORTED = "{verb}: not supported by this daemon (PilotMesh); use the official pilot-daemon for it"


def _json(cmd: Cmd, body: Any) -> bytes:
    return ipc.JsonReply(cmd, body).encode()


class IPCOps:
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon
        self._verified_keys: dict[int, str] = {}   # node -> base64 Ed25519 key found by verify_envelope

    # -- Handler protocol -----------------------------------------------------------------------
    def handle_inline(self, client: Client, request: ipc.AnyRequest) -> None:
        if isinstance(request, ipc.SendTo):
            if request.addr.is_zero or request.addr.is_broadcast:   # no reply to say why (see _sendtoconfirm)
                return
            self.d.send_datagram(request.addr, request.port, request.data)
        elif isinstance(request, ipc.Send):
            self.d.conns.send(client, request.conn_id, request.data)
        elif isinstance(request, ipc.Cancel):
            self.d.conns.cancel(client)

    def handle_now(self, client: Client, request: ipc.AnyRequest) -> bytes | object | None:
        """Answer without a task when nothing needs waiting for: the verbs written as plain methods, and a dial
        whose tunnel is up (its reply is pushed when the peer answers). None: ``handle`` it in a task."""
        if isinstance(request, ipc.Dial):
            if not self.d.conns.can_dial_now(request.addr.node):
                return None
            self.d.conns.start_dial(client, SocketAddr(request.addr, request.port), lambda conn_id, error: client.push(
                ipc.error_frame(error) if error else ipc.ConnReply(Cmd.DIAL_OK, conn_id).encode()))
            return LATER
        method = self._method(request)
        return None if inspect.iscoroutinefunction(method) else method(client, request)

    async def handle(self, client: Client, request: ipc.AnyRequest) -> bytes | None:
        return await self._method(request)(client, request)

    def _method(self, request: ipc.AnyRequest) -> Any:
        verb = request.cmd.name.lower() if isinstance(request, ipc.JsonRequest) else type(request).__name__.lower()
        method = getattr(self, "_" + verb, None)
        if method is None:
            raise IPCRequestError(NOT_SUPPORTED.format(verb=verb))
        return method

    def client_gone(self, client: Client) -> None:
        self.d.conns.client_gone(client)

    # -- status ---------------------------------------------------------------------------------
    def _info(self, client: Client, r: ipc.Info) -> bytes:
        return _json(Cmd.INFO_OK, status.info(self.d, self.d.uptime()))

    def _health(self, client: Client, r: ipc.Health) -> bytes:
        return _json(Cmd.HEALTH_OK, status.health(self.d, self.d.uptime()))

    # -- ports and datagrams ----------------------------------------------------------------------
    def _bind(self, client: Client, r: ipc.Bind) -> bytes:
        self.d.conns.listen(r.port, client)
        return ipc.PortReply(Cmd.BIND_OK, r.port).encode()

    def _unbind(self, client: Client, r: ipc.Unbind) -> bytes:
        if self.d.ports.get(r.port) is not client:
            raise IPCRequestError("unbind: port is not owned by this client")
        self.d.conns.unlisten(r.port)
        return ipc.PortReply(Cmd.UNBIND_OK, r.port).encode()

    async def _sendtoconfirm(self, client: Client, r: ipc.SendToConfirm) -> bytes:
        if r.addr.is_zero:
            raise IPCRequestError("sendto: invalid destination address")
        if r.addr.is_broadcast:
            raise IPCRequestError(f"sendto: {BROADCAST_NEEDS_TOKEN}")
        if r.addr.node != self.d.node_id and not await self.d.wait_for_key(r.addr.node):
            raise IPCRequestError(f"sendto: no tunnel to node {r.addr.node} (key exchange did not complete)")
        self.d.send_datagram(r.addr, r.port, r.data)
        return ipc.EmptyReply(Cmd.SEND_TO_OK).encode()

    async def _broadcast(self, client: Client, r: ipc.Broadcast) -> bytes:
        """One datagram to every other member of a network, admin-token gated (see ``proto.broadcast``)."""
        d = self.d
        try:
            bc.authorize(d.s["admin_token"], r.token, r.network)
            try:
                members = await d.registry.request(reg.list_nodes(r.network, d.s["admin_token"]))
            except reg.RegistryError as exc:
                raise bc.BroadcastDenied(f"list nodes for broadcast: {exc}") from None
            nodes = bc.recipients(members, d.node_id, r.network)
        except bc.BroadcastDenied as exc:
            raise IPCRequestError(f"broadcast: {exc}") from None
        src_port = d.ephemeral_port()
        for node in nodes:
            d.send_datagram(Addr(r.network, node), r.port, r.data, src_port=src_port, member=True)
        log.debug("broadcast sent", extra={"network_id": r.network, "port": r.port, "recipients": len(nodes)})
        return ipc.EmptyReply(Cmd.BROADCAST_OK).encode()

    # -- streams ----------------------------------------------------------------------------------
    async def _dial(self, client: Client, r: ipc.Dial) -> bytes:
        conn_id = await self.d.conns.dial(client, SocketAddr(r.addr, r.port))
        return ipc.ConnReply(Cmd.DIAL_OK, conn_id).encode()

    def _close(self, client: Client, r: ipc.Close) -> bytes:
        self.d.conns.close(client, r.conn_id)
        return ipc.ConnReply(Cmd.CLOSE_OK, r.conn_id).encode()

    # -- trust ------------------------------------------------------------------------------------
    async def _handshake(self, client: Client, r: ipc.Handshake) -> bytes:
        t = self.d.trust
        try:
            if r.sub == HandshakeSub.PENDING:
                body = t.pending_json()
            elif r.sub == HandshakeSub.TRUSTED:
                body = t.trusted_json()
            elif r.sub == HandshakeSub.SEND:
                body = await t.send_request(r.node_id, r.text)
            elif r.sub == HandshakeSub.APPROVE:
                body = await t.approve(r.node_id)
            elif r.sub == HandshakeSub.REJECT:
                body = await t.reject(r.node_id, r.text)
            elif r.sub == HandshakeSub.REVOKE:
                body = await t.revoke(r.node_id)
            else:
                deadline = clock.now() + r.wait_seconds
                while r.node_id not in t.trusted and clock.now() < deadline:
                    await asyncio.sleep(0.1)
                body = {"node_id": r.node_id, "trusted": r.node_id in t.trusted}
        except reg.RegistryError as exc:
            raise IPCRequestError(f"handshake: {exc}") from None
        except TrustError as exc:
            raise IPCRequestError(str(exc)) from None
        return _json(Cmd.HANDSHAKE_OK, body)

    # -- registry-backed verbs ------------------------------------------------------------------------
    async def _registry(self, cmd: Cmd, verb: str, msg: reg.Message) -> bytes:
        try:
            reply = await self.d.registry.request(msg)
        except reg.RegistryError as exc:
            raise IPCRequestError(f"{verb}: {exc}") from None
        return _json(cmd, reply)

    async def _resolvehostname(self, client: Client, r: ipc.ResolveHostname) -> bytes:
        return await self._registry(Cmd.RESOLVE_HOSTNAME_OK, "resolve_hostname",
                                    reg.resolve_hostname(self.d.node_id, r.hostname))

    async def _sethostname(self, client: Client, r: ipc.SetHostname) -> bytes:
        reply = await self._registry(Cmd.SET_HOSTNAME_OK, "set_hostname",
                                     reg.set_hostname(self.d.identity.sign_b64, self.d.node_id, r.hostname))
        self.d.hostname = r.hostname
        return reply

    async def _setvisibility(self, client: Client, r: ipc.SetVisibility) -> bytes:
        reply = await self._registry(Cmd.SET_VISIBILITY_OK, "set_visibility",
                                     reg.set_visibility(self.d.identity.sign_b64, self.d.node_id, r.public))
        self.d.public = r.public
        return reply

    async def _settags(self, client: Client, r: ipc.SetTags) -> bytes:
        return await self._registry(Cmd.SET_TAGS_OK, "set_tags",
                                    reg.set_tags(self.d.identity.sign_b64, self.d.node_id, list(r.tags)))

    async def _deregister(self, client: Client, r: ipc.Deregister) -> bytes:
        return await self._registry(Cmd.DEREGISTER_OK, "deregister",
                                    reg.deregister(self.d.identity.sign_b64, self.d.node_id))

    async def _setwebhook(self, client: Client, r: ipc.SetWebhook) -> bytes:
        try:
            await self.d.webhook.set_url(r.url)
        except WebhookURLError as exc:
            raise IPCRequestError(exc.message) from None
        return _json(Cmd.SET_WEBHOOK_OK, {"webhook": r.url})

    async def _network(self, client: Client, r: ipc.Network) -> bytes:
        verb, msg = self._network_request(r)
        reply = await self._registry(Cmd.NETWORK_OK, verb, msg)
        joined = r.sub == NetworkSub.JOIN or (r.sub == NetworkSub.RESPOND_INVITE and r.accept)
        if joined and r.network_id not in self.d.networks:
            self.d.networks.append(r.network_id)
        elif r.sub == NetworkSub.LEAVE and r.network_id in self.d.networks:
            self.d.networks.remove(r.network_id)
        return reply

    def _network_request(self, r: ipc.Network) -> tuple[str, reg.Message]:
        """The registry request of a network sub-command, and the verb its errors start with (as upstream)."""
        sign, node, admin = self.d.identity.sign_b64, self.d.node_id, self.d.s["admin_token"]
        match r.sub:
            case NetworkSub.LIST:
                return "network list", {"type": "list_networks"}
            case NetworkSub.JOIN:
                return "network join", reg.join_network(sign, node, r.network_id, r.token)
            case NetworkSub.LEAVE:
                return "network leave", reg.leave_network(sign, node, r.network_id)
            case NetworkSub.MEMBERS:
                return "network members", reg.list_nodes(r.network_id, admin)
            case NetworkSub.INVITE:
                return "network invite", reg.invite_to_network(sign, node, r.network_id, r.node_id, admin)
            case NetworkSub.POLL_INVITES:
                return "network poll-invites", reg.poll_invites(sign, node)
            case NetworkSub.RESPOND_INVITE:
                return "network respond-invite", reg.respond_invite(sign, node, r.network_id, r.accept)
        raise IPCRequestError(f"network: unknown sub-command {int(r.sub)}")

    async def _rotatekey(self, client: Client, r: ipc.RotateKey) -> bytes:
        d = self.d
        new = ident_mod.generate(d.identity.path)
        reply = await self._registry(Cmd.ROTATE_KEY_OK, "rotate_key",
                                     reg.rotate_key(d.identity.sign_b64, d.node_id, new.public_b64))
        if new.path is not None:
            ident_mod.write(new, new.path)
        d.identity = new
        d.tunnel.identity = new.key
        d.webhook.emit("key.rotated", {"node_id": d.node_id, "public_key": new.public_b64})
        return reply

    async def _preferdirect(self, client: Client, r: ipc.PreferDirect) -> bytes:
        peer = self.d.peers.get_or_add(r.node_id)
        had_tunnel, was_relay = self.d.tunnel.has_session(r.node_id), peer.relay
        peer.relay, peer.endpoint = False, None
        self.d.tunnel.drop_session(r.node_id)
        ready = await self.d.wait_for_key(r.node_id)
        return _json(Cmd.PREFER_DIRECT_OK, {"node_id": r.node_id, "had_tunnel": had_tunnel,
                                            "was_relay_active": was_relay, "was_relay_pinned": False,
                                            "pila_pushed": ready, "resolve_error": "" if ready else "no tunnel"})

    # -- request-signature envelopes --------------------------------------------------------------------
    def _sign_envelope(self, client: Client, r: ipc.JsonRequest) -> bytes:
        """The daemon builds the envelope itself (its address, now, a fresh nonce unless given) and signs only
        its canonical form: never a caller's raw string, so the socket is no signing oracle."""
        audience, body_hash, body_b64, nonce = (_text(r.body, key, "sign_envelope")
                                                for key in ("audience", "body_hash", "body_b64", "nonce"))
        if not audience:
            raise IPCRequestError("sign_envelope: audience required")
        if body_b64:
            if body_hash:
                raise IPCRequestError("sign_envelope: body_hash and body_b64 are mutually exclusive")
            try:
                body_hash = reqsig.hash_body(base64.b64decode(body_b64, validate=True))
            except (binascii.Error, ValueError) as exc:
                raise IPCRequestError(f"sign_envelope: body_b64 not base64: {exc}") from None
        if not body_hash:
            raise IPCRequestError("sign_envelope: body_hash or body_b64 required")
        if not self.d.node_id:
            raise IPCRequestError("sign_envelope: daemon not registered (no address)")
        addr = Addr.parse(self.d.address)
        env = reqsig.Envelope(addr.network, addr.node, int(clock.wall()), nonce or secrets.token_hex(8), body_hash,
                              audience)
        try:
            canonical = env.canonical()
        except reqsig.ReqsigError as exc:
            raise IPCRequestError(f"sign_envelope: {exc}") from None
        return _json(Cmd.SIGN_ENVELOPE_OK, {"type": "sign_envelope_ok", "envelope": canonical,
                                            "signature": self.d.identity.sign_b64(canonical), "address": str(addr)})

    async def _verify_envelope(self, client: Client, r: ipc.JsonRequest) -> bytes:
        """Parse, check freshness, find the signer's key (ours from key exchange or an earlier verify, else the
        registry) and check the signature. A failed check is a verify_envelope_ok with valid false + reason."""
        envelope, signature = (_text(r.body, key, "verify_envelope") for key in ("envelope", "signature"))
        max_skew, standing = r.body.get("max_skew_secs", 0), r.body.get("check_standing", False)
        if not gojson.is_number(max_skew) or not isinstance(standing, bool):
            raise IPCRequestError("verify_envelope: bad payload: max_skew_secs must be a number and "
                                  "check_standing a boolean")
        if not envelope or not signature:
            raise IPCRequestError("verify_envelope: envelope and signature required")
        try:
            env = reqsig.parse(envelope)
            reqsig.check_fresh(env, clock.wall(), float(int(max_skew)))
        except reqsig.ReqsigError as exc:
            return _envelope_rejected(str(exc))
        peer = self.d.peers.get(env.node)
        key = (peer.public_key if peer is not None else "") or self._verified_keys.get(env.node, "")
        via = "cache" if key else "registry"
        if not key:
            key = await self.d.lookup_key(env.node)
            if not key:
                return _envelope_rejected(f"public key for node {env.node} unavailable: the registry has none")
        try:
            reqsig.verify(base64.b64decode(key), envelope, signature)
        except (reqsig.ReqsigError, binascii.Error, ValueError) as exc:
            return _envelope_rejected(str(exc))
        if len(self._verified_keys) >= VERIFIED_KEYS_MAX:
            self._verified_keys.clear()
        self._verified_keys[env.node] = key
        reply: dict[str, Any] = {"type": "verify_envelope_ok", "valid": True, "node_id": env.node,
                                 "address": str(Addr(env.network, env.node)), "verified_via": via,
                                 "trusted": env.node in self.d.trust.trusted}
        if standing:
            reply.update(await self._standing(env))
        return _json(Cmd.VERIFY_ENVELOPE_OK, reply)

    async def _standing(self, env: reqsig.Envelope) -> dict[str, Any]:
        """The signer's registry standing, best effort: each field only when the registry returned it."""
        try:
            found = await self.d.registry.request(reg.lookup(env.node))
        except reg.RegistryError:
            return {}
        out: dict[str, Any] = {}
        last_seen = found.get("last_seen_unix")
        if gojson.is_number(last_seen):
            out["last_seen_unix"] = int(last_seen)
            out["online"] = abs(int(clock.wall()) - int(last_seen)) <= ONLINE_WITHIN
        generation = found.get("key_generation")
        if gojson.is_number(generation):
            out["key_generation"] = int(generation)
        networks = found.get("networks")
        if isinstance(networks, list):
            out["network_member"] = env.network in networks
        return out


def _text(body: dict[str, Any], key: str, verb: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise IPCRequestError(f"{verb}: bad payload: {key} must be a string")
    return value


def _envelope_rejected(reason: str) -> bytes:
    return _json(Cmd.VERIFY_ENVELOPE_OK, {"type": "verify_envelope_ok", "valid": False, "reason": reason})
