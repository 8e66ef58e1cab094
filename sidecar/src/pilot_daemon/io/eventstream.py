"""Port 1002: the event-stream broker (official ``eventstream`` 1.18 service).

First event of a connection = subscription, later ones = publications, fanned out to the topic's
subscribers and to ``*`` subscribers, never back to the sender; 100 publications/s per publisher (burst
200). Only peers this node trusts (or itself) may subscribe, as the official broker gates subscriptions.
Webhook events as upstream: ``pubsub.subscribed`` / ``pubsub.unsubscribed`` ``{remote, topic}`` when a
connection's subscription starts / its connection ends, ``pubsub.published`` ``{from, size, topic}`` for each
publication fanned out (``remote`` and ``from`` are ``address:port``).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..proto import stream as st
from ..proto.eventstream import Event, EventDecoder, EventError
from . import clock
from .conns import Service

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.eventstream")

RATE, BURST = 100.0, 200.0


class EventBroker(Service):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon
        self.decoders: dict[int, EventDecoder] = {}
        self.topic_of: dict[int, str] = {}
        self.streams: dict[int, st.Stream] = {}
        self.tokens: dict[int, tuple[float, float]] = {}

    def on_data(self, stream: st.Stream, data: bytes) -> None:
        conn = stream.conn_id
        decoder = self.decoders.setdefault(conn, EventDecoder())
        try:
            events = decoder.feed(data)
        except EventError as exc:
            log.debug("eventstream connection dropped: %s", exc)
            self._forget(conn)
            stream.abort(clock.now())
            return
        for event in events:
            if conn not in self.topic_of:
                if not self._may_subscribe(stream.remote.addr.node):
                    log.warning("eventstream subscription rejected: peer not trusted",
                                extra={"peer_node_id": stream.remote.addr.node, "topic": event.topic})
                    self._forget(conn)
                    stream.close(clock.now())
                    return
                self.topic_of[conn], self.streams[conn] = event.topic, stream
                self.d.webhook.emit("pubsub.subscribed", {"remote": str(stream.remote), "topic": event.topic})
            elif self._take_token(conn):
                self.d.webhook.emit("pubsub.published", {"from": str(stream.remote), "size": len(event.payload),
                                                         "topic": event.topic})
                self.publish(event, sender=conn)

    def on_end(self, stream: st.Stream, now: float) -> None:
        topic = self.topic_of.get(stream.conn_id)
        if topic is not None:
            self.d.webhook.emit("pubsub.unsubscribed", {"remote": str(stream.remote), "topic": topic})
        self._forget(stream.conn_id)
        stream.close(now)

    def publish(self, event: Event, sender: int) -> None:
        frame = event.encode()
        for conn, topic in list(self.topic_of.items()):
            if conn != sender and (topic == event.topic or (topic == "*" and event.topic != "*")):
                target = self.streams.get(conn)
                if target is not None and not target.is_closed:
                    try:
                        target.send(frame)
                    except st.StreamError:
                        self._forget(conn)

    def _may_subscribe(self, node: int) -> bool:
        return node == self.d.node_id or node in self.d.trust.trusted

    def _take_token(self, conn: int) -> bool:
        now = clock.now()
        tokens, last = self.tokens.get(conn, (BURST, now))
        tokens = min(BURST, tokens + (now - last) * RATE)
        if tokens < 1:
            self.tokens[conn] = (tokens, now)
            log.warning("eventstream publish dropped: rate limit")
            return False
        self.tokens[conn] = (tokens - 1, now)
        return True

    def _forget(self, conn: int) -> None:
        for table in (self.decoders, self.topic_of, self.streams, self.tokens):
            table.pop(conn, None)
