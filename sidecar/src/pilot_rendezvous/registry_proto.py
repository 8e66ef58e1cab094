"""Registry connection framing, sans-I/O: bytes in, bytes out.

JSON mode (what the official 1.18 daemon uses): `[u32 BE length][JSON object]`, one reply per
request, in order. Binary mode (`registry/wire/wire.go`): the client opens with `PILT` + version
byte, then frames `[u32 BE length incl. type][u8 type][payload]`: 0x00 JSON passthrough,
0x01 heartbeat `[node u32][sig 64]` -> 0x81 `[unix u64][flags u8]`, 0x02 lookup `[node u32]` ->
0x82, 0x03 resolve `[node u32][requester u32][sig 64]` -> 0x83, errors 0xFF `[u16 len][text]`.
A length over `max_frame` gets an error reply and closes the connection; bad JSON only gets an
error reply, because the framing is still intact.
"""
from __future__ import annotations

import base64
import json
import struct
from typing import Any

from .registry import Registry

MAX_FRAME = 1 << 20
BINARY_MAGIC = b"PILT"
MSG_JSON, MSG_HEARTBEAT, MSG_LOOKUP, MSG_RESOLVE, MSG_ERROR = 0x00, 0x01, 0x02, 0x03, 0xFF
_OK = 0x80


def encode_json_frame(obj: dict[str, Any]) -> bytes:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return struct.pack(">I", len(body)) + body


def encode_binary_frame(msg_type: int, payload: bytes) -> bytes:
    return struct.pack(">IB", 1 + len(payload), msg_type) + payload


def _error(text: str) -> dict[str, Any]:
    return {"type": "error", "error": text, "code": "bad_request"}


def _binary_error(text: str) -> bytes:
    raw = text.encode()[:65000]
    return encode_binary_frame(MSG_ERROR, struct.pack(">H", len(raw)) + raw)


def decode_json(body: bytes) -> tuple[Any, str]:
    """(object, "") or (None, reason)."""
    try:
        return json.loads(body), ""
    except UnicodeDecodeError:
        return None, "invalid JSON: not UTF-8"
    except json.JSONDecodeError as err:
        return None, f"invalid JSON: {err.msg} at byte {err.pos}"
    except RecursionError:
        return None, "invalid JSON: nested too deeply"


def encode_lookup_reply(reply: dict[str, Any]) -> bytes:
    """Binary 0x82 payload from a `lookup_ok` JSON reply."""
    out = bytearray(struct.pack(">IBI", reply["node_id"], 0x01 if reply["public"] else 0, 0))
    nets = reply["networks"]
    out += struct.pack(">H", len(nets)) + b"".join(struct.pack(">H", n) for n in nets)
    key = base64.b64decode(reply["public_key"])
    host = reply.get("hostname", "").encode()[:255]
    out += bytes([len(key)]) + key + bytes([len(host)]) + host
    tags = [t.encode()[:255] for t in reply.get("tags", [])][:255]
    out += bytes([len(tags)]) + b"".join(bytes([len(t)]) + t for t in tags)
    addr = reply.get("real_addr", "").encode()
    return bytes(out + struct.pack(">H", len(addr)) + addr + b"\x00")


def encode_resolve_reply(reply: dict[str, Any]) -> bytes:
    """Binary 0x83 payload from a `resolve_ok` JSON reply."""
    addr = reply["real_addr"].encode()
    lans = [a.encode() for a in reply.get("lan_addrs", [])]
    return (struct.pack(">IH", reply["node_id"], len(addr)) + addr + struct.pack(">H", len(lans))
            + b"".join(struct.pack(">H", len(a)) + a for a in lans)
            + struct.pack(">I", min(reply.get("key_age_days", 0xFFFFFFFF), 0xFFFFFFFF)))


class RegistryConnection:
    """One client connection. Feed bytes with `receive_data`; send what it returns; stop reading
    once `closed` is true. `pending` tells the I/O layer a frame is half-read (for timeouts)."""

    def __init__(self, registry: Registry, remote: str, *, max_frame: int = MAX_FRAME) -> None:
        self.registry = registry
        self.remote = remote
        self.max_frame = max_frame
        self.binary: bool | None = None     # decided by the first bytes
        self.closed = False
        self.close_reason = ""
        self.requests = 0
        self._buf = bytearray()

    @property
    def pending(self) -> bool:
        return bool(self._buf)

    def receive_data(self, data: bytes, now: float) -> bytes:
        if self.closed:
            return b""
        self._buf += data
        out = bytearray()
        if self.binary is None:
            if len(self._buf) < 4 or (self._buf[:4] == BINARY_MAGIC and len(self._buf) < 5):
                return b""
            self.binary = self._buf[:4] == BINARY_MAGIC
            if self.binary:
                del self._buf[:5]       # magic + version; only version 1 exists
        while not self.closed:
            frame = self._next_frame(out)
            if frame is None:
                break
            out += self._answer_binary(frame, now) if self.binary else self._answer_json(frame, now)
        return bytes(out)

    def _close(self, reason: str) -> None:
        self.closed, self.close_reason = True, reason
        self._buf.clear()

    def _next_frame(self, out: bytearray) -> bytes | None:
        if len(self._buf) < 4:
            return None
        (length,) = struct.unpack_from(">I", self._buf)
        if length > self.max_frame or (self.binary and length < 1):
            reason = f"frame of {length} bytes is outside 1..{self.max_frame}; closing"
            out += _binary_error(reason) if self.binary else encode_json_frame(_error(reason))
            self._close(reason)
            return None
        if len(self._buf) < 4 + length:
            return None
        frame = bytes(self._buf[4:4 + length])
        del self._buf[:4 + length]
        self.requests += 1
        return frame

    def _answer_json(self, body: bytes, now: float) -> bytes:
        msg, problem = decode_json(body)
        reply = _error(problem) if problem else self.registry.handle(msg, self.remote, now)
        return encode_json_frame(reply)

    def _answer_binary(self, frame: bytes, now: float) -> bytes:
        kind, payload = frame[0], frame[1:]
        if kind == MSG_JSON:
            msg, problem = decode_json(payload)
            reply = _error(problem) if problem else self.registry.handle(msg, self.remote, now)
            return encode_binary_frame(MSG_JSON, json.dumps(reply, separators=(",", ":")).encode())
        sizes = {MSG_HEARTBEAT: 68, MSG_LOOKUP: 4, MSG_RESOLVE: 72}
        if kind not in sizes:
            return _binary_error(f"unknown binary message type 0x{kind:02X}")
        if len(payload) < sizes[kind]:
            return _binary_error(f"binary message 0x{kind:02X} too short: {len(payload)} bytes")
        if kind == MSG_HEARTBEAT:
            node_id, sig = struct.unpack_from(">I", payload)[0], payload[4:68]
            reply = self.registry.handle({"type": "heartbeat", "node_id": node_id,
                                          "signature": base64.b64encode(sig).decode()}, self.remote, now)
            encode = lambda r: struct.pack(">QB", r["time"], 0)  # noqa: E731
        elif kind == MSG_LOOKUP:
            reply = self.registry.handle({"type": "lookup", "node_id": struct.unpack_from(">I", payload)[0]},
                                         self.remote, now)
            encode = encode_lookup_reply
        else:
            node_id, requester_id = struct.unpack_from(">II", payload)
            reply = self.registry.handle({"type": "resolve", "node_id": node_id, "requester_id": requester_id,
                                          "signature": base64.b64encode(payload[8:72]).decode()}, self.remote, now)
            encode = encode_resolve_reply
        if reply["type"] == "error":
            return _binary_error(reply["error"])
        return encode_binary_frame(kind | _OK, encode(reply))
