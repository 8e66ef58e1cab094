"""The IPC verbs: one method per request type, answering as the official 1.18 daemon does."""
from __future__ import annotations

import asyncio
import inspect
import logging
from typing import TYPE_CHECKING, Any

from .. import identity as ident_mod
from ..proto import ipc
from ..proto import registry as reg
from ..proto.addr import SocketAddr
from ..proto.errors import IPCRequestError
from ..proto.ipc import Cmd, HandshakeSub, NetworkSub
from . import clock, status
from .ipc_server import LATER, Client
from .trust import TrustError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.ipc")

NOT_SUPPORTED = "{verb}: not supported by this daemon (PilotMesh); use the official pilot-daemon for it"


def _json(cmd: Cmd, body: Any) -> bytes:
    return ipc.JsonReply(cmd, body).encode()


class IPCOps:
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    # -- Handler protocol -----------------------------------------------------------------------
    def handle_inline(self, client: Client, request: ipc.AnyRequest) -> None:
        if isinstance(request, ipc.SendTo):
            if request.addr.is_zero:
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
        method = getattr(self, "_" + type(request).__name__.lower(), None)
        if method is None:
            verb = type(request).__name__.lower()
            if isinstance(request, ipc.JsonRequest):
                verb = request.cmd.name.lower()
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
        if r.addr.node != self.d.node_id and not await self.d.wait_for_key(r.addr.node):
            raise IPCRequestError(f"sendto: no tunnel to node {r.addr.node} (key exchange did not complete)")
        self.d.send_datagram(r.addr, r.port, r.data)
        return ipc.EmptyReply(Cmd.SEND_TO_OK).encode()

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

    def _setwebhook(self, client: Client, r: ipc.SetWebhook) -> bytes:
        return _json(Cmd.SET_WEBHOOK_OK, {"webhook": r.url})

    async def _network(self, client: Client, r: ipc.Network) -> bytes:
        sign, node = self.d.identity.sign_b64, self.d.node_id
        if r.sub == NetworkSub.LIST:
            msg = {"type": "list_networks"}
        elif r.sub == NetworkSub.JOIN:
            msg = reg.join_network(sign, node, r.network_id, r.token)
        elif r.sub == NetworkSub.LEAVE:
            msg = reg.leave_network(sign, node, r.network_id)
        elif r.sub == NetworkSub.MEMBERS:
            msg = {"type": "list_nodes", "network_id": r.network_id}
        else:
            raise IPCRequestError(NOT_SUPPORTED.format(verb="network invites"))
        reply = await self._registry(Cmd.NETWORK_OK, "network", msg)
        if r.sub == NetworkSub.JOIN and r.network_id not in self.d.networks:
            self.d.networks.append(r.network_id)
        elif r.sub == NetworkSub.LEAVE and r.network_id in self.d.networks:
            self.d.networks.remove(r.network_id)
        return reply

    async def _rotatekey(self, client: Client, r: ipc.RotateKey) -> bytes:
        d = self.d
        new = ident_mod.generate(d.identity.path)
        reply = await self._registry(Cmd.ROTATE_KEY_OK, "rotate_key",
                                     reg.rotate_key(d.identity.sign_b64, d.node_id, new.public_b64))
        if new.path is not None:
            ident_mod.write(new, new.path)
        d.identity = new
        d.tunnel.identity = new.key
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
