"""Two StreamTables joined by a simulated link with a fake clock (aioquic's transfer/roundtrip idea).

The link can drop, duplicate, delay and reorder packets, deterministically from a seed. With
``wire=True`` every packet is encoded to bytes and decoded again, as it would cross a tunnel.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import dataclass, field

from pilot_daemon.proto import packet as pk
from pilot_daemon.proto.addr import Addr, SocketAddr
from pilot_daemon.proto.stream import Closed, DataReceived
from pilot_daemon.proto.streams import Accepted, StreamTable


@dataclass
class Link:
    loss: float = 0.0
    dup: float = 0.0
    reorder: float = 0.0
    delay: float = 0.005
    jitter: float = 0.0
    hold: float = 0.0            # chance a packet waits until the next one on the link has gone (lossy_relay.py)
    drop: object = None          # callable(packet) -> bool: drop this one (scripted loss)
    sent: int = 0
    dropped: int = 0


@dataclass
class Net:
    a: StreamTable
    b: StreamTable
    ab: Link = field(default_factory=Link)
    ba: Link = field(default_factory=Link)
    seed: int = 0
    wire: bool = False
    now: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self._queue: list = []
        self._held: dict[int, object] = {}
        self._n = 0
        self.events = {id(self.a): [], id(self.b): []}
        self.data: dict[tuple[int, int], bytearray] = {}
        self.closed: set[tuple[int, int]] = set()
        self.accepted: dict[int, list] = {id(self.a): [], id(self.b): []}
        self.log: list[tuple[float, str, pk.Packet]] = []
        self.keep_log = False

    def _peer(self, table):
        return (self.b, self.ab) if table is self.a else (self.a, self.ba)

    def flush(self) -> None:
        for table in (self.a, self.b):
            dst, link = self._peer(table)
            for pkt in table.packets_to_send(self.now):
                link.sent += 1
                if self.keep_log:
                    self.log.append((self.now, "a>b" if table is self.a else "b>a", pkt))
                if (link.drop is not None and link.drop(pkt)) or (link.loss and self.rng.random() < link.loss):
                    link.dropped += 1
                    continue
                if link.hold and id(link) not in self._held and self.rng.random() < link.hold:
                    self._held[id(link)] = pkt
                    continue
                copies = 2 if link.dup and self.rng.random() < link.dup else 1
                late = self._held.pop(id(link), None)
                for item in [pkt] * copies + ([late] if late is not None else []):
                    delay = link.delay + (self.rng.random() * link.jitter if link.jitter else 0.0)
                    if link.reorder and self.rng.random() < link.reorder:
                        delay += link.delay * 2
                    self._n += 1
                    item = pk.decode(item.encode()) if self.wire else item
                    heapq.heappush(self._queue, (self.now + delay, self._n, id(dst), item))

    def drain_events(self) -> None:
        for table in (self.a, self.b):
            log = self.events[id(table)]
            while (ev := table.next_event()) is not None:
                log.append(ev)
                if isinstance(ev, DataReceived):
                    self.data.setdefault((id(table), ev.conn_id), bytearray()).extend(ev.data)
                elif isinstance(ev, Closed):
                    self.closed.add((id(table), ev.conn_id))
                elif isinstance(ev, Accepted):
                    self.accepted[id(table)].append(ev.stream)

    def step(self) -> bool:
        """Flush, then advance the clock to the next arrival or timer and handle it. False when idle."""
        self.flush()
        self.drain_events()
        return self._advance()

    def _advance(self) -> bool:
        candidates = [t for t in (self.a.get_timer(), self.b.get_timer()) if t is not None]
        if self._queue:
            candidates.append(self._queue[0][0])
        if not candidates:
            return False
        self.now = max(self.now, min(candidates))
        tables = {id(self.a): self.a, id(self.b): self.b}
        while self._queue and self._queue[0][0] <= self.now:
            _, _, dst, pkt = heapq.heappop(self._queue)
            tables[dst].receive_packet(pkt, self.now)
            self.flush()     # like the asyncio glue: answer each datagram as it comes
        for table in (self.a, self.b):
            timer = table.get_timer()
            if timer is not None and timer <= self.now:
                table.handle_timer(self.now)
        return True

    def run(self, until=None, *, limit: float = 3600.0, max_steps: int = 5_000_000) -> None:
        for _ in range(max_steps):
            self.flush()
            self.drain_events()
            if (until is not None and until()) or self.now > limit or not self._advance():
                break
        self.flush()
        self.drain_events()

    def advance_to(self, t: float) -> None:
        """Handle everything due up to ``t``, then set the clock to ``t``."""
        def next_due():
            due = [x for x in (self.a.get_timer(), self.b.get_timer()) if x is not None]
            if self._queue:
                due.append(self._queue[0][0])
            return min(due) if due else None
        while True:
            self.flush()
            self.drain_events()
            due = next_due()
            if due is None or due > t:
                break
            self._advance()
        self.now = max(self.now, t)
        self.flush()
        self.drain_events()

    def received(self, table: StreamTable, conn_id: int) -> bytes:
        return bytes(self.data.get((id(table), conn_id), b""))

    def of(self, table: StreamTable, kind) -> list:
        return [e for e in self.events[id(table)] if isinstance(e, kind)]


def pair(seed: int = 0, *, node_a: int = 1, node_b: int = 2, wire: bool = False, ab: Link | None = None,
         ba: Link | None = None, **options) -> Net:
    return Net(StreamTable(node_a, **options), StreamTable(node_b, **options), ab or Link(), ba or Link(), seed, wire)


def transfer(net: Net, payload: bytes, *, port: int = 1000, close: bool = True, limit: float = 3600.0):
    """A dials B:port, sends ``payload`` and closes; returns (client stream, server conn_id)."""
    net.b.listen(port)
    client = net.a.connect(SocketAddr(Addr(0, net.b.node), port), net.now)
    client.send(payload)
    if close:
        client.close(net.now)

    accepted = net.accepted[id(net.b)]

    def done():
        if not accepted:
            return False
        key = (id(net.b), accepted[0].conn_id)
        return key in net.closed or (not close and len(net.data.get(key, b"")) >= len(payload))

    net.run(done, limit=limit)
    return client, (accepted[0].conn_id if accepted else None)
