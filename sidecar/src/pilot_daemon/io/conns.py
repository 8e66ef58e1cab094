"""Streams of the daemon: the sans-I/O ``StreamTable`` tied to IPC clients and built-in services.

Who owns a connection: the IPC client that dialled it or whose bound port accepted it (it gets the
Accept/Recv/CloseOK pushes), or a built-in service (echo on port 7). A client that vanishes takes its
connections and ports with it. Writers are paced: when a stream's send buffer is full, the IPC server
stops reading that client until the peer has acknowledged enough (Send frames are never answered).
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..proto import ipc
from ..proto import packet as pk
from ..proto import stream as st
from ..proto.addr import Addr, SocketAddr
from ..proto.errors import IPCRequestError
from ..proto.streams import Accepted, PortInUse, StreamTable, SynDropped
from . import clock

if TYPE_CHECKING:
    from .daemon import Daemon
    from .ipc_server import Client

log = logging.getLogger("pilot_daemon.conns")

DIAL_TIMEOUT = 30.0
DialDone = Callable[[int, str], None]
LOW_WATER = 256 << 10    # resume a paused writer once its stream holds less than this


class Service:
    """A built-in owner of streams (no IPC client): told about each stream's life."""

    def on_connected(self, stream: st.Stream, now: float) -> None:
        pass

    def on_data(self, stream: st.Stream, data: bytes) -> None:
        pass

    def on_end(self, stream: st.Stream, now: float) -> None:
        pass


class Echo(Service):
    """Port 7: every byte back to the sender (what ``pilotctl ping`` and ``bench`` use).

    As the official echo: a read that starts with ``TRCE`` and holds at least 12 bytes (``pilotctl ping
    --trace``: magic + the client's u64 ns clock) is answered with those 12 bytes plus our u64 ns clock,
    from which the client splits the round trip into to-server and from-server parts.
    """

    def on_data(self, stream: st.Stream, data: bytes) -> None:
        if not stream.is_closed:
            if data[:4] == b"TRCE" and len(data) >= 12:
                data = data[:12] + time.time_ns().to_bytes(8, "big")
            try:
                stream.send(data)
            except st.StreamError:
                pass

    def on_end(self, stream: st.Stream, now: float) -> None:
        stream.close(now)


class OneShot(Service):
    """Dial, write one message, close (the handshake's direct sends); ``done`` says whether it went out."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.done: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_connected(self, stream: st.Stream, now: float) -> None:
        stream.send(self.data)
        stream.close(now)
        if not self.done.done():
            self.done.set_result(True)

    def on_end(self, stream: st.Stream, now: float) -> None:
        if not self.done.done():
            self.done.set_result(False)


class _Dialing(NamedTuple):
    client: "Client"
    done: DialDone
    timer: asyncio.TimerHandle


class Conns:
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon
        self.table: StreamTable | None = None
        self.owner: dict[int, Any] = {}            # conn_id -> Client or service
        self.served: dict[int, st.Stream] = {}     # conn_id -> stream, for service-owned streams
        self.dials: dict[int, _Dialing] = {}
        self.paused: dict[int, "Client"] = {}      # conn_id -> client whose reading is paused

    def start(self, node: int) -> None:
        s = self.d.s
        self.table = StreamTable(node, syn_rate_limit=s["syn_rate_limit"], syn_filter=self._syn_allowed,
                                 max_connections_per_port=s["max_conns_per_port"],
                                 max_total_connections=s["max_conns_total"], time_wait=s["time_wait"],
                                 keepalive=s["keepalive"], idle_timeout=s["idle_timeout"],
                                 on_syn=self.d.conn_events.syn_received)
        if not s["no_echo"]:
            self.listen(pk.PORT_ECHO, Echo())
        from .dataexchange import DataExchange      # these need Service from this module
        from .eventstream import EventBroker
        from .handshake import HandshakeService
        self.listen(pk.PORT_HANDSHAKE, HandshakeService(self.d))
        if not s["no_dataexchange"]:
            self.listen(pk.PORT_DATAEXCHANGE, DataExchange(force_b64=s["dataexchange_b64"],
                                                           on_event=self.d.webhook.emit))
        if not s["no_eventstream"]:
            self.listen(pk.PORT_EVENTSTREAM, EventBroker(self.d))

    def _syn_allowed(self, packet: pk.Packet) -> bool:
        d = self.d
        return d.public or packet.dst_port == pk.PORT_HANDSHAKE or d.trust.allows(packet.src.node, clock.now())

    # -- ports ----------------------------------------------------------------------------------
    def listen(self, port: int, owner: Any) -> None:
        if port in self.d.ports:
            raise IPCRequestError(f"port {port} already bound")
        if self.table is not None:
            try:
                self.table.listen(port)
            except PortInUse:
                raise IPCRequestError(f"port {port} already bound") from None
        self.d.ports[port] = owner

    def unlisten(self, port: int) -> None:
        self.d.ports.pop(port, None)
        if self.table is not None:
            self.table.unlisten(port)

    # -- IPC verbs ------------------------------------------------------------------------------
    def can_dial_now(self, node: int) -> bool:
        """True when a SYN to ``node`` can leave at once (registered, path known, tunnel keyed)."""
        if self.table is None:
            return False
        if node == self.d.node_id:
            return True
        peer = self.d.peers.get(node)
        return peer is not None and peer.reachable and (not self.d.encrypt or self.d.tunnel.has_session(node))

    def start_dial(self, client: "Client", remote: SocketAddr, done: DialDone) -> None:
        """Send the SYN now (see ``can_dial_now``); ``done(conn_id, error)`` runs once, with error "" when the
        peer accepted, else why not (refused, closed, timed out, cancelled)."""
        assert self.table is not None
        now = clock.now()
        self.d.trust.note_contact(remote.addr.node, now)
        stream = self.table.connect(remote, now)
        conn_id = stream.conn_id
        self.owner[conn_id] = client
        timer = asyncio.get_running_loop().call_later(DIAL_TIMEOUT, self._dial_abort, conn_id,
                                                      "dial: connection timed out")
        self.dials[conn_id] = _Dialing(client, done, timer)
        self.flush(now)

    async def dial(self, client: "Client", remote: SocketAddr) -> int:
        """``start_dial`` after waiting for the tunnel (resolve + key exchange) if needed."""
        if self.table is None:
            raise IPCRequestError("dial: daemon not registered yet")
        if not self.can_dial_now(remote.addr.node) and not await self.d.wait_for_key(remote.addr.node):
            peer = self.d.peers.get(remote.addr.node)
            raise IPCRequestError((peer.resolve_error if peer is not None else "") or
                                  f"dial: no tunnel to node {remote.addr.node} (key exchange did not complete)")
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(conn_id: int, error: str) -> None:
            if fut.done():
                return
            if error:
                fut.set_exception(IPCRequestError(error))
            else:
                fut.set_result(conn_id)
        self.start_dial(client, remote, done)
        return await fut

    def _finish_dial(self, conn_id: int, error: str) -> None:
        dialing = self.dials.pop(conn_id, None)
        if dialing is None:
            return
        dialing.timer.cancel()
        if error:
            self.owner.pop(conn_id, None)
        try:
            dialing.done(conn_id, error)
        except Exception:
            log.exception("dial completion for connection %d failed", conn_id)

    def _dial_abort(self, conn_id: int, error: str) -> None:
        """Give up a dial (timeout, cancel): reset the half-open stream and answer the dialler."""
        stream = self.table.streams.get(conn_id) if self.table is not None else None
        self._finish_dial(conn_id, error)
        if stream is not None:
            stream.abort(clock.now())
            self.flush()

    async def dial_and_send(self, node: int, port: int, data: bytes, timeout: float) -> bool:
        """Deliver one message on a fresh stream (as the official DialAndSend); False when it could not."""
        if self.table is None or not await self.d.wait_for_key(node, timeout):
            return False
        shot = OneShot(data)
        stream = self.table.connect(SocketAddr(Addr(0, node), port), clock.now())
        self.owner[stream.conn_id] = shot
        self.served[stream.conn_id] = stream
        self.flush()
        try:
            return await asyncio.wait_for(shot.done, timeout)
        except asyncio.TimeoutError:
            stream.abort(clock.now())
            self.flush()
            return False

    def send(self, client: "Client", conn_id: int, data: bytes) -> None:
        stream = self._owned(client, conn_id)
        if stream is None or not data:
            return
        try:
            stream.send(data)
        except st.StreamError:
            return
        if stream.send_buffer_free() == 0:
            self.paused[conn_id] = client
            client.pause()
        self.flush()

    def close(self, client: "Client", conn_id: int) -> None:
        stream = self._owned(client, conn_id)
        if stream is None:
            raise IPCRequestError(f"close: unknown connection {conn_id}")
        del self.owner[conn_id]
        self.d.conn_events.closing(stream)
        stream.close(clock.now())
        self.flush()

    def cancel(self, client: "Client") -> None:
        for conn_id, dialing in list(self.dials.items()):
            if dialing.client is client:
                self._dial_abort(conn_id, "dial: cancelled")

    def client_gone(self, client: "Client") -> None:
        self.cancel(client)
        now = clock.now()
        for conn_id, owner in list(self.owner.items()):
            if owner is client:
                del self.owner[conn_id]
                stream = self.table.streams.get(conn_id) if self.table else None
                if stream is not None:
                    self.d.conn_events.closing(stream)
                    stream.close(now)
        for port, owner in list(self.d.ports.items()):
            if owner is client:
                self.unlisten(port)
        self.flush()

    def _owned(self, client: "Client", conn_id: int) -> st.Stream | None:
        if self.table is None or self.owner.get(conn_id) is not client:
            return None
        return self.table.streams.get(conn_id)

    # -- the sans-I/O table -----------------------------------------------------------------------
    def receive(self, packet: pk.Packet, now: float) -> None:
        """Feed a packet; the caller flushes (once per batch of datagrams)."""
        if self.table is not None and packet.dst.node == self.table.node:
            self.table.receive_packet(packet, now)

    def handle_timer(self, now: float) -> None:
        if self.table is not None:
            self.table.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.table.get_timer() if self.table is not None else None

    def flush(self, now: float | None = None) -> None:
        table = self.table
        if table is None:
            return
        now = clock.now() if now is None else now
        for _ in range(64):   # events may queue more packets and vice versa
            busy = False
            while (ev := table.next_event()) is not None:
                busy = True
                try:
                    self._on_event(ev, now)
                except Exception:
                    log.exception("stream event %s failed", type(ev).__name__)
            if busy:
                self.d.ipc.flush()   # the local app hears first (a dial's reply, data); our ACKs can follow
            packets = table.packets_to_send(now)
            for packet in packets:
                if packet.dst.node == self.d.node_id:   # a dial to ourselves never leaves the process
                    asyncio.get_running_loop().call_soon(self._loopback, packet)
                else:
                    self.d.send_packet(packet.dst.node, packet.encode())
            if not busy and not packets:
                break
        self._resume_writers()
        self.d.arm_timer()
        self.d.flush_io()   # the segments leave together (compat: one TLS write)

    def _loopback(self, packet: pk.Packet) -> None:
        now = clock.now()
        self.receive(packet, now)
        self.flush(now)

    def _resume_writers(self) -> None:
        if not self.paused or self.table is None:
            return
        for conn_id, client in list(self.paused.items()):
            stream = self.table.streams.get(conn_id)
            if stream is None or stream.is_closed or stream.buffered_bytes() < LOW_WATER:
                del self.paused[conn_id]
                if client not in self.paused.values():
                    client.resume()

    def _on_event(self, ev: Any, now: float) -> None:
        self.d.conn_events.on_event(ev, self.table)    # the webhook's conn.* events
        if isinstance(ev, Accepted):
            stream = ev.stream
            owner = self.d.ports.get(stream.local.port)
            if owner is None:
                stream.abort(now)
                return
            self.owner[stream.conn_id] = owner
            if isinstance(owner, Service):
                self.served[stream.conn_id] = stream
            else:
                owner.push(ipc.Accept(stream.local.port, stream.conn_id, stream.remote.addr,
                                      stream.remote.port).encode())
            return
        if isinstance(ev, SynDropped):
            if "queue" in ev.reason:
                self.d.counters.accept_queue_drops += 1
            log.debug("SYN dropped", extra={"src": str(ev.src), "port": ev.dst_port, "reason": ev.reason})
            return
        conn_id = ev.conn_id
        owner = self.owner.get(conn_id)
        dialing = conn_id in self.dials
        stream = self.served.get(conn_id)
        if isinstance(ev, st.Connected):
            if dialing:
                self._finish_dial(conn_id, "")
            elif isinstance(owner, Service) and stream is not None:
                owner.on_connected(stream, now)
        elif isinstance(ev, st.DataReceived):
            if isinstance(owner, Service):
                if stream is not None:
                    owner.on_data(stream, ev.data)
            elif owner is not None:
                data = ev.data
                for i in range(0, len(data), ipc.SEND_CHUNK):
                    owner.push(ipc.Recv(conn_id, data[i:i + ipc.SEND_CHUNK]).encode())
        elif isinstance(ev, (st.StreamEnded, st.StreamReset, st.Closed)):
            if dialing:
                self._finish_dial(conn_id, "connection refused" if isinstance(ev, st.StreamReset)
                                  else getattr(ev, "reason", "connection closed"))
                return
            if isinstance(owner, Service):
                if stream is not None:
                    owner.on_end(stream, now)
                if isinstance(ev, st.Closed):
                    self.owner.pop(conn_id, None)
                    self.served.pop(conn_id, None)
            elif owner is not None:
                del self.owner[conn_id]
                owner.push(ipc.ConnReply(ipc.Cmd.CLOSE_OK, conn_id).encode())

    async def drain(self, timeout: float) -> None:
        """Close every stream (FIN after queued data) and wait until their data is acknowledged."""
        table = self.table
        if table is None:
            return
        now = clock.now()
        for stream in list(table.streams.values()):
            stream.close(now)
        self.flush(now)
        deadline = now + timeout
        while clock.now() < deadline and any(s.buffered_bytes() and not s.is_closed for s in table.streams.values()):
            await asyncio.sleep(0.05)

    # -- info -----------------------------------------------------------------------------------
    def rows(self) -> list[dict]:
        """``conn_list``: open connections and those in TIME_WAIT, as the official daemon lists them."""
        if self.table is None:
            return []
        return [s.info() for s in self.table.streams.values()
                if not s.is_closed or s.state is st.StreamState.TIME_WAIT]

    def open_count(self) -> int:
        """``connections``: open ones only (TIME_WAIT rows are listed, not counted, as upstream)."""
        return self.table.open_count if self.table is not None else 0
