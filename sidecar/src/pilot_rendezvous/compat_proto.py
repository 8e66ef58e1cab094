"""Compat bridge, sans-I/O: the post-upgrade authentication of a `-transport compat` daemon.

WebSocket `/v1/compat`, subprotocol `pilot.v1` (`pkg/daemon/transport/wss` of the 1.18 daemon).
Text messages, one JSON object each:
  server -> {"type":"auth_challenge","nonce":"<64 hex>","ts":<unix seconds>}
  client -> {"type":"auth_reply","node_id":N,"public_key":"<b64>","sig":"<b64>"}
            sig = Ed25519 over `compat_auth:<node_id>:<ts>:<nonce>` by the node's registered key
  server -> {"type":"auth_ok"}   or   {"type":"auth_error","error":"<why>"} and close 1008
The client treats anything but `auth_ok` as "auth rejected: <body>", so the error text reaches
its log. Afterwards every binary message is one datagram the daemon would have sent over UDP.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from . import signatures
from .errors import BadRequest, Forbidden, NotFound, RendezvousError

SUBPROTOCOL = "pilot.v1"
PATH = "/v1/compat"
MAX_DATAGRAM = 64 * 1024        # larger binary messages close the session (1009)
AUTH_TIMEOUT = 10.0             # seconds from upgrade to a valid auth_reply
IDLE_TIMEOUT = 90.0             # the daemon pings every 30 s


@dataclass(frozen=True)
class Challenge:
    nonce: str                  # 32 random bytes, hex
    ts: int

    def encode(self) -> str:
        return json.dumps({"type": "auth_challenge", "nonce": self.nonce, "ts": self.ts}, separators=(",", ":"))

    def signed_text(self, node_id: int) -> str:
        return signatures.challenge("compat_auth", node_id, self.ts, self.nonce)


def auth_ok() -> str:
    return '{"type":"auth_ok"}'


def auth_error(err: RendezvousError | str) -> str:
    return json.dumps({"type": "auth_error", "error": str(err)}, separators=(",", ":"))


def verify_reply(text: str, challenge: Challenge, public_key_of: Callable[[int], str | None]) -> int:
    """The authenticated node id, or a typed error: BadRequest (malformed), NotFound (unknown node),
    Forbidden (key or signature wrong). `public_key_of` returns the registered key (base64)."""
    try:
        msg = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise BadRequest("auth_reply is not JSON") from None
    if not isinstance(msg, dict) or msg.get("type") != "auth_reply":
        raise BadRequest('expected {"type":"auth_reply",...}')
    node_id = msg.get("node_id")
    if isinstance(node_id, bool) or not isinstance(node_id, int) or not 0 < node_id < 1 << 32:
        raise BadRequest("auth_reply needs node_id (the registered node, > 0): register over the registry first")
    registered = public_key_of(node_id)
    if registered is None:
        raise NotFound(f"node {node_id} is not registered (register over the registry before the compat beacon)")
    offered = msg.get("public_key")
    if offered not in (None, "", registered):
        raise Forbidden(f"public_key does not match the key registered for node {node_id}")
    try:
        signatures.verify(signatures.decode_public_key(registered), challenge.signed_text(node_id), msg.get("sig"))
    except Forbidden as err:
        raise Forbidden(f"compat_auth for node {node_id}: {err}") from None
    return node_id
