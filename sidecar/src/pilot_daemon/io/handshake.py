"""Port 444: the direct path of the trust handshake (official ``handshake`` package, 1.18).

One signed JSON message per stream: ``{"type", "node_id", "public_key", "justification", "signature",
"reason", "timestamp"}`` with ``type`` one of ``handshake_request|accept|reject|revoke`` and ``signature`` =
Ed25519 over ``handshake:<sender>:<receiver>`` (base64). A receiver drops messages older than 5 minutes or
more than 30 s in the future, replays, requests without a public key, and keys that differ from the
registry's; a key the registry confirms makes the sender "registry-bound" (needed for mutual auto-trust).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..proto import stream as st
from .conns import Service

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.handshake")

REQUEST, ACCEPT, REJECT, REVOKE = "handshake_request", "handshake_accept", "handshake_reject", "handshake_revoke"
MAX_AGE, MAX_FUTURE = 300.0, 30.0
MAX_MESSAGE = 64 << 10
MAX_REPLAY_ENTRIES = 8192


def message(kind: str, node: int, peer: int, public_key: str, sign, *, justification: str = "",
            reason: str = "") -> bytes:
    """The bytes the official daemon writes (Go struct field order, no omitted fields)."""
    return json.dumps({"type": kind, "node_id": node, "public_key": public_key, "justification": justification,
                       "signature": sign(f"handshake:{node}:{peer}"), "reason": reason,
                       "timestamp": int(time.time())}, separators=(",", ":")).encode()


class HandshakeService(Service):
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon
        self.buffers: dict[int, bytearray] = {}
        self.seen: dict[bytes, float] = {}

    def on_data(self, stream: st.Stream, data: bytes) -> None:
        buf = self.buffers.setdefault(stream.conn_id, bytearray())
        buf += data
        if len(buf) > MAX_MESSAGE:
            self.buffers.pop(stream.conn_id, None)
            stream.abort(0.0)
            return
        try:
            msg = json.loads(bytes(buf))
        except ValueError:
            return   # not complete yet
        raw = bytes(self.buffers.pop(stream.conn_id))
        if isinstance(msg, dict):
            self.d.spawn(self.handle(msg, raw))

    def on_end(self, stream: st.Stream, now: float) -> None:
        self.buffers.pop(stream.conn_id, None)
        stream.close(now)

    async def handle(self, msg: dict, raw: bytes) -> None:
        kind, node, key, sig = msg.get("type"), msg.get("node_id"), msg.get("public_key") or "", msg.get("signature")
        stamp = msg.get("timestamp")
        if not isinstance(node, int) or not isinstance(stamp, int) or kind not in (REQUEST, ACCEPT, REJECT, REVOKE):
            log.warning("invalid handshake message dropped")
            return
        now = time.time()
        if now - stamp > MAX_AGE or stamp - now > MAX_FUTURE:
            log.warning("handshake message outside the time window", extra={"peer_node_id": node})
            return
        digest = hashlib.sha256(raw).digest()
        if digest in self.seen or len(self.seen) >= MAX_REPLAY_ENTRIES:
            self.seen = {h: t for h, t in self.seen.items() if now - t < 2 * MAX_AGE}
            if digest in self.seen or len(self.seen) >= MAX_REPLAY_ENTRIES:
                log.warning("handshake replay dropped", extra={"peer_node_id": node})
                return
        self.seen[digest] = now
        if not key:
            if kind == REQUEST:
                log.warning("handshake request without a public key dropped", extra={"peer_node_id": node})
                return
            bound = False
        else:
            registered = await self.d.lookup_key(node)
            if registered and registered != key:
                log.warning("handshake key differs from the registry's; dropped", extra={"peer_node_id": node})
                return
            bound = bool(registered)
            if not _verify(registered or key, f"handshake:{node}:{self.d.node_id}", sig):
                log.warning("handshake signature does not verify; dropped", extra={"peer_node_id": node})
                return
        await self.d.trust.on_direct(kind, node, key, str(msg.get("justification") or ""), bound)


def _verify(key_b64: str, text: str, sig_b64: object) -> bool:
    if not isinstance(sig_b64, str) or not sig_b64:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(base64.b64decode(key_b64)).verify(base64.b64decode(sig_b64), text.encode())
    except (InvalidSignature, ValueError, binascii.Error):
        return False
    return True
