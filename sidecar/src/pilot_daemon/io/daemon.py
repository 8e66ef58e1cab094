"""The daemon: identity, registration, peers, one tunnel session, datagrams, built-in services, IPC.

Everything runs on one event loop. Inbound UDP goes through ``TunnelSession``; its events are handled in
``_pump``, which also flushes outgoing frames and re-arms the one timer. Registry calls run as tasks.
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from .. import identity as ident_mod
from ..proto import beacon as bp
from ..proto import ipc
from ..proto import packet as pk
from ..proto import registry as reg
from ..proto import tunnel as tn
from ..proto.addr import Addr, NODE_BROADCAST
from ..proto.errors import CryptoError
from ..proto.stream import KEEPALIVE_INTERVAL
from . import clock, status
from .beacon import BeaconClient
from .conn_events import ConnEvents
from .conns import Conns
from .ipc_server import IPCServer, parse_allowed_uids
from .peers import Peer, PeerTable
from .registry_client import RegistryClient, RegistryUnavailable
from .transport import TransportManager
from .trust import TrustManager
from .udp import UDPSocket, join_host_port, split_host_port
from .webhook import Webhook

log = logging.getLogger("pilot_daemon")

DISCOVER_FAST, DISCOVER_SLOW = 1.0, 30.0
TRUST_POLL_INTERVAL = 3.0
PUNCH_BURST = 3
KEY_WAIT = 10.0
DRAIN_TIMEOUT = 5.0
HANDSHAKE_DIAL_TIMEOUT = 5.0
RELAY_AFTER_DIRECT_SILENCE = 3.0   # relayed frames from a peer silent on its direct path: answer by relay


class DaemonError(Exception):
    """The daemon cannot start or go on (bad settings, registry refused us); the message says why."""


class Daemon:
    def __init__(self, settings: dict[str, Any], identity: ident_mod.Identity) -> None:
        self.s = settings
        self.identity = identity
        self.encrypt: bool = settings["encrypt"]
        self.public: bool = settings["public"]
        self.hostname: str = settings["hostname"]
        self.owner: str = settings["email"] or settings["owner"] or identity.owner
        self.transport = "udp"
        self.beacon_addr: str = settings["beacon"]
        self.node_id = 0
        self.address = ""
        self.endpoint = ""
        self.networks: list[int] = []
        self.counters = status.Counters()
        self.webhook = Webhook(settings["webhook"], settings["webhook_secret"], lambda: self.node_id)
        self.conn_events = ConnEvents(self.webhook)
        self.peers = PeerTable()
        self.ports: dict[int, Any] = {}           # bound port -> IPC client (None: a built-in service)
        self.registry = RegistryClient(settings["registry"], tls=settings["registry_tls"],
                                       trust=settings["registry_trust"], fingerprint=settings["registry_fingerprint"])
        self.tunnel = tn.TunnelSession(identity=identity.key, encrypt=self.encrypt)
        store = Path(identity.path).parent / "trust.json" if identity.path else None
        self.trust = TrustManager(self.registry.request, self.lookup_key, identity.sign_b64,
                                  auto_approve=settings["trust_auto_approve"], store=store)
        self.conns = Conns(self)
        self.trust.send_direct = self.send_handshake
        self.trust.forget_peer = self.forget_peer
        self.trust.background = self.spawn
        self.trust.on_event = self.webhook.emit
        from .ipc_ops import IPCOps   # the IPC verbs need the daemon; they live in their own module
        self.ipc = IPCServer(settings["socket"], IPCOps(self),
                             allowed_uids=parse_allowed_uids(settings["socket_allow_uids"]))
        self.udp: UDPSocket | Any = None          # the current link: a UDPSocket or (compat) a CompatLink
        self.beacon: BeaconClient | None = None
        self.transports = TransportManager(self, settings, dict(os.environ))
        self.metrics = None
        if settings["metrics_listen"]:   # PilotMesh extension; aiohttp is imported only when asked for
            from .metrics import MetricsServer
            self.metrics = MetricsServer(self, settings["metrics_listen"])
        self.started = clock.now()
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._next_ephemeral = pk.PORT_EPHEMERAL_MIN

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transports.start()      # sets self.udp, self.beacon, self.transport
        await self.register()
        if self.metrics is not None:
            await self.metrics.start()
        await self.ipc.start()
        log.info("daemon ready", extra={"node_id": self.node_id, "address": self.address,
                                        "endpoint": self.endpoint, "socket": self.s["socket"]})
        for loop in (self._heartbeat_loop(), self._discover_loop(), self._trust_loop(), self.transports.watch(),
                     self.webhook.heartbeats()):
            self.spawn(loop)

    async def stop(self) -> None:
        """Drain: close the IPC socket, FIN every stream and let its data go (up to 5 s), stop tasks and sockets;
        the webhook gets up to 5 s for what is queued (``daemon.shutting_down`` last)."""
        self.webhook.emit("daemon.shutting_down", status.shutting_down(self, self.uptime()))
        await self.ipc.close()
        await self.conns.drain(DRAIN_TIMEOUT)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._timer is not None:
            self._timer.cancel()
        await self.registry.close()
        await self.webhook.close()
        if self.metrics is not None:
            await self.metrics.stop()
        self.transports.close()
        self.stopped.set()

    def spawn(self, coro: Coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # -- registry -------------------------------------------------------------------------------
    def _listen_addr(self) -> str:
        if self.transport == "compat":
            return "0.0.0.0:0"    # as the official compat daemon: relay-only, no endpoint
        fixed = self.s["advertise_endpoint"] or self.s["endpoint"]
        if fixed:
            return fixed
        observed = self.beacon.observed if self.beacon else None
        if observed and bp.is_usable_public(observed[0]):
            return join_host_port(*observed)
        assert self.udp is not None
        return join_host_port(*self.udp.local)

    async def register(self) -> None:
        delay = 0.25
        while True:
            listen_addr = self._listen_addr()
            msg = reg.register(self.identity.sign_b64, listen_addr, self.identity.public_b64, self.owner,
                               status.COMPAT_VERSION,
                               relay_only=self.s["relay_only"] or self.transport == "compat")
            try:
                reply = await self.registry.request(msg)
                break
            except RegistryUnavailable as exc:
                log.warning("registration failed, retrying in %.1fs: %s", delay, exc.message)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
            except reg.RegistryError as exc:
                raise DaemonError(f"the registry refused registration: {exc.message}") from None
        node = reply.get("node_id")
        if not isinstance(node, int) or not 0 < node < NODE_BROADCAST:
            raise DaemonError(f"the registry answered register without a usable node_id: {reply!r}")
        rejoined = self.conns.table is not None
        if not rejoined:
            self.conns.start(node)
        elif node != self.node_id:   # a registry that lost its state: adopt the new id, as peers will look it up
            log.warning("the registry gave us a new node id", extra={"old": self.node_id, "new": node})
            self.conns.table.node = node
        self.node_id = self.tunnel.local_node = self.trust.node_id = node
        self.address = str(Addr(0, node))
        self.endpoint = listen_addr
        log.info("daemon registered", extra={"node_id": node, "endpoint": listen_addr})
        self.webhook.registered(self.address, listen_addr, node, again=rejoined)
        if self.transport == "compat":
            await self.transports.after_register(node)
        elif self.beacon:
            self.beacon.discover(node)
        await self._registry_best_effort(reg.set_visibility(self.identity.sign_b64, node, self.public))
        if self.hostname:
            await self._registry_best_effort(reg.set_hostname(self.identity.sign_b64, node, self.hostname))
        for net in filter(None, (n.strip() for n in self.s["networks"].split(","))):
            if await self._registry_best_effort(reg.join_network(self.identity.sign_b64, node, int(net))):
                self.networks.append(int(net))

    async def _registry_best_effort(self, msg: reg.Message) -> reg.Message | None:
        try:
            return await self.registry.request(msg)
        except reg.RegistryError as exc:
            log.warning("registry %s failed: %s", msg.get("type"), exc.message)
            return None

    async def lookup_key(self, node: int) -> str:
        try:
            reply = await self.registry.request(reg.lookup(node))
        except reg.RegistryError:
            return ""
        key = reply.get("public_key")
        return key if isinstance(key, str) else ""

    async def _heartbeat_loop(self) -> None:
        """Registry heartbeat every ``-keepalive`` (60 s by default; 0 means the default), as the official daemon."""
        interval = self.s["keepalive"] if self.s["keepalive"] > 0 else KEEPALIVE_INTERVAL
        while True:
            await asyncio.sleep(interval)
            try:
                await self.registry.request(reg.heartbeat(self.identity.sign_b64, self.node_id))
            except RegistryUnavailable as exc:
                log.warning("heartbeat failed: %s", exc.message)
            except reg.RegistryError as exc:
                log.warning("heartbeat refused (%s); registering again", exc.message)
                await self.register()

    async def _discover_loop(self) -> None:
        for i in range(1_000_000_000):
            await asyncio.sleep(DISCOVER_FAST if i < 5 else DISCOVER_SLOW)
            if self.beacon:
                self.beacon.discover(self.node_id)

    async def _trust_loop(self) -> None:
        while True:
            await asyncio.sleep(TRUST_POLL_INTERVAL)
            try:
                await self.trust.poll()
            except reg.RegistryError as exc:
                log.debug("poll_handshakes failed: %s", exc.message)

    # -- inbound UDP ----------------------------------------------------------------------------
    def _on_datagram(self, data: bytes, addr: Any) -> None:
        now = clock.now()
        if data and data[0] >= tn.BEACON_MAX_TYPE:
            self.counters.bytes_recv += len(data)
            self.counters.pkts_recv += 1
        self.tunnel.receive_datagram(data, now, addr=addr)

    def _on_datagram_batch(self) -> None:
        self._pump(clock.now())

    def _pump(self, now: float) -> None:
        """Handle the tunnel's events, then send what the streams and the tunnel queued; re-arm the timer."""
        tunnel = self.tunnel
        while (ev := tunnel.next_event()) is not None:
            try:
                self._on_event(ev, now)
            except Exception:
                log.exception("tunnel event %s failed", type(ev).__name__)
        self.conns.flush(now)
        self._flush_tunnel()
        self.flush_io()

    def flush_io(self) -> None:
        """What handling an event queued leaves now, not a loop pass later: link writes, IPC replies and pushes."""
        if self.udp is not None:
            self.udp.flush()
        self.ipc.flush()

    def _flush_tunnel(self) -> None:
        for node, frame in self.tunnel.datagrams_to_send():
            self._transmit(node, frame)
        self.arm_timer()

    def _on_event(self, ev: tn.TunnelEvent, now: float) -> None:
        if isinstance(ev, tn.PacketReceived):
            self._on_packet(ev, now)
        elif isinstance(ev, tn.BeaconReceived):
            if self.beacon is not None and self.beacon.is_beacon(ev.addr):   # no punch/relay orders from strangers
                self._on_beacon(ev.data, now)
        elif isinstance(ev, tn.TunnelEstablished):
            peer = self.peers.get_or_add(ev.peer_node)
            self._note_path(peer, ev.addr, ev.relay)
            peer.encrypted, peer.authenticated = True, ev.authenticated
            self.webhook.emit("tunnel.established", {"peer_node_id": ev.peer_node, "authenticated": ev.authenticated,
                                                     "relay": ev.relay, "rekeyed": ev.rekeyed})
            log.debug("encrypted tunnel established", extra={"peer_node_id": ev.peer_node, "auth": ev.authenticated,
                                                              "relay": peer.relay})
            self._flush_queue(peer)
        elif isinstance(ev, tn.PeerIdentityNeeded):
            self.spawn(self._provide_identity(ev.peer_node))
        elif isinstance(ev, tn.FrameDropped):
            if isinstance(ev.error, CryptoError):
                self.counters.encrypt_fail += 1
            log.debug("frame dropped: %s", ev.error)
        elif isinstance(ev, tn.SessionDropped):
            self.peers.get_or_add(ev.peer_node).encrypted = False
        elif isinstance(ev, tn.RekeyGaveUp):
            peer = self.peers.get_or_add(ev.peer_node)
            peer.queue.clear()
            peer.wake(False)

    def _note_path(self, peer: Peer, addr: Any, relay: bool) -> None:
        if not relay and addr:
            peer.direct_rx = clock.now()
            if addr != peer.endpoint or peer.relay:
                peer.endpoint, peer.relay = tuple(addr)[:2], False
        elif relay and (peer.endpoint is None or clock.now() - peer.direct_rx > RELAY_AFTER_DIRECT_SILENCE):
            peer.relay = True     # the peer now talks only through the beacon (e.g. it switched to compat)

    async def _provide_identity(self, node: int) -> None:
        key = await self.lookup_key(node)
        raw = base64.b64decode(key) if key else None
        self.peers.get_or_add(node).public_key = key
        self.tunnel.provide_peer_identity(node, raw, clock.now())
        self._pump(clock.now())

    def _on_beacon(self, data: bytes, now: float) -> None:
        if self.beacon is None:
            return
        msg = self.beacon.handle(data)
        if isinstance(msg, bp.PunchCommand):
            for _ in range(PUNCH_BURST):
                self.udp.send(tn.encode_punch(self.node_id), msg.endpoint)  # type: ignore[union-attr]
        elif isinstance(msg, bp.RelayDeliver):
            self.tunnel.receive_datagram(msg.frame, now, relay=True)

    def _on_packet(self, ev: tn.PacketReceived, now: float) -> None:
        packet = ev.packet
        peer = self.peers.get_or_add(ev.peer_node)
        self._note_path(peer, ev.addr, ev.relay)
        peer.last_rx = now
        if ev.encrypted:
            self.counters.encrypt_ok += 1
        if packet.dst.node not in (self.node_id, NODE_BROADCAST):
            return
        if packet.protocol == pk.Proto.CONTROL:
            if packet.dst_port == pk.PORT_PING and not packet.has(pk.Flag.ACK):
                self.send_packet(peer.node, pk.Packet(
                    protocol=pk.Proto.CONTROL, src=packet.dst, dst=packet.src, flags=pk.Flag.ACK,
                    seq=0, ack=(packet.seq + 1) & 0xFFFFFFFF, payload=packet.payload).encode())
        elif packet.protocol == pk.Proto.DATAGRAM:
            if not (self.public or self.trust.allows(peer.node, now)):
                log.debug("datagram from untrusted node %d dropped (private node)", peer.node)
                return
            if self.webhook.active:
                self.webhook.emit("data.datagram", {"src_addr": str(packet.src), "src_port": packet.src_port,
                                                    "dst_port": packet.dst_port, "size": len(packet.payload)})
            self.deliver_datagram(packet)
        elif packet.protocol == pk.Proto.STREAM:
            self.on_stream_packet(packet, peer, now)

    def deliver_datagram(self, packet: pk.Packet) -> None:
        """Fan an inbound datagram out to every IPC client, as the official daemon does."""
        frame = ipc.RecvFrom(packet.src, packet.src_port, packet.dst_port, packet.payload).encode()
        for client in list(self.ipc.clients.values()):
            client.push(frame)

    def on_stream_packet(self, packet: pk.Packet, peer: Peer, now: float) -> None:
        self.conns.receive(packet, now)

    # -- outbound -------------------------------------------------------------------------------
    def send_packet(self, node: int, data: bytes) -> bool:
        """Seal and send an encoded packet; queue it (and start resolve/key exchange) when not yet possible."""
        peer = self.peers.get_or_add(node)
        if not peer.reachable or (self.encrypt and not self.tunnel.has_session(node)):
            peer.queue.append(data)
            self._ensure_tunnel(peer)
            return False
        self._transmit(node, self.tunnel.seal(node, data))
        return True

    def _flush_queue(self, peer: Peer) -> None:
        while peer.queue and peer.reachable and (not self.encrypt or self.tunnel.has_session(peer.node)):
            self._transmit(peer.node, self.tunnel.seal(peer.node, peer.queue.popleft()))
        if not self.encrypt or self.tunnel.has_session(peer.node):
            peer.wake(True)

    def _transmit(self, node: int, frame: bytes) -> None:
        peer = self.peers.get(node)
        if peer is None or not peer.reachable or self.udp is None:
            log.debug("no path to node %d yet; frame dropped, resolving", node)
            if self.udp is not None:
                self._ensure_tunnel(self.peers.get_or_add(node))
            return
        self.counters.bytes_sent += len(frame)
        self.counters.pkts_sent += 1
        if peer.relay or peer.endpoint is None or not self.udp.direct:
            if self.beacon is not None:
                self.beacon.relay(self.node_id, node, frame)
        else:
            self.udp.send(frame, peer.endpoint)

    def _ensure_tunnel(self, peer: Peer) -> None:
        if peer.resolving is not None and not peer.resolving.done():
            return
        if not peer.reachable:
            peer.resolving = self.spawn(self._resolve(peer))
            return
        self._start_key_exchange(peer)

    def _start_key_exchange(self, peer: Peer) -> None:
        if self.encrypt and not self.tunnel.has_session(peer.node):
            self.tunnel.start_key_exchange(peer.node, clock.now())
        else:
            self._flush_queue(peer)
        self._flush_tunnel()

    async def _resolve(self, peer: Peer) -> None:
        """Find the peer's endpoint (registry resolve) and key (lookup); a relay-only peer, compat or an
        unreachable registry use the beacon relay. A refusal (no such node, a private node that does not trust
        us) fails the waiting dials at once with the registry's words, as the official daemon does."""
        node = peer.node
        peer.resolve_error = ""
        resolve = asyncio.ensure_future(self.registry.request(
            reg.resolve(self.identity.sign_b64, self.node_id, node)))
        if self.beacon is not None:
            self.beacon.punch_request(self.node_id, node)
        key = await self.lookup_key(node)
        if key and not peer.public_key:
            peer.public_key = key
            self.tunnel.provide_peer_identity(node, base64.b64decode(key), clock.now())
        try:
            reply = await resolve
        except RegistryUnavailable as exc:
            log.debug("resolve %d: %s; using the beacon relay", node, exc.message)
            peer.relay = True
        except reg.RegistryError as exc:
            peer.resolve_error = f"resolve node {node}: {exc}"
            log.debug("resolve refused", extra={"peer_node_id": node, "error": str(exc)})
            peer.queue.clear()
            peer.wake(False)
            return
        else:
            real = reply.get("real_addr")
            peer.relay = bool(reply.get("relay_only")) or not isinstance(real, str) or not real or \
                self.transport == "compat"
            if not peer.relay:
                try:
                    host, port = split_host_port(real)
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port)
                    peer.endpoint = infos[0][4][:2]
                except (OSError, ValueError) as exc:
                    log.debug("resolve %d: unusable endpoint %r (%s); using the beacon relay", node, real, exc)
                    peer.relay = True
        self._start_key_exchange(peer)

    def reset_paths(self) -> set[int]:
        """The transport changed: forget every peer's path (compat: all relayed; udp: resolved again) and
        every tunnel key. A fresh X25519 key makes each peer re-key with us over the new path: the official
        daemon treats a repeated key as a keepalive and keeps sending to the old endpoint. Returns the peers
        we were talking to, for ``rekey``."""
        relay = self.transport == "compat"
        self.tunnel.rotate_key()
        active = set()
        for peer in self.peers.values():
            if peer.resolving is not None and not peer.resolving.done():
                peer.resolving.cancel()
            if peer.encrypted or peer.queue:
                active.add(peer.node)
            peer.endpoint, peer.relay, peer.resolving = None, relay, None
            peer.encrypted = peer.authenticated = False
        return active

    def rekey(self, nodes: set[int]) -> None:
        """Key exchange now, over the current path, with these peers (after a transport switch)."""
        for node in nodes:
            self._ensure_tunnel(self.peers.get_or_add(node))

    async def send_handshake(self, peer: int, kind: str, *, justification: str = "", reason: str = "") -> bool:
        """One direct trust message to the peer's port 444 (False: not delivered; use the registry relay)."""
        from .handshake import message
        data = message(kind, self.node_id, peer, self.identity.public_b64, self.identity.sign_b64,
                       justification=justification, reason=reason)
        return await self.conns.dial_and_send(peer, pk.PORT_HANDSHAKE, data, HANDSHAKE_DIAL_TIMEOUT)

    def forget_peer(self, node: int) -> None:
        """Tear the tunnel down (trust revoked): the next packet needs a new key exchange."""
        self.tunnel.drop_session(node)
        peer = self.peers.get(node)
        if peer is not None:
            peer.encrypted = peer.authenticated = False

    async def wait_for_key(self, node: int, timeout: float = KEY_WAIT) -> bool:
        """Wait until packets to ``node`` can be sealed (starting resolve + key exchange if needed)."""
        peer = self.peers.get_or_add(node)
        if peer.reachable and (not self.encrypt or self.tunnel.has_session(node)):
            return True
        fut = asyncio.get_running_loop().create_future()
        peer.key_waiters.append(fut)
        self._ensure_tunnel(peer)
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return False

    def send_datagram(self, dst: Addr, port: int, data: bytes, *, src_port: int = 0, member: bool = False) -> None:
        """One datagram from an ephemeral port (or ``src_port``); the source address is on the destination's
        network when we are a member of it (``member``: known to be, e.g. from the registry's list)."""
        src = Addr(dst.network if member or dst.network in self.networks else 0, self.node_id)
        packet = pk.Packet(protocol=pk.Proto.DATAGRAM, src=src, dst=dst, src_port=src_port or self.ephemeral_port(),
                           dst_port=port, payload=data)
        if dst.node == self.node_id:
            self.deliver_datagram(packet)
            return
        self.trust.note_contact(dst.node, clock.now())
        self.send_packet(dst.node, packet.encode())

    def ephemeral_port(self) -> int:
        for _ in range(pk.PORT_EPHEMERAL_MAX - pk.PORT_EPHEMERAL_MIN + 1):
            port = self._next_ephemeral
            self._next_ephemeral = port + 1 if port < pk.PORT_EPHEMERAL_MAX else pk.PORT_EPHEMERAL_MIN
            if port not in self.ports:
                return port
        raise OSError("no free ephemeral port")

    # -- timers ---------------------------------------------------------------------------------
    def arm_timer(self) -> None:
        deadlines = [t for t in (self.tunnel.get_timer(), self.conns.get_timer()) if t is not None]
        at = min(deadlines) if deadlines else None
        if at == self._timer_at or (at is not None and self._timer_at is not None and at > self._timer_at):
            return   # a later deadline: the armed timer fires early and re-arms (no handle churn per packet)
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._on_timer) if at is not None else None

    def _on_timer(self) -> None:
        now = clock.now()
        self._timer = self._timer_at = None
        self.tunnel.handle_timer(now)
        self.conns.handle_timer(now)
        self._pump(now)

    # -- bookkeeping for info/health ---------------------------------------------------------------
    def connection_count(self) -> int:
        return self.conns.open_count()

    def conn_rows(self) -> list[dict]:
        return self.conns.rows()

    def port_count(self) -> int:
        return len(self.ports)

    def uptime(self) -> float:
        return clock.now() - self.started


async def watch_exit_file(path: str, stop: asyncio.Event, interval: float = 1.0) -> None:
    """Set ``stop`` once ``path`` exists (Jobs without native sidecars touch it when the app is done)."""
    while not stop.is_set():
        if os.path.exists(path):
            log.info("exit file %s appeared; shutting down", path)
            stop.set()
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
