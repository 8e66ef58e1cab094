"""Typed errors of the sans-I/O protocol core (h11 style).

    PilotError
    ├── LocalProtocolError      we (or our caller) tried something the protocol forbids
    │   ├── AddressError        a text address or port that does not parse
    │   ├── PayloadTooLarge     a packet or IPC frame we were asked to encode is too big
    │   └── NoSessionKey        sealing for a peer we hold no tunnel key for
    └── RemoteProtocolError     the peer (or a local IPC client) sent bytes we cannot accept
        ├── PacketError         a 34-byte-header packet that fails validation
        │   ├── PacketTooShort, PacketTruncated, ChecksumMismatch, UnsupportedVersion
        ├── FrameError          a UDP tunnel frame that fails validation
        │   ├── FrameTooShort, UnknownMagic
        ├── CryptoError         a tunnel frame that fails authentication or freshness
        │   ├── DecryptFailed, ReplayDetected, OutsideReplayWindow,
        │   ├── BadSignature, IdentityMismatch, InvalidPeerKey
        ├── IPCFrameTooLarge    an IPC length prefix over 1 MiB (the official daemon drops the client)
        └── IPCMessageError     an IPC frame whose payload does not parse
            └── IPCRequestError an IPC request the official daemon refuses (``message`` is its exact text)

Every error carries a message that says what to do next. Nothing in the core raises anything else
for bad input: decoders turn every malformed byte string into one of these.
"""

from __future__ import annotations


class PilotError(Exception):
    """Base class of every error the protocol core raises; do not raise it directly."""

    def __init__(self, message: str) -> None:
        if type(self) in (PilotError, LocalProtocolError, RemoteProtocolError):
            raise TypeError(f"{type(self).__name__} is abstract; raise a concrete subclass")
        super().__init__(message)
        self.message = message


class LocalProtocolError(PilotError):
    """Our side (the caller of the core) asked for something the protocol forbids."""


class RemoteProtocolError(PilotError):
    """The other side sent something the protocol forbids; drop it (or the connection)."""


# --- local -------------------------------------------------------------------------------------

class AddressError(LocalProtocolError, ValueError):
    """A Pilot address or socket address that does not parse or is out of range."""


class PayloadTooLarge(LocalProtocolError):
    """A payload larger than the wire format can carry; split it before encoding."""


class NoSessionKey(LocalProtocolError):
    """No tunnel key is installed for the peer; start a key exchange and queue the packet."""

    def __init__(self, peer_node: int) -> None:
        super().__init__(
            f"no tunnel key for node {peer_node}: call start_key_exchange() and retry once "
            "TunnelEstablished arrives"
        )
        self.peer_node = peer_node


# --- remote: packets ---------------------------------------------------------------------------

class PacketError(RemoteProtocolError):
    """A packet (34-byte header + payload) that fails validation; drop it."""


class PacketTooShort(PacketError):
    pass


class PacketTruncated(PacketError):
    pass


class ChecksumMismatch(PacketError):
    pass


class UnsupportedVersion(PacketError):
    pass


# --- remote: tunnel frames ---------------------------------------------------------------------

class FrameError(RemoteProtocolError):
    """A UDP tunnel frame that fails validation; drop it."""


class FrameTooShort(FrameError):
    pass


class UnknownMagic(FrameError):
    pass


class CryptoError(RemoteProtocolError):
    """A tunnel frame that fails authentication or freshness checks; drop it."""


class DecryptFailed(CryptoError):
    """AES-GCM authentication failed: tampered frame, wrong key, or wrong sender id (AAD)."""


class ReplayDetected(CryptoError):
    """The nonce counter was already seen inside the replay window."""


class OutsideReplayWindow(CryptoError):
    """The nonce counter is older than the 256-entry replay window."""


class BadSignature(CryptoError):
    """A PILA frame whose Ed25519 signature does not verify."""


class IdentityMismatch(CryptoError):
    """A PILA frame whose Ed25519 key differs from the one the registry holds for that node."""


class InvalidPeerKey(CryptoError):
    """An X25519 public key that yields no usable shared secret (e.g. a low-order point)."""


# --- remote: IPC -------------------------------------------------------------------------------

class IPCFrameTooLarge(RemoteProtocolError):
    """An IPC frame whose length prefix exceeds 1 MiB; close the client connection."""


class IPCMessageError(RemoteProtocolError):
    """An IPC frame whose payload does not parse (e.g. a malformed reply from a daemon)."""


class IPCRequestError(IPCMessageError):
    """An IPC request the daemon refuses.

    ``message`` is the official daemon's error text, to be sent back in a 0x0A error frame;
    when ``silent`` is true the official daemon sends nothing back (Send, SendTo, Cancel).
    """

    def __init__(self, message: str, *, silent: bool = False) -> None:
        super().__init__(message)
        self.silent = silent
