"""UDP tunnel frames and the tunnel key-exchange state machine (sans-I/O).

One UDP socket carries beacon messages and tunnel frames. Demux (official ``TunnelManager.readLoop``):
first byte < 0x10 is a beacon message; otherwise the first 4 bytes are a magic::

    PILT  'P' 'I' 'L' 'T' ‖ packet                                      plaintext packet (>= 4 + 34 bytes)
    PILS  magic ‖ sender node u32 ‖ nonce 12 ‖ AES-256-GCM ciphertext ‖ tag 16      (>= 4 + 32 bytes)
    PILK  magic ‖ node u32 ‖ X25519 public 32                          = 40 bytes (unauthenticated / key request)
    PILA  magic ‖ node u32 ‖ X25519 public 32 ‖ Ed25519 public 32 ‖ signature 64   = 136 bytes
    PILP  magic [‖ anything]                                           NAT punch, ignored by receivers

Receivers accept frames longer than these minimums and ignore the excess, as the official code does.
``TunnelSession`` is the local node's tunnel state for every peer (the official keyexchange.Manager
and Store): feed it datagrams, take events and outgoing frames, seal packets with it.
"""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass
from typing import Any, Union

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from . import crypto
from . import packet as pk
from .errors import (
    CryptoError, FrameError, FrameTooShort, IdentityMismatch, NoSessionKey, PilotError, RemoteProtocolError,
    UnknownMagic,
)

MAGIC_PLAIN = b"PILT"
MAGIC_SECURE = b"PILS"
MAGIC_KEY_EXCHANGE = b"PILK"
MAGIC_AUTH_KEY_EXCHANGE = b"PILA"
MAGIC_PUNCH = b"PILP"
BEACON_MAX_TYPE = 0x10

KEY_EXCHANGE_SIZE = 4 + 4 + 32
AUTH_KEY_EXCHANGE_SIZE = 4 + 4 + 32 + 32 + 64
SECURE_MIN_SIZE = 4 + 4 + crypto.NONCE_SIZE + crypto.TAG_SIZE

# Timing of the key exchange (official keyexchange.go).
REKEY_RETRANSMIT_INTERVAL = 4.0
MAX_REKEY_ATTEMPTS = 5
REKEY_GAVE_UP_COOLDOWN = 5.0
KEY_EXCHANGE_REPLY_STALE = 6.0
KEY_EXCHANGE_REPLY_MIN_INTERVAL = 1.0
DUPLICATE_HANDSHAKE_DEBOUNCE = 0.25
IDENTITY_REFETCH_AFTER = 3.0
MAX_CRYPTO_PEERS = 16384
MAX_PARKED_FRAMES_PER_PEER = 4

_U32 = struct.Struct(">I")


# --- frame codec ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class PlainFrame:
    packet: bytes


@dataclass(frozen=True, slots=True)
class SecureFrame:
    sender_node: int
    nonce: bytes
    ciphertext: bytes  # includes the 16-byte tag


@dataclass(frozen=True, slots=True)
class KeyExchangeFrame:
    node: int
    x25519_public: bytes


@dataclass(frozen=True, slots=True)
class AuthKeyExchangeFrame:
    node: int
    x25519_public: bytes
    ed25519_public: bytes
    signature: bytes


@dataclass(frozen=True, slots=True)
class PunchFrame:
    body: bytes


@dataclass(frozen=True, slots=True)
class BeaconFrame:
    """A beacon message (type byte < 0x10); parsed by the beacon codec, not here."""

    data: bytes


Frame = Union[PlainFrame, SecureFrame, KeyExchangeFrame, AuthKeyExchangeFrame, PunchFrame, BeaconFrame]


def decode_frame(data: bytes) -> Frame:
    """Classify and split one UDP datagram; raises ``FrameError`` for anything malformed."""
    if not data:
        raise FrameTooShort("empty datagram")
    if data[0] < BEACON_MAX_TYPE:
        return BeaconFrame(bytes(data))
    if len(data) < 4:
        raise FrameTooShort(f"{len(data)}-byte datagram is neither a beacon message nor a tunnel frame")
    magic = bytes(data[:4])
    if magic == MAGIC_SECURE:
        _need(data, SECURE_MIN_SIZE, "PILS")
        return SecureFrame(_U32.unpack_from(data, 4)[0], bytes(data[8:20]), bytes(data[20:]))
    if magic == MAGIC_AUTH_KEY_EXCHANGE:
        _need(data, AUTH_KEY_EXCHANGE_SIZE, "PILA")
        return AuthKeyExchangeFrame(_U32.unpack_from(data, 4)[0], bytes(data[8:40]), bytes(data[40:72]),
                                    bytes(data[72:136]))
    if magic == MAGIC_KEY_EXCHANGE:
        _need(data, KEY_EXCHANGE_SIZE, "PILK")
        return KeyExchangeFrame(_U32.unpack_from(data, 4)[0], bytes(data[8:40]))
    if magic == MAGIC_PLAIN:
        _need(data, 4 + pk.HEADER_SIZE, "PILT")
        return PlainFrame(bytes(data[4:]))
    if magic == MAGIC_PUNCH:
        return PunchFrame(bytes(data[4:]))
    raise UnknownMagic(f"unknown tunnel magic {magic!r}; datagram dropped")


def _need(data: bytes, size: int, name: str) -> None:
    if len(data) < size:
        raise FrameTooShort(f"{name} frame is {len(data)} bytes, needs at least {size}; dropped")


def encode_plain(packet: bytes) -> bytes:
    return MAGIC_PLAIN + packet


def encode_key_exchange(node: int, x25519_public: bytes) -> bytes:
    return MAGIC_KEY_EXCHANGE + _U32.pack(node) + x25519_public


def encode_auth_key_exchange(node: int, x25519_public: bytes, identity: Ed25519PrivateKey) -> bytes:
    signature = crypto.sign_auth(identity, node, x25519_public)
    return MAGIC_AUTH_KEY_EXCHANGE + _U32.pack(node) + x25519_public + crypto.public_bytes(identity) + signature


def encode_punch(node: int | None = None) -> bytes:
    return MAGIC_PUNCH if node is None else MAGIC_PUNCH + _U32.pack(node)


# --- events --------------------------------------------------------------------------------------

class TunnelEvent:
    """Base class of what ``TunnelSession.next_event`` returns."""


@dataclass(slots=True)
class PacketReceived(TunnelEvent):
    peer_node: int
    """Sender node id from the PILS header (for PILT: the packet's source node)."""
    packet: pk.Packet
    encrypted: bool
    relay: bool = False
    addr: Any = None


@dataclass(slots=True)
class BeaconReceived(TunnelEvent):
    data: bytes
    addr: Any = None


@dataclass(slots=True)
class PunchReceived(TunnelEvent):
    addr: Any = None


@dataclass(slots=True)
class TunnelEstablished(TunnelEvent):
    peer_node: int
    authenticated: bool
    rekeyed: bool
    """True when the peer's X25519 key changed (a new key replaced an installed one)."""
    same_session: bool
    """True for a same-key key exchange past the debounce window (keepalive); nothing was installed."""
    relay: bool = False
    addr: Any = None


@dataclass(slots=True)
class PeerIdentityNeeded(TunnelEvent):
    """Look up the node's Ed25519 key in the registry and call ``provide_peer_identity``."""

    peer_node: int


@dataclass(slots=True)
class FrameDropped(TunnelEvent):
    peer_node: int | None
    error: PilotError
    relay: bool = False
    addr: Any = None


@dataclass(slots=True)
class SessionDropped(TunnelEvent):
    """A session key was discarded (drop gate) and a fresh key exchange has been queued."""

    peer_node: int
    reason: str


@dataclass(slots=True)
class RekeyGaveUp(TunnelEvent):
    """Our key exchange went unanswered ``1 + MAX_REKEY_ATTEMPTS`` times; the peer is presumed gone."""

    peer_node: int


# --- the state machine ---------------------------------------------------------------------------

@dataclass(slots=True)
class _Pending:
    first_sent: float
    last_sent: float
    attempts: int = 0


@dataclass(slots=True)
class _Parked:
    frame: Union[AuthKeyExchangeFrame, KeyExchangeFrame]
    relay: bool
    addr: Any


@dataclass(slots=True)
class _Identity:
    key: bytes | None
    fetched_at: float


class TunnelSession:
    """The local node's tunnel state towards every peer.

    Inputs: ``receive_datagram``, ``provide_peer_identity``, ``start_key_exchange``, ``handle_timer``.
    Outputs: ``next_event()``, ``datagrams_to_send()`` (``(peer_node, frame)`` pairs: the glue maps a
    node to its UDP endpoint or beacon relay), and ``seal()`` for outgoing packets.
    Bad frames never raise: they become ``FrameDropped`` events carrying the typed error.
    """

    def __init__(self, *, local_node: int = 0, identity: Ed25519PrivateKey | None = None, encrypt: bool = True,
                 x25519: X25519PrivateKey | None = None, accept_plaintext: bool = True) -> None:
        self.local_node = local_node
        self.identity = identity
        self.encrypt = encrypt
        # 1.18 accepts PILT frames even with encryption on (its -encrypt=false peers send them).
        self.accept_plaintext = accept_plaintext
        self._x25519 = x25519 if x25519 is not None else (X25519PrivateKey.generate() if encrypt else None)
        self._x25519_public = crypto.public_bytes(self._x25519) if self._x25519 is not None else b""
        self._peers: dict[int, crypto.PeerCrypto] = {}
        self._identities: dict[int, _Identity] = {}
        self._parked: dict[int, list[_Parked]] = {}
        self._pending: dict[int, _Pending] = {}
        self._gave_up: dict[int, float] = {}
        self._last_decrypt: dict[int, float] = {}
        self._last_reply: dict[int, float] = {}
        self._events: collections.deque[TunnelEvent] = collections.deque()
        self._outgoing: list[tuple[int, bytes]] = []
        self._sender: bytes | None = None      # local_node as the 4-byte AAD, cached per node id
        self._sender_node = -1

    # Public methods for feeding data in.

    def receive_datagram(self, data: bytes, now: float, *, addr: Any = None, relay: bool = False) -> None:
        """Process one UDP datagram (or a frame unwrapped from a beacon relay with ``relay=True``)."""
        if data[:4] == MAGIC_SECURE and len(data) >= SECURE_MIN_SIZE:   # the per-packet path: no frame object
            view = memoryview(data)
            self._receive_secure(_U32.unpack_from(data, 4)[0], view[8:20], view[20:], now, addr, relay)
            return
        try:
            frame = decode_frame(data)
        except FrameError as exc:
            self._events.append(FrameDropped(None, exc, relay, addr))
            return
        if isinstance(frame, SecureFrame):
            self._receive_secure(frame.sender_node, frame.nonce, frame.ciphertext, now, addr, relay)
        elif isinstance(frame, BeaconFrame):
            self._events.append(BeaconReceived(frame.data, addr))
        elif isinstance(frame, AuthKeyExchangeFrame | KeyExchangeFrame):
            if self._x25519 is not None:  # encryption off: key exchanges are ignored silently
                self._receive_key_exchange(_Parked(frame, relay, addr), now)
        elif isinstance(frame, PlainFrame):
            self._receive_plain(frame, addr, relay)
        else:
            self._events.append(PunchReceived(addr))

    def provide_peer_identity(self, peer_node: int, ed25519_public: bytes | None, now: float) -> None:
        """The registry's Ed25519 key for ``peer_node`` (None: the registry has none / lookup failed)."""
        self._identities[peer_node] = _Identity(ed25519_public, now)
        for parked in self._parked.pop(peer_node, []):
            self._receive_key_exchange(parked, now)

    def forget_peer_identity(self, peer_node: int) -> None:
        self._identities.pop(peer_node, None)

    def start_key_exchange(self, peer_node: int, now: float) -> None:
        """Queue our key exchange for ``peer_node`` and retransmit it until the peer answers."""
        if self._x25519 is None:
            return
        if self.identity is not None:
            frame = encode_auth_key_exchange(self.local_node, self._x25519_public, self.identity)
        else:
            frame = encode_key_exchange(self.local_node, self._x25519_public)
        self._outgoing.append((peer_node, frame))
        pending = self._pending.get(peer_node)
        if self.identity is not None and peer_node not in self._peers and pending is not None and pending.attempts:
            # Key request: a PILK after an unanswered PILA makes a peer that already knows us answer.
            self._outgoing.append((peer_node, encode_key_exchange(self.local_node, self._x25519_public)))
        gave_up = self._gave_up.get(peer_node)
        if gave_up is not None and now - gave_up < REKEY_GAVE_UP_COOLDOWN:
            return
        self._gave_up.pop(peer_node, None)
        if pending is None:
            pending = self._pending[peer_node] = _Pending(now, now)
        pending.last_sent = now
        pending.attempts += 1

    def handle_timer(self, now: float) -> None:
        for peer_node, pending in list(self._pending.items()):
            if now - pending.last_sent < REKEY_RETRANSMIT_INTERVAL:
                continue
            if pending.attempts > MAX_REKEY_ATTEMPTS:
                del self._pending[peer_node]
                self._gave_up[peer_node] = now
                self._events.append(RekeyGaveUp(peer_node))
            else:
                self.start_key_exchange(peer_node, now)

    def get_timer(self) -> float | None:
        if not self._pending:
            return None
        return min(p.last_sent for p in self._pending.values()) + REKEY_RETRANSMIT_INTERVAL

    # Public methods for sending.

    def seal(self, peer_node: int, packet: bytes) -> bytes:
        """Wrap an encoded packet for ``peer_node``: PILS with its key, or PILT when encryption is off."""
        if not self.encrypt:
            return MAGIC_PLAIN + packet
        peer = self._peers.get(peer_node)
        if peer is None:
            raise NoSessionKey(peer_node)
        sender = self._sender
        if sender is None or self._sender_node != self.local_node:
            self._sender_node = self.local_node
            sender = self._sender = _U32.pack(self.local_node)
        return MAGIC_SECURE + sender + peer.seal(sender, packet)

    def has_session(self, peer_node: int) -> bool:
        return peer_node in self._peers

    def session(self, peer_node: int) -> crypto.PeerCrypto | None:
        return self._peers.get(peer_node)

    def drop_session(self, peer_node: int) -> None:
        self._peers.pop(peer_node, None)
        self._pending.pop(peer_node, None)
        self._last_decrypt.pop(peer_node, None)
        self._last_reply.pop(peer_node, None)

    def rotate_key(self) -> None:
        """A fresh X25519 key and no sessions: every peer sees a new key exchange (the official daemon
        ignores one that repeats the current key)."""
        if self._x25519 is not None:
            self._x25519 = X25519PrivateKey.generate()
            self._x25519_public = crypto.public_bytes(self._x25519)
        for table in (self._peers, self._pending, self._gave_up, self._last_decrypt, self._last_reply):
            table.clear()

    @property
    def x25519_public(self) -> bytes:
        return self._x25519_public

    # Public methods for getting events and data out.

    def next_event(self) -> TunnelEvent | None:
        return self._events.popleft() if self._events else None

    def datagrams_to_send(self) -> list[tuple[int, bytes]]:
        out, self._outgoing = self._outgoing, []
        return out

    # Internals.

    def _receive_plain(self, frame: PlainFrame, addr: Any, relay: bool) -> None:
        if not self.accept_plaintext:
            return
        try:
            packet = pk.decode(frame.packet)
        except RemoteProtocolError as exc:
            self._events.append(FrameDropped(None, exc, relay, addr))
            return
        self._events.append(PacketReceived(packet.src.node, packet, False, relay, addr))

    def _receive_secure(self, node: int, nonce: bytes | memoryview, ciphertext: bytes | memoryview, now: float,
                        addr: Any, relay: bool) -> None:
        peer = self._peers.get(node)
        if peer is None:
            self._events.append(FrameDropped(node, NoSessionKey(node), relay, addr))
            gave_up = self._gave_up.get(node)
            if node not in self._pending and (gave_up is None or now - gave_up >= REKEY_GAVE_UP_COOLDOWN):
                self.start_key_exchange(node, now)  # the peer holds a key we lost: renegotiate
            return
        try:
            plaintext = peer.open(_U32.pack(node), nonce, ciphertext)
            packet = pk.decode(plaintext)
        except CryptoError as exc:
            self._events.append(FrameDropped(node, exc, relay, addr))
            reason = peer.drop_reason(now)
            if reason is not None and self._peers.get(node) is peer:
                self.drop_session(node)
                self._events.append(SessionDropped(node, reason))
                self.start_key_exchange(node, now)
            return
        except RemoteProtocolError as exc:
            self._events.append(FrameDropped(node, exc, relay, addr))
            return
        self._pending.pop(node, None)
        self._gave_up.pop(node, None)
        self._last_decrypt[node] = now
        self._events.append(PacketReceived(node, packet, True, relay, addr))

    def _receive_key_exchange(self, parked: _Parked, now: float) -> None:
        frame = parked.frame
        node = frame.node
        known = self._identities.get(node)
        if isinstance(frame, AuthKeyExchangeFrame):
            if known is None or known.key is None:
                if known is None:
                    self._park(node, parked)
                else:
                    self._drop(node, IdentityMismatch(
                        f"registry has no Ed25519 key for node {node}; its PILA cannot be verified"), parked)
                return
            if frame.ed25519_public != known.key:
                if now - known.fetched_at >= IDENTITY_REFETCH_AFTER:
                    del self._identities[node]  # the peer may have a new identity: ask the registry again
                    self._park(node, parked)
                else:
                    self._drop(node, IdentityMismatch(
                        f"PILA from node {node} carries an Ed25519 key the registry does not hold; dropped"), parked)
                return
            try:
                crypto.verify_auth(known.key, node, frame.x25519_public, frame.signature)
            except CryptoError as exc:
                self._drop(node, exc, parked)
                return
            self._install(node, frame.x25519_public, True, parked, now)
            return
        # PILK: refused (answered with our PILA) when we have an identity and the registry knows the peer's.
        if self.identity is not None:
            if known is None:
                self._park(node, parked)
                return
            if known.key is not None:
                self.start_key_exchange(node, now)
                return
        if node not in self._peers and len(self._peers) >= MAX_CRYPTO_PEERS:
            return
        self._install(node, frame.x25519_public, False, parked, now)

    def _install(self, node: int, x25519_public: bytes, authenticated: bool, parked: _Parked, now: float) -> None:
        assert self._x25519 is not None
        old = self._peers.get(node)
        key_changed = old is not None and old.peer_x25519 != x25519_public
        if old is None or key_changed:
            try:
                key = crypto.derive_tunnel_key(self._x25519, x25519_public)
            except CryptoError as exc:
                self._drop(node, exc, parked)
                return
            self._peers[node] = crypto.PeerCrypto(key, peer_x25519=x25519_public, created_at=now,
                                                  authenticated=authenticated)
            self._last_decrypt.pop(node, None)
        duplicate = old is not None and not key_changed and now - old.created_at < DUPLICATE_HANDSHAKE_DEBOUNCE
        if not duplicate:
            self._events.append(TunnelEstablished(node, authenticated, key_changed, old is not None and not key_changed,
                                                  parked.relay, parked.addr))
        if old is None or key_changed:
            self.start_key_exchange(node, now)
        elif self._inbound_stale(node, now) and self._may_reply(node, now):
            self.start_key_exchange(node, now)
        self._pending.pop(node, None)

    def _inbound_stale(self, node: int, now: float) -> bool:
        last = self._last_decrypt.get(node)
        return last is None or now - last > KEY_EXCHANGE_REPLY_STALE

    def _may_reply(self, node: int, now: float) -> bool:
        last = self._last_reply.get(node)
        if last is not None and now - last < KEY_EXCHANGE_REPLY_MIN_INTERVAL:
            return False
        self._last_reply[node] = now
        return True

    def _park(self, node: int, parked: _Parked) -> None:
        queue = self._parked.setdefault(node, [])
        if not queue:
            self._events.append(PeerIdentityNeeded(node))
        if len(queue) < MAX_PARKED_FRAMES_PER_PEER:
            queue.append(parked)

    def _drop(self, node: int, error: PilotError, parked: _Parked) -> None:
        self._events.append(FrameDropped(node, error, parked.relay, parked.addr))


__all__ = [
    "AuthKeyExchangeFrame", "BeaconFrame", "BeaconReceived", "Frame", "FrameDropped", "KeyExchangeFrame",
    "PacketReceived", "PeerIdentityNeeded", "PlainFrame", "PunchFrame", "PunchReceived", "RekeyGaveUp",
    "SecureFrame", "SessionDropped", "TunnelEstablished", "TunnelEvent", "TunnelSession", "decode_frame",
    "encode_auth_key_exchange", "encode_key_exchange", "encode_plain", "encode_punch",
]
