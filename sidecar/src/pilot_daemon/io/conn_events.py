"""The webhook events of streams, as the official 1.18 daemon emits them (measured with its webhook):

* ``conn.syn_received`` when a SYN opens a connection on a listening port, ``conn.established`` when its
  handshake completes (the accepting side only): ``{conn_id, dst_port, src_addr, src_port}``;
* ``conn.fin`` when the peer's FIN arrives (its own close, or its answer to ours), ``conn.rst`` when its RST
  arrives, ``conn.dead_peer`` when keepalives went unanswered, ``conn.idle_timeout`` when ``-idle-timeout`` passed
  without traffic (we close): ``{conn_id, local_port, remote_addr, remote_port}``;
* ``file.delivered`` when this side closes a connection to port 1001 (data exchange: an IPC close, or the client
  going away): ``{conn_id, remote_addr, remote_port}``.

Known difference: when its data-exchange or event-stream service closes a connection the peer already closed,
the official daemon sends a second FIN and emits ``conn.fin`` again on the peer's answer; this daemon sends one
FIN per connection, so one ``conn.fin``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ..proto import packet as pk
from ..proto import stream as st
from ..proto.streams import Accepted, StreamTable

if TYPE_CHECKING:
    from .webhook import Webhook


def _accepting(stream: st.Stream) -> dict:
    return {"conn_id": stream.conn_id, "dst_port": stream.local.port, "src_addr": str(stream.remote.addr),
            "src_port": stream.remote.port}


def _ending(stream: st.Stream) -> dict:
    return {"conn_id": stream.conn_id, "local_port": stream.local.port, "remote_addr": str(stream.remote.addr),
            "remote_port": stream.remote.port}


class ConnEvents:
    def __init__(self, webhook: "Webhook") -> None:
        self.webhook = webhook
        self.emit = webhook.emit
        self._fin_seen: set[int] = set()    # conn.fin already emitted at StreamEnded; its Closed follows

    def syn_received(self, stream: st.Stream) -> None:
        if self.webhook.active:
            self.emit("conn.syn_received", _accepting(stream))

    def on_event(self, ev: object, table: StreamTable) -> None:
        """One event of ``table.next_event()`` (call before acting on it); nothing to do without a webhook URL."""
        if not self.webhook.active:
            return
        if isinstance(ev, Accepted):
            self.emit("conn.established", _accepting(ev.stream))
            return
        stream = table.event_stream
        if stream is None or not isinstance(ev, st.StreamEvent) or stream.conn_id != ev.conn_id:
            return
        if isinstance(ev, st.StreamEnded):
            self._fin_seen.add(ev.conn_id)
            self.emit("conn.fin", _ending(stream))
        elif isinstance(ev, st.StreamReset):
            self.emit("conn.rst", _ending(stream))
        elif isinstance(ev, st.IdleTimedOut):
            self.emit("conn.idle_timeout", _ending(stream))
        elif isinstance(ev, st.Closed):
            if ev.conn_id in self._fin_seen:
                self._fin_seen.discard(ev.conn_id)
            elif stream.state is st.StreamState.TIME_WAIT:      # the peer's FIN answered ours
                self.emit("conn.fin", _ending(stream))
            elif ev.reason.startswith("dead peer"):
                self.emit("conn.dead_peer", _ending(stream))

    def closing(self, stream: st.Stream) -> None:
        """This side is about to close ``stream`` (IPC close, or its client went away)."""
        if self.webhook.active and stream.remote.port == pk.PORT_DATAEXCHANGE:
            self.emit("file.delivered", {"conn_id": stream.conn_id, "remote_addr": str(stream.remote.addr),
                                         "remote_port": stream.remote.port})
