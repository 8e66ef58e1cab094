"""All streams of one local node: listeners, demultiplexing, SYN handling, ports, timers. Sans-I/O.

Rules of the official 1.18 daemon (``handleStreamPacket`` in jerryfane ``stream_packet.go`` and the
1.18-era pilot-protocol ``zz_*_test.go``), in the order it applies them to a SYN:

1. no listener on the destination port → RST (``flags=RST``, seq/ack 0);
2. a SYN for a live connection (same local port, remote address and port) → the SYN-ACK again;
   with another initial sequence number the old connection is gone (peer restarted): replace it;
3. ``syn_filter`` (trust / network policy, decided by the caller) refuses → silent drop;
4. global token bucket, 100 SYN/s (``-syn-rate-limit``) → silent drop (no RST: no amplification);
5. per-source bucket, 10 SYN/s per node → silent drop;
6. 1024 connections on the port, or the node's total, or a full accept queue (64) → RST.

Packets (not SYN) for no known connection are dropped silently, as the official daemon does.
Ephemeral ports for dials: 49152..65535, round robin from 49152 (capture: first dial used 49152).
Connection ids start at 1 and skip 0, like the official ``conn_id`` the IPC protocol carries.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass
from typing import Callable

from .addr import Addr, SocketAddr
from .errors import LocalProtocolError
from .packet import PORT_EPHEMERAL_MAX, PORT_EPHEMERAL_MIN, Packet
from .stream import _ACK, _RST, _STREAM, _SYN, Stream, StreamEvent, StreamState


SYN_RATE_LIMIT = 100
PER_SOURCE_SYN_LIMIT = 10
MAX_CONNECTIONS_PER_PORT = 1024
MAX_TOTAL_CONNECTIONS = 65536
ACCEPT_QUEUE = 64
PER_SOURCE_TRACKED = 4096   # source nodes whose SYN buckets are kept


class PortInUse(LocalProtocolError):
    """``listen`` on a port that already has a listener (official text: "port N already bound")."""


class PortsExhausted(LocalProtocolError):
    """All 16384 ephemeral ports are in use; close some streams first."""


@dataclass(frozen=True, slots=True)
class Accepted:
    """A connection to a listening port completed its handshake; its events follow from the table."""

    stream: Stream


@dataclass(frozen=True, slots=True)
class SynDropped:
    """A SYN was refused; ``rst`` tells whether the peer was told. For logs and counters."""

    src: SocketAddr
    dst_port: int
    reason: str
    rst: bool


def _key(stream: Stream) -> Key:
    remote = stream.remote
    return stream.local.port, remote.addr.network << 32 | remote.addr.node, remote.port


def _count(counts: dict[int, int], key: int, step: int) -> None:
    """Add ``step`` to ``counts[key]``; a key whose count reaches 0 leaves the dict (``in`` means "in use")."""
    left = counts.get(key, 0) + step
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)


class _Bucket:
    __slots__ = ("tokens", "rate", "last")

    def __init__(self, rate: int, now: float) -> None:
        self.rate = rate
        self.tokens = float(rate)
        self.last = now

    def take(self, now: float) -> bool:
        self.tokens = min(float(self.rate), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class _Listener:
    __slots__ = ("port", "backlog", "pending")

    def __init__(self, port: int, backlog: int) -> None:
        self.port = port
        self.backlog = backlog
        self.pending = 0      # half-open connections on this port


Key = tuple[int, int, int]   # local port, remote network << 32 | node, remote port (ints hash in C)


class StreamTable:
    """The connection table of one node (``node`` on ``network`` 0 unless a SYN says otherwise)."""

    def __init__(self, node: int, *, syn_rate_limit: int = SYN_RATE_LIMIT,
                 per_source_syn_limit: int = PER_SOURCE_SYN_LIMIT,
                 max_connections_per_port: int = MAX_CONNECTIONS_PER_PORT,
                 max_total_connections: int = MAX_TOTAL_CONNECTIONS,
                 syn_filter: Callable[[Packet], bool] | None = None,
                 on_syn: Callable[[Stream], None] | None = None, **stream_options) -> None:
        self.node = node
        self.syn_filter = syn_filter
        self.on_syn = on_syn     # told of each stream a SYN opens, before its SYN-ACK (webhook conn.syn_received)
        self.max_connections_per_port = max_connections_per_port
        self.max_total_connections = max_total_connections
        self.stream_options = stream_options
        self._syn_rate = syn_rate_limit
        self._per_source_rate = per_source_syn_limit
        self._global: _Bucket | None = None
        self._per_source: dict[int, _Bucket] = {}
        self._listeners: dict[int, _Listener] = {}
        self._by_key: dict[Key, Stream] = {}
        self.streams: dict[int, Stream] = {}
        self._next_id = 1
        self._next_port = PORT_EPHEMERAL_MIN
        self._ports_used: dict[int, int] = {}
        self._open: set[int] = set()               # conn_ids of the streams not closed yet
        self._open_on_port: dict[int, int] = {}    # local port -> how many of those (the SYN limits: O(1))
        self._out: list[Packet] = []
        self._events: deque = deque()
        self._dirty: dict[int, Stream] = {}
        self._timers: list[tuple[float, int]] = []
        self._timer_of: dict[int, float] = {}
        self._unaccepted: set[int] = set()
        self.event_stream: Stream | None = None
        """The stream of the event ``next_event`` returned last (still set when it has left the table)."""

    # --- listeners and dials --------------------------------------------------------------------

    def listen(self, port: int, backlog: int = ACCEPT_QUEUE) -> None:
        if port in self._listeners:
            raise PortInUse(f"port {port} already bound: unbind it first or pick another port")
        self._listeners[port] = _Listener(port, backlog)

    def unlisten(self, port: int) -> None:
        self._listeners.pop(port, None)

    def connect(self, remote: SocketAddr, now: float, *, local_port: int | None = None, **options) -> Stream:
        """Start a dial from an ephemeral port (or ``local_port``); the SYN is in the next flush."""
        port = self._alloc_port() if local_port is None else local_port
        local = SocketAddr(Addr(remote.addr.network, self.node), port)
        stream = self._add(Stream(local, remote, now, initiator=True, **{**self.stream_options, **options}))
        stream.connect(now)
        return stream

    # --- sans-I/O surface ------------------------------------------------------------------------

    def receive_packet(self, pkt: Packet, now: float) -> None:
        """Feed one decoded packet of protocol 1 (others are ignored)."""
        if pkt.protocol != _STREAM:
            return
        src = pkt.src
        stream = self._by_key.get((pkt.dst_port, src.network << 32 | src.node, pkt.src_port))
        flags = pkt.flags
        if flags & _SYN and not flags & _ACK:
            if stream is not None and not stream.is_closed and pkt.seq == stream.irs and not stream.initiator:
                stream.receive_packet(pkt, now)
                return
            if stream is not None and not stream.initiator:
                self._retire(stream, replaced=True)
            self._on_syn(pkt, now)
            return
        if stream is not None:
            was_open = stream.state is StreamState.SYN_RECEIVED
            stream.receive_packet(pkt, now)
            if was_open and stream.state is not StreamState.SYN_RECEIVED:
                self._half_open_done(stream, now)

    def packets_to_send(self, now: float) -> list[Packet]:
        out, self._out = self._out, []
        dirty, self._dirty = self._dirty, {}
        for stream in dirty.values():
            out.extend(stream.packets_to_send(now))
            self._schedule(stream)
        return out

    def get_timer(self) -> float | None:
        timers = self._timers
        while timers:
            deadline, conn_id = timers[0]
            if self._timer_of.get(conn_id) == deadline:
                return deadline
            heapq.heappop(timers)
        return None

    def handle_timer(self, now: float) -> None:
        timers = self._timers
        while timers and timers[0][0] <= now:
            deadline, conn_id = heapq.heappop(timers)
            if self._timer_of.get(conn_id) != deadline:
                continue
            del self._timer_of[conn_id]
            stream = self.streams.get(conn_id)
            if stream is not None:
                was_half_open = stream.state is StreamState.SYN_RECEIVED
                stream.handle_timer(now)
                if was_half_open and stream.state is not StreamState.SYN_RECEIVED:
                    self._half_open_done(stream, now)

    def next_event(self) -> Accepted | SynDropped | StreamEvent | None:
        """Table events (``Accepted``, ``SynDropped``) and every stream's events (with ``conn_id``)."""
        while True:
            if self._events:
                item = self._events.popleft()
                if isinstance(item, Stream):
                    event = item.next_event()
                    if event is None:
                        continue
                    self._events.appendleft(item)
                    self.event_stream = item
                    return event
                return item
            return None

    # --- internals -------------------------------------------------------------------------------

    def _add(self, stream: Stream) -> Stream:
        stream.conn_id = self._next_id
        self._next_id = self._next_id + 1 if self._next_id < 0xFFFFFFFF else 1
        stream._wake = self._wake
        self.streams[stream.conn_id] = stream
        self._by_key[_key(stream)] = stream
        _count(self._ports_used, stream.local.port, 1)
        self._open.add(stream.conn_id)
        _count(self._open_on_port, stream.local.port, 1)
        return stream

    def _uncount(self, stream: Stream) -> None:
        if stream.conn_id in self._open:
            self._open.discard(stream.conn_id)
            _count(self._open_on_port, stream.local.port, -1)

    @property
    def open_count(self) -> int:
        """Streams not closed yet (TIME_WAIT ones are closed: listed in ``streams``, not counted)."""
        return len(self._open)

    def _wake(self, stream: Stream) -> None:
        self._dirty[stream.conn_id] = stream
        if (stream._events or stream._rx) and stream.conn_id not in self._unaccepted:
            if not self._events or self._events[-1] is not stream:
                self._events.append(stream)
        if stream.closed_reason is not None:   # every close ends in a wake: the count follows at once
            self._uncount(stream)
            if stream.state is StreamState.CLOSED:
                self._retire(stream)

    def _schedule(self, stream: Stream) -> None:
        deadline = stream.get_timer()
        if deadline is None:
            self._timer_of.pop(stream.conn_id, None)
        elif self._timer_of.get(stream.conn_id) != deadline:
            self._timer_of[stream.conn_id] = deadline
            heapq.heappush(self._timers, (deadline, stream.conn_id))

    def _retire(self, stream: Stream, *, replaced: bool = False) -> None:
        key = _key(stream)
        if self._by_key.get(key) is stream:
            del self._by_key[key]
        if self.streams.pop(stream.conn_id, None) is None:
            return
        self._timer_of.pop(stream.conn_id, None)
        self._uncount(stream)
        _count(self._ports_used, stream.local.port, -1)
        self._settle(stream)
        if replaced and not stream.is_closed:
            stream._on_rst()
            if not self._events or self._events[-1] is not stream:
                self._events.append(stream)

    def _settle(self, stream: Stream) -> bool:
        """A half-open stream left SYN_RECEIVED: free its backlog place (once)."""
        if stream.conn_id not in self._unaccepted:
            return False
        self._unaccepted.discard(stream.conn_id)
        listener = self._listeners.get(stream.local.port)
        if listener is not None:
            listener.pending -= 1
        return True

    def _half_open_done(self, stream: Stream, now: float) -> None:
        if self._settle(stream) and stream.established:
            self._events.append(Accepted(stream))
            self._events.append(stream)

    def _alloc_port(self) -> int:
        span = PORT_EPHEMERAL_MAX - PORT_EPHEMERAL_MIN + 1
        port = self._next_port
        for _ in range(span):
            candidate = port
            port = PORT_EPHEMERAL_MIN if port >= PORT_EPHEMERAL_MAX else port + 1
            if candidate not in self._ports_used and candidate not in self._listeners:
                self._next_port = port
                return candidate
        raise PortsExhausted("all ephemeral ports 49152..65535 are in use: close streams before dialling")

    def _prune_sources(self, now: float) -> None:
        """Forget the per-source buckets that are full again (idle >= 1 s: the same as a new one); when a flood from
        many nodes keeps more than half of them busy, forget the longest-idle ones down to half. Either way the next
        prune is at least PER_SOURCE_TRACKED / 2 new sources away, so a flood costs O(1) per SYN."""
        live = {node: b for node, b in self._per_source.items() if now - b.last < 1.0}
        keep = PER_SOURCE_TRACKED // 2
        if len(live) > keep:
            live = dict(sorted(live.items(), key=lambda item: item[1].last)[-keep:])
        self._per_source = live

    def _refuse(self, pkt: Packet, reason: str, rst: bool) -> None:
        if rst:
            self._out.append(Packet(_STREAM, pkt.dst, pkt.src, pkt.dst_port, pkt.src_port, _RST))
        self._events.append(SynDropped(SocketAddr(pkt.src, pkt.src_port), pkt.dst_port, reason, rst))

    def _on_syn(self, pkt: Packet, now: float) -> None:
        listener = self._listeners.get(pkt.dst_port)
        if listener is None:
            self._refuse(pkt, "no listener", True)
            return
        if self.syn_filter is not None and not self.syn_filter(pkt):
            self._refuse(pkt, "refused by filter", False)
            return
        source = self._per_source.get(pkt.src.node)
        if source is None:
            if len(self._per_source) >= PER_SOURCE_TRACKED:
                self._prune_sources(now)
            source = self._per_source[pkt.src.node] = _Bucket(self._per_source_rate, now)
        if not source.take(now):
            self._refuse(pkt, "per-source SYN rate limit", False)
            return
        if self._global is None:
            self._global = _Bucket(self._syn_rate, now)
        if not self._global.take(now):
            self._refuse(pkt, "SYN rate limit", False)
            return
        if self._open_on_port.get(pkt.dst_port, 0) >= self.max_connections_per_port:
            self._refuse(pkt, "too many connections on the port", True)
            return
        if len(self._open) >= self.max_total_connections:
            self._refuse(pkt, "too many connections", True)
            return
        if listener.pending >= listener.backlog:
            self._refuse(pkt, "accept queue full", True)
            return
        stream = self._add(Stream(SocketAddr(pkt.dst, pkt.dst_port), SocketAddr(pkt.src, pkt.src_port), now,
                                  initiator=False, **self.stream_options))
        listener.pending += 1
        self._unaccepted.add(stream.conn_id)
        if self.on_syn is not None:
            self.on_syn(stream)
        stream.receive_packet(pkt, now)
