"""Port 1001: the data-exchange receiver (official ``dataexchange`` service; ``pilotctl send-message``).

TEXT/JSON/BINARY frames become JSON files in ``~/.pilot/inbox`` (what ``pilotctl inbox`` reads), FILE
frames files in ``~/.pilot/received``; every frame is answered with an ACK (or ERR) TEXT frame. A repeat
of a stored frame that carried a message_id within 10 minutes is acknowledged again, not stored twice.
Chunked FILESTREAM transfers are refused (the official sender then falls back to one FILE frame).
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections import OrderedDict
from pathlib import Path

from ..proto import dataexchange as dx
from ..proto import stream as st
from . import clock
from .conns import Service

log = logging.getLogger("pilot_daemon.dataexchange")

DEDUPE_WINDOW = 600.0
DEDUPE_MAX = 8192


class DataExchange(Service):
    def __init__(self, home: str | None = None, *, force_b64: bool = False,
                 max_frame: int | None = None) -> None:
        base = Path(home or os.path.expanduser("~")) / ".pilot"
        self.inbox_dir, self.received_dir = base / "inbox", base / "received"
        self.force_b64 = force_b64
        self.max_frame = max_frame or dx.max_frame_size(os.environ.get("PILOT_DATAEXCHANGE_MAX_FRAME"))
        self.decoders: dict[int, dx.FrameDecoder] = {}
        self.seen: OrderedDict[bytes, tuple[str, float]] = OrderedDict()   # delivery key -> (ack, expiry)
        self.seq = 0

    # -- stream events -----------------------------------------------------------------------------
    def on_data(self, stream: st.Stream, data: bytes) -> None:
        conn = stream.conn_id
        decoder = self.decoders.get(conn)
        if decoder is None:
            decoder = self.decoders[conn] = dx.FrameDecoder(self.max_frame)
        try:
            frames = decoder.feed(data)
        except dx.DataExchangeError as exc:
            log.debug("dataexchange connection dropped: %s", exc)
            self.decoders.pop(conn, None)
            stream.abort(clock.now())
            return
        sender = str(stream.remote.addr)
        for frame in frames:
            reply = self.handle(frame, sender)
            if stream.is_closed:
                return
            try:
                stream.send(reply)
            except st.StreamError:
                return

    def on_end(self, stream: st.Stream, now: float) -> None:
        self.decoders.pop(stream.conn_id, None)
        stream.close(now)

    # -- one frame -----------------------------------------------------------------------------------
    def handle(self, frame: dx.Frame, sender: str) -> bytes:
        """Store ``frame`` from ``sender`` and return the reply frame's bytes."""
        received_ns = time.time_ns()
        log.debug("dataexchange frame received", extra={"type": dx.type_name(frame.type),
                                                        "bytes": len(frame.payload), "remote": sender,
                                                        "message_id": frame.message_id})
        key = self._key(frame, sender)
        if key is not None:
            earlier = self._earlier_ack(key, clock.now())
            if earlier is not None:
                return dx.Frame(dx.TEXT, (earlier + dx.DUPLICATE_SUFFIX).encode()).encode()
        if frame.type == dx.TRACE:
            return self._trace(frame, sender, received_ns)
        error = None
        try:
            if frame.type in dx.INBOX_TYPES:
                self.save_inbox(frame, sender)
            elif frame.type == dx.FILE:
                if frame.filename:
                    self.save_file(frame)
            else:
                error = f"unsupported frame type {frame.type}"
        except OSError as exc:
            error = f"write: {exc}"
            log.warning("dataexchange save failed: %s", exc)
        reply = dx.ack(frame, error)
        if key is not None and error is None:
            self._remember(key, reply[8:].decode(), clock.now())
        return reply

    def _trace(self, frame: dx.Frame, sender: str, received_ns: int) -> bytes:
        try:
            trace = dx.parse_trace(frame.payload)
        except dx.DataExchangeError as exc:
            return dx.Frame(dx.TEXT, f"ERR trace parse: {exc}".encode()).encode()
        inner = dx.Frame(trace.inner_type, trace.payload, message_id=frame.message_id, reply_to=frame.reply_to)
        try:
            self.save_inbox(inner, sender)
            inner_ack = f"ACK {dx.type_name(inner.type)} {len(inner.payload)} bytes"
        except OSError as exc:
            inner_ack = f"ERR {dx.type_name(inner.type)} save failed: write: {exc}"
        written = time.time_ns()
        return dx.trace_ack(trace, received_ns, written, time.time_ns(), inner_ack)

    def save_inbox(self, frame: dx.Frame, sender: str) -> Path:
        ns = time.time_ns()
        self.seq += 1
        path = self.inbox_dir / dx.inbox_name(frame, ns, self.seq)
        _write_private(path, dx.inbox_record(frame, sender, ns, force_b64=self.force_b64))
        log.info("inbox message saved", extra={"path": str(path), "type": dx.type_name(frame.type),
                                               "bytes": len(frame.payload), "message_id": frame.message_id})
        return path

    def save_file(self, frame: dx.Frame) -> Path:
        self.seq += 1
        path = self.received_dir / dx.received_name(frame.filename, time.time_ns(), self.seq)
        _write_private(path, frame.payload)
        log.info("file saved", extra={"path": str(path), "bytes": len(frame.payload)})
        return path

    # -- duplicate suppression -----------------------------------------------------------------------
    @staticmethod
    def _key(frame: dx.Frame, sender: str) -> bytes | None:
        if not frame.message_id or frame.type not in (*dx.INBOX_TYPES, dx.FILE):
            return None
        h = hashlib.sha256()
        for part in (sender.encode(), struct.pack(">I", frame.type), frame.filename.encode(),
                     frame.message_id.encode(), frame.reply_to.encode(), frame.payload):
            h.update(struct.pack(">Q", len(part)) + part)
        return h.digest()

    def _earlier_ack(self, key: bytes, now: float) -> str | None:
        seen = self.seen
        while seen:
            oldest = next(iter(seen.values()))
            if oldest[1] > now:
                break
            seen.popitem(last=False)
        entry = seen.get(key)
        return entry[0] if entry else None

    def _remember(self, key: bytes, ack: str, now: float) -> None:
        self.seen[key] = (ack, now + DEDUPE_WINDOW)
        while len(self.seen) > DEDUPE_MAX:
            self.seen.popitem(last=False)


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)
