"""Data-exchange frames (port 1001, official ``dataexchange`` module): what ``pilotctl send-message`` speaks.

A frame is ``[u32 type][u32 length][payload]`` (big-endian), at most 64 MiB unless
``PILOT_DATAEXCHANGE_MAX_FRAME`` says otherwise. Types: 1 TEXT, 2 BINARY, 3 JSON, 4 FILE (payload
``[u16 name len][name][data]``), 5 TRACE (``[u32 inner type][u64 sent_at ns][inner payload]``), 7 FILESTREAM
(one step of a chunked transfer: ``filestream``), 10 TAGGED (``[u16 header len][JSON {"message_id",
"reply_to"}][u32 inner type][inner payload]``). The receiver answers every frame but FILESTREAM with a TEXT
frame ``ACK <TYPE> <n> bytes`` or ``ERR <TYPE> save failed: ...`` (a TRACE frame with a JSON timing frame);
the reasons after ``save failed:`` are Go's texts (``os_error_text``, ``storage_caps``). Inbox records are the
JSON files ``pilotctl inbox`` reads.
"""
from __future__ import annotations

import base64
import json
import os
import struct
import time
from dataclasses import dataclass

from . import gojson

TEXT, BINARY, JSON, FILE, TRACE, FILESTREAM, TAGGED = 1, 2, 3, 4, 5, 7, 10
_NAMES = {TEXT: "TEXT", BINARY: "BINARY", JSON: "JSON", FILE: "FILE", TRACE: "TRACE", FILESTREAM: "FILESTREAM",
          TAGGED: "TAGGED"}
INBOX_TYPES = (TEXT, BINARY, JSON)

DEFAULT_MAX_FRAME = 64 << 20
MAX_FILENAME = 255
MAX_MESSAGE_ID = 128
MAX_TAGGED_HEADER = 1024
DUPLICATE_SUFFIX = " (duplicate)"
_HDR = struct.Struct(">II")
_ID_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:")


class DataExchangeError(ValueError):
    """A malformed frame: the official receiver drops the connection."""


def type_name(ftype: int) -> str:
    return _NAMES.get(ftype, f"UNKNOWN({ftype})")


def max_frame_size(env_value: str | None) -> int:
    """The frame cap: ``PILOT_DATAEXCHANGE_MAX_FRAME`` bytes when in [64 KiB, 2 GiB), else 64 MiB."""
    try:
        n = int(env_value or "")
    except ValueError:
        return DEFAULT_MAX_FRAME
    return n if (1 << 16) <= n < (1 << 31) else DEFAULT_MAX_FRAME


def valid_message_id(value: str) -> bool:
    raw = value.encode()
    return 0 < len(raw) <= MAX_MESSAGE_ID and all(c in _ID_CHARS for c in raw)


@dataclass(frozen=True, slots=True)
class Frame:
    type: int
    payload: bytes = b""
    filename: str = ""          # FILE frames
    message_id: str = ""        # from a TAGGED wrapper
    reply_to: str = ""

    def encode(self) -> bytes:
        body = self.payload
        if self.type == FILE:
            name = self.filename.encode()
            if len(name) > MAX_FILENAME:
                raise DataExchangeError(f"filename too long: {len(name)} bytes (max {MAX_FILENAME})")
            body = struct.pack(">H", len(name)) + name + body
        ftype = self.type
        if self.message_id or self.reply_to:
            header = {k: v for k, v in (("message_id", self.message_id), ("reply_to", self.reply_to)) if v}
            if not all(valid_message_id(v) for v in header.values()):
                raise DataExchangeError("message_id/reply_to must be 1-128 bytes of [A-Za-z0-9._:-]")
            head = json.dumps(header, separators=(",", ":")).encode()
            body = struct.pack(">H", len(head)) + head + struct.pack(">I", ftype) + body
            ftype = TAGGED
        return _HDR.pack(ftype, len(body)) + body


@dataclass(frozen=True, slots=True)
class Trace:
    inner_type: int
    sent_at_ns: int
    payload: bytes


def parse_trace(payload: bytes) -> Trace:
    if len(payload) < 12:
        raise DataExchangeError(f"trace payload too short: {len(payload)} bytes")
    inner, sent = struct.unpack_from(">Iq", payload)
    return Trace(inner, sent, payload[12:])


class FrameDecoder:
    """Incremental: ``feed(data)`` returns the complete frames (TAGGED and FILE unwrapped)."""

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.max_frame = max_frame
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        buf = self._buf
        buf += data
        out: list[Frame] = []
        while len(buf) >= 8:
            ftype, length = _HDR.unpack_from(buf)
            if length > self.max_frame:
                raise DataExchangeError(f"frame too large: {length} (max {self.max_frame})")
            if len(buf) < 8 + length:
                break
            payload = bytes(buf[8:8 + length])
            del buf[:8 + length]
            out.append(_unwrap(ftype, payload))
        return out


def _unwrap(ftype: int, payload: bytes) -> Frame:
    message_id = reply_to = ""
    if ftype == TAGGED:
        if len(payload) < 2:
            raise DataExchangeError(f"tagged frame too short: {len(payload)} bytes")
        hlen = struct.unpack_from(">H", payload)[0]
        if not 0 < hlen <= MAX_TAGGED_HEADER:
            raise DataExchangeError(f"tagged frame header length {hlen} out of range (1-{MAX_TAGGED_HEADER})")
        if len(payload) < 2 + hlen + 4:
            raise DataExchangeError(f"tagged frame truncated: {len(payload)} bytes for a {hlen}-byte header")
        try:
            header = json.loads(payload[2:2 + hlen])
        except (ValueError, UnicodeDecodeError):
            raise DataExchangeError("tagged frame header is not JSON") from None
        if not isinstance(header, dict):
            raise DataExchangeError("tagged frame header is not a JSON object")
        message_id, reply_to = header.get("message_id") or "", header.get("reply_to") or ""
        for value in (message_id, reply_to):
            if value and (not isinstance(value, str) or not valid_message_id(value)):
                raise DataExchangeError("tagged frame header: invalid message_id or reply_to")
        ftype = struct.unpack_from(">I", payload, 2 + hlen)[0]
        if ftype == TAGGED:
            raise DataExchangeError("tagged frame cannot wrap another tagged frame")
        payload = payload[2 + hlen + 4:]
    filename = ""
    if ftype == FILE and len(payload) >= 2:
        nlen = struct.unpack_from(">H", payload)[0]
        if nlen + 2 <= len(payload):
            if nlen > MAX_FILENAME:
                raise DataExchangeError(f"filename too long: {nlen} bytes (max {MAX_FILENAME})")
            try:
                name = payload[2:2 + nlen].decode()
            except UnicodeDecodeError:
                raise DataExchangeError("filename contains invalid UTF-8") from None
            if "/" in name or "\\" in name or name in (".", ".."):
                raise DataExchangeError("invalid filename: path traversal not allowed")
            filename, payload = name, payload[2 + nlen:]
    return Frame(ftype, payload, filename, message_id, reply_to)


# -- what the receiver writes ---------------------------------------------------------------------------
def ack(frame: Frame, error: str | None = None) -> bytes:
    """The TEXT reply to one stored (or refused) frame."""
    name = type_name(frame.type)
    text = f"ERR {name} save failed: {error}" if error else f"ACK {name} {len(frame.payload)} bytes"
    return Frame(TEXT, text.encode(errors="surrogateescape")).encode()


def trace_ack(trace: Trace, received_ns: int, written_ns: int, sent_ns: int, inner_ack: str) -> bytes:
    body = gojson.dumps({"sent_at_ns": trace.sent_at_ns, "received_at_ns": received_ns,
                         "inbox_written_at_ns": written_ns, "ack_sent_at_ns": sent_ns, "inner_ack": inner_ack})
    return Frame(JSON, body).encode()


def os_error_text(op: str, path: str | os.PathLike, exc: OSError | ValueError) -> str:
    """Go's ``*PathError`` text, ``op path: reason``, as the official puts it in ERR and COMPLETE texts (Go's
    reasons are strerror's with a small first letter). A ``ValueError`` (a NUL byte in a name) is EINVAL."""
    if isinstance(exc, OSError) and exc.errno:
        reason = os.strerror(exc.errno)
    else:
        reason = "invalid argument" if isinstance(exc, ValueError) else str(exc)
    return f"{op} {os.fspath(path)}: {reason[:1].lower()}{reason[1:]}"


def stamp(ns: int) -> str:
    """``20060102-150405.000`` (local time, milliseconds): the middle of inbox and received file names."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y%m%d-%H%M%S", time.localtime(secs)) + f".{frac // 1_000_000:03d}"


def inbox_name(frame: Frame, ns: int, seq: int) -> str:
    return f"{type_name(frame.type)}-{stamp(ns)}-{seq:06d}.json"


def received_name(filename: str, ns: int, seq: int) -> str:
    dot = filename.rfind(".")              # Go's filepath.Ext: from the last dot on
    stem, ext = (filename[:dot], filename[dot:]) if dot >= 0 else (filename, "")
    return f"{stem}-{stamp(ns)}-{seq:06d}{ext}"


def inbox_record(frame: Frame, sender: str, ns: int, *, force_b64: bool = False) -> bytes:
    """The inbox file's JSON, as the official service writes it (keys sorted, Go escaping)."""
    rec: dict = {"type": type_name(frame.type), "from": sender, "bytes": len(frame.payload),
                 "received_at": gojson.rfc3339nano(ns)}
    if frame.message_id:
        rec["message_id"] = frame.message_id
    if frame.reply_to:
        rec["reply_to"] = frame.reply_to
    text = None
    if not force_b64 and frame.type != BINARY:
        try:
            text = frame.payload.decode()
        except UnicodeDecodeError:
            pass
    if text is None:
        rec["data_b64"], rec["data_encoding"] = base64.b64encode(frame.payload).decode(), "base64"
    else:
        rec["data"], rec["data_encoding"] = text, "utf8"
    return gojson.dumps(rec)
