"""Tunnel cryptography: X25519 + HKDF-SHA256 key, AES-256-GCM frames, Ed25519-signed key exchange.

Facts (official pilot-daemon 1.18, ``pkg/daemon/keyexchange`` and ``envelope``; confirmed by decrypting
frames captured from the official binary, see ``tests/vectors/README.md``):

* key = HKDF-SHA256(salt = none, IKM = X25519(our private, peer public), info = ``pilot-tunnel-v1``, 32 bytes)
* nonce = 4-byte random prefix (fresh per installed key) ‖ u64 big-endian send counter, first value 1
* AAD = the sender's node id, u32 big-endian (the same id that follows the ``PILS`` magic)
* PILA signature = Ed25519(identity, ``"auth"`` ‖ node u32 BE ‖ X25519 public key)
* replay window: 256 counters, sliding bitmap; 1.18 keeps ONE window per installed key (the binary has
  ``CheckAndRecordNonce``/``WouldAcceptNonce`` but no per-prefix epoch windows, which came later)
* drop gates: 5 consecutive AEAD failures (key older than 3 s), 5 replays or 5 out-of-window frames
  (key older than 1 s), or a single replay/out-of-window frame once the key is older than 60 s, drop
  the key and re-run the key exchange.

Only authenticated frames touch the replay window or the replay counters: AES-GCM is opened first.
"""

from __future__ import annotations

import os
import struct

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .errors import BadSignature, DecryptFailed, InvalidPeerKey, OutsideReplayWindow, ReplayDetected

HKDF_INFO = b"pilot-tunnel-v1"
KEY_SIZE = 32
X25519_KEY_SIZE = 32
ED25519_KEY_SIZE = 32
SIGNATURE_SIZE = 64
NONCE_PREFIX_SIZE = 4
NONCE_SIZE = 12
TAG_SIZE = 16
AUTH_PREFIX = b"auth"

REPLAY_WINDOW_SIZE = 256
DECRYPT_FAIL_DROP_THRESHOLD = 5
DECRYPT_FAIL_DROP_GRACE = 3.0
OUTSIDE_WINDOW_DROP_THRESHOLD = 5
OUTSIDE_WINDOW_DROP_GRACE = 1.0
REPLAY_DROP_THRESHOLD = 5
REPLAY_DROP_GRACE = 1.0
AGED_KEY_FAST_DROP_AGE = 60.0

_U32 = struct.Struct(">I")
_WINDOW_MASK = (1 << REPLAY_WINDOW_SIZE) - 1


def public_bytes(key: X25519PrivateKey | Ed25519PrivateKey) -> bytes:
    """The raw 32-byte public key of an X25519 or Ed25519 private key."""
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def derive_tunnel_key(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    """The AES-256 key both ends derive from one X25519 exchange."""
    if len(peer_public) != X25519_KEY_SIZE:
        raise InvalidPeerKey(f"X25519 public key must be {X25519_KEY_SIZE} bytes, got {len(peer_public)}")
    try:
        shared = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError as exc:  # all-zero shared secret: a low-order point
        raise InvalidPeerKey(f"peer X25519 key gives no usable shared secret ({exc}); drop the frame") from None
    return HKDF(hashes.SHA256(), KEY_SIZE, salt=None, info=HKDF_INFO).derive(shared)


def auth_challenge(node: int, x25519_public: bytes) -> bytes:
    """The 40 bytes a PILA signature covers."""
    return AUTH_PREFIX + _U32.pack(node) + x25519_public


def sign_auth(identity: Ed25519PrivateKey, node: int, x25519_public: bytes) -> bytes:
    return identity.sign(auth_challenge(node, x25519_public))


def verify_auth(ed25519_public: bytes, node: int, x25519_public: bytes, signature: bytes) -> None:
    """Raise ``BadSignature`` unless ``signature`` is the node's PILA signature."""
    try:
        Ed25519PublicKey.from_public_bytes(ed25519_public).verify(signature, auth_challenge(node, x25519_public))
    except (InvalidSignature, ValueError):
        raise BadSignature(
            f"PILA signature from node {node} does not verify against its registered Ed25519 key; frame dropped"
        ) from None


class ReplayWindow:
    """Sliding 256-counter bitmap (official ``CheckAndRecordNonce``), counters are u64.

    A high-water mark of 0 means "nothing seen yet", exactly as in the official code.
    """

    __slots__ = ("max_seen", "_bits")

    def __init__(self) -> None:
        self.max_seen = 0
        self._bits = 0  # bit i set = counter (max_seen - i) seen

    def would_accept(self, counter: int) -> bool:
        if self.max_seen == 0 or counter > self.max_seen:
            return True
        diff = self.max_seen - counter
        return diff < REPLAY_WINDOW_SIZE and not (self._bits >> diff) & 1

    def check_and_record(self, counter: int) -> bool:
        if self.max_seen == 0:
            self.max_seen, self._bits = counter, 1
            return True
        if counter > self.max_seen:
            shift = counter - self.max_seen
            self._bits = ((self._bits << shift) | 1) & _WINDOW_MASK if shift < REPLAY_WINDOW_SIZE else 1
            self.max_seen = counter
            return True
        diff = self.max_seen - counter
        if diff >= REPLAY_WINDOW_SIZE or (self._bits >> diff) & 1:
            return False
        self._bits |= 1 << diff
        return True

    def is_outside(self, counter: int) -> bool:
        return counter < self.max_seen and self.max_seen - counter >= REPLAY_WINDOW_SIZE


class PeerCrypto:
    """One peer's installed session key: sealing state, replay window and drop-gate counters."""

    __slots__ = (
        "_aead", "peer_x25519", "nonce_prefix", "send_counter", "window", "authenticated", "created_at",
        "decrypt_failures", "outside_window_count", "replay_count",
    )

    def __init__(self, key: bytes, *, peer_x25519: bytes, created_at: float, authenticated: bool,
                 nonce_prefix: bytes | None = None) -> None:
        self._aead = AESGCM(key)
        self.peer_x25519 = peer_x25519
        self.nonce_prefix = os.urandom(NONCE_PREFIX_SIZE) if nonce_prefix is None else nonce_prefix
        if len(self.nonce_prefix) != NONCE_PREFIX_SIZE:
            raise ValueError("nonce prefix must be 4 bytes")
        self.send_counter = 0
        self.window = ReplayWindow()
        self.authenticated = authenticated
        self.created_at = created_at
        self.decrypt_failures = 0
        self.outside_window_count = 0
        self.replay_count = 0

    def seal(self, sender_node: bytes, plaintext: bytes) -> bytes:
        """Return nonce ‖ ciphertext ‖ tag; ``sender_node`` is our node id as 4 BE bytes (the AAD)."""
        self.send_counter += 1
        nonce = self.nonce_prefix + self.send_counter.to_bytes(8, "big")
        return nonce + self._aead.encrypt(nonce, plaintext, sender_node)

    def open(self, sender_node: bytes, nonce: bytes, ciphertext: bytes) -> bytes:
        """Authenticate, then judge freshness; raises a ``CryptoError`` subclass and counts the fault."""
        try:
            plaintext = self._aead.decrypt(nonce, ciphertext, sender_node)
        except InvalidTag:
            self.decrypt_failures += 1
            raise DecryptFailed(
                f"AES-GCM authentication failed for node {_U32.unpack(sender_node)[0]} "
                "(tampered frame, wrong sender id, or the peer holds another key); frame dropped"
            ) from None
        counter = int.from_bytes(nonce[4:], "big")
        if not self.window.check_and_record(counter):
            if self.window.is_outside(counter):
                self.outside_window_count += 1
                raise OutsideReplayWindow(
                    f"nonce counter {counter} is more than {REPLAY_WINDOW_SIZE} behind {self.window.max_seen}; "
                    "frame dropped"
                )
            self.replay_count += 1
            raise ReplayDetected(f"nonce counter {counter} already seen; replayed frame dropped")
        self.decrypt_failures = self.outside_window_count = self.replay_count = 0
        return plaintext

    def drop_reason(self, now: float) -> str | None:
        """Why this key should be dropped and renegotiated now, or None (official ShouldDropOn*)."""
        age = now - self.created_at
        if self.decrypt_failures >= DECRYPT_FAIL_DROP_THRESHOLD and age >= DECRYPT_FAIL_DROP_GRACE:
            return "consecutive_decrypt_failures"
        for count, threshold, grace, reason in (
            (self.outside_window_count, OUTSIDE_WINDOW_DROP_THRESHOLD, OUTSIDE_WINDOW_DROP_GRACE, "outside_replay_window"),
            (self.replay_count, REPLAY_DROP_THRESHOLD, REPLAY_DROP_GRACE, "consecutive_replays"),
        ):
            if count and (age >= AGED_KEY_FAST_DROP_AGE or (count >= threshold and age >= grace)):
                return reason
        return None
