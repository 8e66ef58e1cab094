"""Request-signature envelopes (the official ``reqsig``): a node proves "this request, from me, for you, now".

Canonical form, every field from a fixed charset so ``|`` never occurs inside one::

    pilot-req-v1|<12 hex: network(4) node(8)>|<unix seconds>|<16 hex nonce>|<64 hex sha256 of body>|<audience>

The audience is ``[a-z0-9.-]{1,64}``; the timestamp is canonical decimal (no sign, no leading zero). The signer
is the daemon, over the canonical string only (never a caller-supplied raw string); verifiers parse (which
re-encodes and compares, so only the canonical spelling is accepted), check freshness, and check the Ed25519
signature with the claimed node's registered key. Error texts follow the official ones (``reqsig: ...``).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

DOMAIN = "pilot-req-v1"
DEFAULT_MAX_SKEW = 300.0
NONCE_HEX = 16

_HEX = re.compile(r"[0-9a-f]*\Z")
_AUDIENCE = re.compile(r"[a-z0-9.-]{1,64}\Z")


class ReqsigError(ValueError):
    """An envelope that is malformed, stale or not signed by its node; the message is the reason."""


def _lower_hex(text: str, size: int) -> bool:
    return len(text) == size and _HEX.match(text) is not None


def hash_body(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


@dataclass(frozen=True, slots=True)
class Envelope:
    network: int
    node: int
    timestamp: int
    nonce: str
    body_hash: str
    audience: str

    def canonical(self) -> str:
        """The signed string; raises ReqsigError when a field breaks its rule."""
        if self.timestamp < 0:
            raise ReqsigError("reqsig: negative timestamp")
        if not _lower_hex(self.nonce, NONCE_HEX):
            raise ReqsigError(f"reqsig: nonce must be {NONCE_HEX} lowercase hex chars")
        if not _lower_hex(self.body_hash, 64):
            raise ReqsigError("reqsig: body hash must be 64 lowercase hex chars")
        if not 1 <= len(self.audience) <= 64:
            raise ReqsigError("reqsig: audience must be 1-64 chars")
        if not _AUDIENCE.match(self.audience):
            raise ReqsigError("reqsig: audience must match [a-z0-9.-]")
        return "|".join((DOMAIN, f"{self.network:04x}{self.node:08x}", str(self.timestamp), self.nonce,
                         self.body_hash, self.audience))


def parse(text: str) -> Envelope:
    parts = text.split("|")
    if len(parts) != 6:
        raise ReqsigError(f"reqsig: want 6 fields, got {len(parts)}")
    if parts[0] != DOMAIN:
        raise ReqsigError(f"reqsig: bad domain {json.dumps(parts[0], ensure_ascii=False)}")   # Go's %q
    if not _lower_hex(parts[1], 12):
        raise ReqsigError("reqsig: address must be 12 lowercase hex chars")
    env = Envelope(int(parts[1][:4], 16), int(parts[1][4:], 16), _timestamp(parts[2]), parts[3], parts[4], parts[5])
    if env.canonical() != text:
        raise ReqsigError("reqsig: non-canonical encoding")
    return env


def _timestamp(text: str) -> int:
    """Canonical decimal only: digits, no sign, no leading zero (but "0"); the official reasons."""
    if not text:
        raise ReqsigError("reqsig: timestamp: empty")
    if len(text) > 1 and text[0] == "0":
        raise ReqsigError("reqsig: timestamp: leading zero")
    if not text.isascii() or not text.isdigit():
        raise ReqsigError("reqsig: timestamp: non-digit")
    if int(text) >= 1 << 63:
        raise ReqsigError(f'reqsig: timestamp: strconv.ParseInt: parsing "{text}": value out of range')
    return int(text)


def check_fresh(env: Envelope, now: float, max_skew: float = 0.0) -> None:
    """Raise unless the timestamp is within ``max_skew`` seconds of ``now`` (<= 0: the default 300 s)."""
    skew = max_skew if max_skew > 0 else DEFAULT_MAX_SKEW
    if abs(int(now) - env.timestamp) > skew:
        raise ReqsigError(f"reqsig: envelope timestamp outside ±{_go_duration(skew)} window")


def verify(public_key: bytes, text: str, signature_b64: str) -> Envelope:
    """Parse ``text`` and check its signature with ``public_key`` (raw Ed25519); no freshness check."""
    env = parse(text)
    if len(public_key) != 32:
        raise ReqsigError(f"reqsig: bad public key size {len(public_key)}")
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReqsigError(f"reqsig: signature not base64: {exc}") from None
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, text.encode())
    except InvalidSignature:
        raise ReqsigError("reqsig: signature verification failed") from None
    return env


def _go_duration(seconds: float) -> str:
    """Go's time.Duration text for whole seconds: 300 -> 5m0s, 90 -> 1m30s, 45 -> 45s, 3600 -> 1h0m0s."""
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
