"""Port 1001: the data-exchange receiver (official ``dataexchange`` service; ``pilotctl send-message``/``send-file``).

TEXT/JSON/BINARY frames become JSON files in ``~/.pilot/inbox`` (what ``pilotctl inbox`` reads), FILE
frames files in ``~/.pilot/received``; every frame is answered with an ACK (or ERR) TEXT frame. A repeat
of a stored frame that carried a message_id within 10 minutes is acknowledged again, not stored twice.
FILESTREAM frames (chunked, resumable transfers: what ``pilotctl send-file`` uses) are answered by the
connection's ``filestream.StreamReceiver`` and land in ``~/.pilot/received`` too. The official caps hold
(``proto.storage_caps``): 256 MiB of inbox, oldest messages evicted first, and 2 GiB of received files.
Where the official daemon publishes an event (``message.received``, ``inbox.full``, ``file.received``,
``received.full``) this service calls ``on_event(name, fields)``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

from ..proto import dataexchange as dx
from ..proto import filestream as fs
from ..proto import storage_caps as caps
from ..proto import stream as st
from . import clock, storage
from .conns import Service
from .filestream import StreamReceiver

log = logging.getLogger("pilot_daemon.dataexchange")

DEDUPE_WINDOW = 600.0
DEDUPE_MAX = 8192


class SaveFailed(Exception):
    """A frame that could not be stored; ``str()`` is the official text after ``save failed: ``."""


class DataExchange(Service):
    def __init__(self, home: str | None = None, *, force_b64: bool = False, max_frame: int | None = None,
                 inbox_max_bytes: int = caps.INBOX_MAX_BYTES, inbox_max_files: int = caps.INBOX_MAX_FILES,
                 received_max_bytes: int = caps.RECEIVED_MAX_BYTES,
                 on_event: Callable[[str, dict], None] | None = None) -> None:
        base = Path(home or os.path.expanduser("~")) / ".pilot"
        self.inbox_dir, self.received_dir = base / "inbox", base / "received"
        self.force_b64 = force_b64
        self.max_frame = max_frame or dx.max_frame_size(os.environ.get("PILOT_DATAEXCHANGE_MAX_FRAME"))
        self.inbox = storage.InboxBudget(inbox_max_bytes, inbox_max_files)
        self.received_max = received_max_bytes
        self.on_event = on_event
        self.decoders: dict[int, dx.FrameDecoder] = {}
        self.receivers: dict[int, StreamReceiver] = {}
        self.claims = fs.PartialClaims()
        self.seen: OrderedDict[bytes, tuple[str, float]] = OrderedDict()   # delivery key -> (ack, expiry)
        self.seq = 0                     # one sequence for inbox and received names, as the official's

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
            self.connection_ended(conn)
            stream.abort(clock.now())
            return
        sender = str(stream.remote.addr)
        for frame in frames:
            log.debug("dataexchange frame received", extra={"type": dx.type_name(frame.type),
                                                            "bytes": len(frame.payload), "remote": sender,
                                                            "message_id": frame.message_id})
            if frame.type == dx.FILESTREAM:
                reply, keep = self.stream_frame(conn, frame)
            else:
                reply, keep = self.handle(frame, sender), True
            if stream.is_closed:
                return
            try:
                if reply is not None:
                    stream.send(reply)
            except st.StreamError:
                return
            if not keep:
                self.connection_ended(conn)
                stream.close(clock.now())
                return

    def on_end(self, stream: st.Stream, now: float) -> None:
        self.connection_ended(stream.conn_id)
        stream.close(now)

    def connection_ended(self, conn: int) -> None:
        """Drop the connection's partial frame and end its open transfers (their ``.partial`` files stay)."""
        self.decoders.pop(conn, None)
        receiver = self.receivers.pop(conn, None)
        if receiver is not None:
            receiver.close()

    # -- one frame -----------------------------------------------------------------------------------
    def stream_frame(self, conn: int, frame: dx.Frame) -> tuple[bytes | None, bool]:
        """A FILESTREAM frame on connection ``conn``: ``(reply, keep the connection)``."""
        receiver = self.receivers.get(conn)
        if receiver is None:
            try:
                _mkdir(self.received_dir)
            except SaveFailed as exc:
                return dx.Frame(dx.TEXT, f"ERR {exc}".encode(errors="surrogateescape")).encode(), False
            receiver = self.receivers[conn] = StreamReceiver(self.received_dir, self.claims, self.received_max,
                                                             self._received_name, self._stream_saved)
        return receiver.handle(frame.payload), True

    def handle(self, frame: dx.Frame, sender: str) -> bytes:
        """Store ``frame`` (not FILESTREAM) from ``sender`` and return the reply frame's bytes."""
        received_ns = time.time_ns()
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
        except (SaveFailed, caps.QuotaExceeded) as exc:
            error = str(exc)
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
        except (SaveFailed, caps.QuotaExceeded) as exc:
            inner_ack = f"ERR {dx.type_name(inner.type)} save failed: {exc}"
        written = time.time_ns()
        return dx.trace_ack(trace, received_ns, written, time.time_ns(), inner_ack)

    # -- what lands on disk --------------------------------------------------------------------------
    def save_inbox(self, frame: dx.Frame, sender: str) -> Path:
        directory = self.inbox_dir
        _mkdir(directory)
        ns = time.time_ns()
        record = dx.inbox_record(frame, sender, ns, force_b64=self.force_b64)
        seq = self._next_seq()               # taken before the budget: a refused message uses a number too
        path = directory / dx.inbox_name(frame, ns, seq)
        try:
            self.inbox.reserve(directory, len(record))
        except caps.QuotaExceeded as exc:
            log.warning("inbox byte budget exceeded", extra={"max_bytes": self.inbox.max_bytes,
                                                             "message_bytes": len(record), "err": str(exc)})
            self._event("inbox.full", {"from": sender, "type": dx.type_name(frame.type),
                                       "frame_bytes": len(frame.payload), "max_bytes": self.inbox.max_bytes})
            raise
        _write_private(path, record)
        self.inbox.written(directory, len(record))
        log.info("inbox message saved", extra={"path": str(path), "type": dx.type_name(frame.type),
                                               "bytes": len(frame.payload), "message_id": frame.message_id})
        self._event("message.received", {"type": dx.type_name(frame.type), "from": sender, "size": len(frame.payload),
                                         **({"message_id": frame.message_id} if frame.message_id else {})})
        if seq % caps.INBOX_EVICT_EVERY == 0:
            self.inbox.evict_overflow(directory)
        return path

    def save_file(self, frame: dx.Frame) -> Path:
        directory, size = self.received_dir, len(frame.payload)
        _mkdir(directory)
        if self.received_max > 0:
            stored = storage.tree_bytes(directory)
            if stored + size > self.received_max:
                log.warning("received-files quota exceeded", extra={"current_bytes": stored, "frame_bytes": size,
                                                                    "max_bytes": self.received_max})
                self._event("received.full", {"type": dx.type_name(frame.type), "frame_bytes": size,
                                              "max_bytes": self.received_max})
                raise caps.received_full(stored, size, self.received_max)
        path = directory / self._received_name(frame.filename)
        _write_private(path, frame.payload)
        log.info("file saved", extra={"path": str(path), "bytes": size})
        self._event("file.received", {"filename": frame.filename, "size": size, "path": str(path)})
        return path

    def _stream_saved(self, path: Path, size: int) -> None:
        log.info("file saved (stream)", extra={"path": str(path), "bytes": size})
        self._event("file.received", {"filename": path.name, "size": size, "path": str(path)})

    def _received_name(self, filename: str) -> str:
        return dx.received_name(filename, time.time_ns(), self._next_seq())

    def _next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def _event(self, name: str, fields: dict) -> None:
        if self.on_event is not None:
            try:
                self.on_event(name, fields)
            except Exception:          # a subscriber's fault must not fail the delivery
                log.exception("dataexchange event %s: handler failed", name)

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


def _mkdir(directory: Path) -> None:
    try:
        storage.make_dirs(directory)
    except OSError as exc:
        raise SaveFailed("mkdir: " + dx.os_error_text("mkdir", directory, exc)) from None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file; ``SaveFailed`` with Go's ``write: open|write PATH: reason``."""
    op = "open"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        op = "write"
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
    except (OSError, ValueError) as exc:
        if op == "write":
            _unlink_quietly(path)
        log.warning("dataexchange save failed: %s", exc)
        raise SaveFailed("write: " + dx.os_error_text(op, path, exc)) from None


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
