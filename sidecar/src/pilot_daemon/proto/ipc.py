"""The IPC codec spoken on the daemon's Unix socket by pilotctl, the Go driver and the Python SDK.

Framing (official ``common/ipcutil`` and ``pkg/daemon/ipc.go``): ``[u32 BE length][u8 cmd][payload]``;
the length counts cmd + payload and may not exceed 1 MiB (the official daemon logs "ipc message too
large" and drops the client); a zero-length frame is skipped. Integers are big-endian, addresses are
6 bytes. There are no request ids: the daemon answers each request exactly once, except Send (0x06),
SendTo (0x0B) and Cancel (0x2B), which never get an answer, and pushes Accept/Recv/CloseOK/RecvFrom
unsolicited. Errors are ``0x0A [u16 code = 1][text]``; the texts below are the official daemon's.

Use ``FrameDecoder`` to split a byte stream into ``Frame``s, ``decode_request``/``encode_request`` on the
daemon side of a frame, ``decode_reply``/``encode_reply`` on the client side.
"""

from __future__ import annotations

import enum
import json
import struct
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from . import gojson
from .addr import ADDR_SIZE, Addr
from .errors import IPCFrameTooLarge, IPCMessageError, IPCRequestError, PayloadTooLarge

MAX_FRAME = 1 << 20
"""Largest ``cmd + payload`` the official daemon reads or writes."""
REPLY_BUDGET = MAX_FRAME - 64
"""Largest JSON body the official daemon puts in one reply (it truncates row lists beyond this)."""
SEND_CHUNK = MAX_FRAME - 64
"""The official driver splits a Write into Send frames of at most this many data bytes."""
ERROR_CODE = 1
"""The only error code the official daemon sends."""
HANDSHAKE_WAIT_MAX_MS = 30_000
FEATURES = ("reply_window", "dial_awaits_key", "key_request", "dgram_confirm")
"""The ``features`` list of the 1.18 info reply."""


class Cmd(enum.IntEnum):
    BIND = 0x01
    BIND_OK = 0x02
    DIAL = 0x03
    DIAL_OK = 0x04
    ACCEPT = 0x05
    SEND = 0x06
    RECV = 0x07
    CLOSE = 0x08
    CLOSE_OK = 0x09
    ERROR = 0x0A
    SEND_TO = 0x0B
    RECV_FROM = 0x0C
    INFO = 0x0D
    INFO_OK = 0x0E
    HANDSHAKE = 0x0F
    HANDSHAKE_OK = 0x10
    RESOLVE_HOSTNAME = 0x11
    RESOLVE_HOSTNAME_OK = 0x12
    SET_HOSTNAME = 0x13
    SET_HOSTNAME_OK = 0x14
    SET_VISIBILITY = 0x15
    SET_VISIBILITY_OK = 0x16
    DEREGISTER = 0x17
    DEREGISTER_OK = 0x18
    SET_TAGS = 0x19
    SET_TAGS_OK = 0x1A
    SET_WEBHOOK = 0x1B
    SET_WEBHOOK_OK = 0x1C
    NETWORK = 0x1F
    NETWORK_OK = 0x20
    HEALTH = 0x21
    HEALTH_OK = 0x22
    MANAGED = 0x23
    MANAGED_OK = 0x24
    ROTATE_KEY = 0x25
    ROTATE_KEY_OK = 0x26
    BROADCAST = 0x29
    BROADCAST_OK = 0x2A
    CANCEL = 0x2B
    PREFER_DIRECT = 0x2D
    PREFER_DIRECT_OK = 0x2E
    SUBMIT_BADGE = 0x2F
    SUBMIT_BADGE_OK = 0x30
    ENROLL_RECOVERY = 0x31
    ENROLL_RECOVERY_OK = 0x32
    SIGN_ENVELOPE = 0x33
    SIGN_ENVELOPE_OK = 0x34
    VERIFY_ENVELOPE = 0x35
    VERIFY_ENVELOPE_OK = 0x36
    UNBIND = 0x37
    UNBIND_OK = 0x38
    SEND_TO_CONFIRM = 0x39
    SEND_TO_OK = 0x3A


class HandshakeSub(enum.IntEnum):
    SEND = 0x01
    APPROVE = 0x02
    REJECT = 0x03
    PENDING = 0x04
    TRUSTED = 0x05
    REVOKE = 0x06
    WAIT = 0x07


class NetworkSub(enum.IntEnum):
    LIST = 0x01
    JOIN = 0x02
    LEAVE = 0x03
    MEMBERS = 0x04
    INVITE = 0x05
    POLL_INVITES = 0x06
    RESPOND_INVITE = 0x07


class ManagedSub(enum.IntEnum):
    STATUS = 0x02
    CYCLE = 0x04
    POLICY = 0x05
    MEMBER_TAGS = 0x06
    RECONCILE = 0x07


NO_REPLY = frozenset({Cmd.SEND, Cmd.SEND_TO, Cmd.CANCEL})
"""Requests the official daemon never answers, not even with an error."""

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ADDR_PORT = struct.Struct(">HIH")  # network, node, port
_ACCEPT = struct.Struct(">HIHIH")  # local port, conn id, remote network, remote node, remote port
_RECV_FROM = struct.Struct(">HIHH")  # src network, src node, src port, dst port


# --- framing -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Frame:
    cmd: int
    payload: bytes


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """``[u32 len][cmd][payload]``; raises ``PayloadTooLarge`` past 1 MiB (the peer would drop us)."""
    length = 1 + len(payload)
    if length > MAX_FRAME:
        raise PayloadTooLarge(
            f"IPC frame of {length} bytes exceeds {MAX_FRAME}; split data into chunks of {SEND_CHUNK} bytes"
        )
    return _U32.pack(length) + bytes((cmd,)) + payload


class FrameDecoder:
    """Incremental splitter for an IPC byte stream (websockets style: ``feed`` then ``events``)."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._frames: deque[Frame] = deque()
        self._error: IPCFrameTooLarge | None = None

    def feed(self, data: bytes) -> None:
        if self._error is not None:
            return
        buf = self._buffer
        buf += data
        offset, size = 0, len(buf)
        while size - offset >= 4:
            (length,) = _U32.unpack_from(buf, offset)
            if length > MAX_FRAME:
                self._error = IPCFrameTooLarge(
                    f"ipc message too large: {length} bytes (max {MAX_FRAME}); close this client connection"
                )
                break
            end = offset + 4 + length
            if end > size:
                break
            if length:
                self._frames.append(Frame(buf[offset + 4], bytes(buf[offset + 5:end])))
            offset = end
        del buf[:offset]

    def events(self) -> Iterator[Frame]:
        """Yield complete frames in order; after the last good one, raise ``IPCFrameTooLarge`` if one was seen."""
        while self._frames:
            yield self._frames.popleft()
        if self._error is not None:
            raise self._error

    @property
    def buffered(self) -> int:
        return len(self._buffer)


# --- helpers -------------------------------------------------------------------------------------

def _text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _addr_port(payload: bytes) -> tuple[Addr, int]:
    network, node, port = _ADDR_PORT.unpack_from(payload)
    return Addr(network, node), port


def _pack_addr_port(addr: Addr, port: int) -> bytes:
    return _ADDR_PORT.pack(addr.network, addr.node, port)


def _json_object(payload: bytes, verb: str) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IPCRequestError(f"{verb}: bad payload: {exc}") from None
    if not isinstance(value, dict):
        raise IPCRequestError(f"{verb}: bad payload: expected a JSON object")
    return value


def _string_list(payload: bytes, error_prefix: str) -> list[str]:
    try:
        value = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IPCRequestError(f"{error_prefix}: {exc}") from None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise IPCRequestError(f"{error_prefix}: expected a JSON array of strings")
    return value


# --- requests (client -> daemon) -----------------------------------------------------------------

class Request:
    cmd: ClassVar[Cmd]

    def payload(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        return encode_frame(self.cmd, self.payload())


@dataclass(frozen=True, slots=True)
class Bind(Request):
    cmd: ClassVar[Cmd] = Cmd.BIND
    port: int

    def payload(self) -> bytes:
        return _U16.pack(self.port)


@dataclass(frozen=True, slots=True)
class Unbind(Bind):
    cmd: ClassVar[Cmd] = Cmd.UNBIND


@dataclass(frozen=True, slots=True)
class Dial(Request):
    cmd: ClassVar[Cmd] = Cmd.DIAL
    addr: Addr
    port: int

    def payload(self) -> bytes:
        return _pack_addr_port(self.addr, self.port)


@dataclass(frozen=True, slots=True)
class Send(Request):
    cmd: ClassVar[Cmd] = Cmd.SEND
    conn_id: int
    data: bytes

    def payload(self) -> bytes:
        return _U32.pack(self.conn_id) + self.data


@dataclass(frozen=True, slots=True)
class Close(Request):
    cmd: ClassVar[Cmd] = Cmd.CLOSE
    conn_id: int

    def payload(self) -> bytes:
        return _U32.pack(self.conn_id)


@dataclass(frozen=True, slots=True)
class SendTo(Request):
    cmd: ClassVar[Cmd] = Cmd.SEND_TO
    addr: Addr
    port: int
    data: bytes

    def payload(self) -> bytes:
        return _pack_addr_port(self.addr, self.port) + self.data


@dataclass(frozen=True, slots=True)
class SendToConfirm(SendTo):
    """SendTo that is answered: SendToOK, or an error whose text starts with ``sendto: ``."""

    cmd: ClassVar[Cmd] = Cmd.SEND_TO_CONFIRM


@dataclass(frozen=True, slots=True)
class Broadcast(Request):
    cmd: ClassVar[Cmd] = Cmd.BROADCAST
    network: int
    port: int
    token: str
    data: bytes

    def payload(self) -> bytes:
        token = _raw(self.token)
        return _U16.pack(self.network) + _U16.pack(self.port) + _U16.pack(len(token)) + token + self.data


@dataclass(frozen=True, slots=True)
class Info(Request):
    cmd: ClassVar[Cmd] = Cmd.INFO


@dataclass(frozen=True, slots=True)
class Health(Request):
    cmd: ClassVar[Cmd] = Cmd.HEALTH


@dataclass(frozen=True, slots=True)
class Deregister(Request):
    cmd: ClassVar[Cmd] = Cmd.DEREGISTER


@dataclass(frozen=True, slots=True)
class RotateKey(Request):
    cmd: ClassVar[Cmd] = Cmd.ROTATE_KEY


@dataclass(frozen=True, slots=True)
class Cancel(Request):
    """Abort all of this client's in-flight dials; never answered."""

    cmd: ClassVar[Cmd] = Cmd.CANCEL


@dataclass(frozen=True, slots=True)
class Handshake(Request):
    """Trust handshake verbs; ``text`` is the justification (SEND) or reason (REJECT)."""

    cmd: ClassVar[Cmd] = Cmd.HANDSHAKE
    sub: HandshakeSub
    node_id: int = 0
    text: str = ""
    timeout_ms: int = 0

    def payload(self) -> bytes:
        sub = bytes((self.sub,))
        if self.sub in (HandshakeSub.PENDING, HandshakeSub.TRUSTED):
            return sub
        body = sub + _U32.pack(self.node_id)
        if self.sub == HandshakeSub.WAIT:
            return body + _U32.pack(self.timeout_ms)
        return body + _raw(self.text) if self.sub in (HandshakeSub.SEND, HandshakeSub.REJECT) else body

    @property
    def wait_seconds(self) -> float:
        """WAIT's timeout as the official daemon applies it (capped at 30 s)."""
        return min(self.timeout_ms, HANDSHAKE_WAIT_MAX_MS) / 1000.0


@dataclass(frozen=True, slots=True)
class ResolveHostname(Request):
    cmd: ClassVar[Cmd] = Cmd.RESOLVE_HOSTNAME
    hostname: str

    def payload(self) -> bytes:
        return _raw(self.hostname)


@dataclass(frozen=True, slots=True)
class SetHostname(Request):
    cmd: ClassVar[Cmd] = Cmd.SET_HOSTNAME
    hostname: str  # "" clears

    def payload(self) -> bytes:
        return _raw(self.hostname)


@dataclass(frozen=True, slots=True)
class SetVisibility(Request):
    cmd: ClassVar[Cmd] = Cmd.SET_VISIBILITY
    public: bool

    def payload(self) -> bytes:
        return b"\x01" if self.public else b"\x00"


@dataclass(frozen=True, slots=True)
class SetTags(Request):
    cmd: ClassVar[Cmd] = Cmd.SET_TAGS
    tags: tuple[str, ...]

    def payload(self) -> bytes:
        return gojson.dumps(list(self.tags))


@dataclass(frozen=True, slots=True)
class SetWebhook(Request):
    cmd: ClassVar[Cmd] = Cmd.SET_WEBHOOK
    url: str  # "" clears

    def payload(self) -> bytes:
        return _raw(self.url)


@dataclass(frozen=True, slots=True)
class Network(Request):
    """Network verbs; fields unused by a sub-command stay at their defaults."""

    cmd: ClassVar[Cmd] = Cmd.NETWORK
    sub: NetworkSub
    network_id: int = 0
    token: str = ""
    node_id: int = 0
    accept: bool = False

    def payload(self) -> bytes:
        sub = bytes((self.sub,))
        if self.sub in (NetworkSub.LIST, NetworkSub.POLL_INVITES):
            return sub
        body = sub + _U16.pack(self.network_id)
        if self.sub == NetworkSub.JOIN:
            return body + _raw(self.token)
        if self.sub == NetworkSub.INVITE:
            return body + _U32.pack(self.node_id)
        if self.sub == NetworkSub.RESPOND_INVITE:
            return body + (b"\x01" if self.accept else b"\x00")
        return body


@dataclass(frozen=True, slots=True)
class Managed(Request):
    """Managed-network verbs. POLICY/MEMBER_TAGS carry ``action`` 0 (get) or 1 (set); ``body`` is the
    policy JSON (POLICY set) or tags JSON (MEMBER_TAGS set). ``network_id`` None = omitted (status/cycle/reconcile).
    """

    cmd: ClassVar[Cmd] = Cmd.MANAGED
    sub: ManagedSub
    network_id: int | None = None
    action: int = 0
    token: str = ""
    node_id: int = 0
    body: bytes = b""
    tags: tuple[str, ...] = field(default=())

    def payload(self) -> bytes:
        sub = bytes((self.sub,))
        net = _U16.pack(self.network_id or 0)
        if self.sub == ManagedSub.POLICY:
            head = sub + bytes((self.action,)) + net
            if self.action == 1:
                token = _raw(self.token)
                return head + _U16.pack(len(token)) + token + self.body
            return head
        if self.sub == ManagedSub.MEMBER_TAGS:
            head = sub + bytes((self.action,)) + net + _U32.pack(self.node_id)
            return head + gojson.dumps(list(self.tags)) if self.action == 1 else head
        return sub if self.network_id is None else sub + net


@dataclass(frozen=True, slots=True)
class PreferDirect(Request):
    cmd: ClassVar[Cmd] = Cmd.PREFER_DIRECT
    node_id: int

    def payload(self) -> bytes:
        return _U32.pack(self.node_id)


@dataclass(frozen=True, slots=True)
class JsonRequest(Request):
    """SubmitBadge, EnrollRecovery, SignEnvelope, VerifyEnvelope: a JSON object payload."""

    cmd: Cmd  # type: ignore[misc]
    body: dict[str, Any]

    def payload(self) -> bytes:
        return gojson.dumps(self.body)


AnyRequest = Union[
    Bind, Unbind, Dial, Send, Close, SendTo, SendToConfirm, Broadcast, Info, Health, Deregister, RotateKey, Cancel,
    Handshake, ResolveHostname, SetHostname, SetVisibility, SetTags, SetWebhook, Network, Managed, PreferDirect,
    JsonRequest,
]

_JSON_VERBS = {
    Cmd.SUBMIT_BADGE: "submit_badge", Cmd.ENROLL_RECOVERY: "enroll_recovery",
    Cmd.SIGN_ENVELOPE: "sign_envelope", Cmd.VERIFY_ENVELOPE: "verify_envelope",
}


def encode_request(request: Request) -> bytes:
    return request.encode()


def decode_request(frame: Frame) -> AnyRequest:
    """Parse a client request; raises ``IPCRequestError`` carrying the official daemon's error text.

    ``error.silent`` is set for Send/SendTo, which the official daemon drops without a word.
    """
    cmd, p = frame.cmd, frame.payload
    if cmd == Cmd.SEND:
        if len(p) < 4:
            raise IPCRequestError("send: missing conn_id", silent=True)
        return Send(_U32.unpack_from(p)[0], p[4:])
    if cmd in (Cmd.SEND_TO, Cmd.SEND_TO_CONFIRM):
        if len(p) < ADDR_SIZE + 2:
            raise IPCRequestError("sendto: missing header", silent=cmd == Cmd.SEND_TO)
        addr, port = _addr_port(p)
        return (SendTo if cmd == Cmd.SEND_TO else SendToConfirm)(addr, port, p[ADDR_SIZE + 2:])
    if cmd == Cmd.BIND:
        if len(p) < 2:
            raise IPCRequestError("bind: missing port")
        return Bind(_U16.unpack_from(p)[0])
    if cmd == Cmd.UNBIND:
        if len(p) != 2:
            raise IPCRequestError("unbind: port is required")
        return Unbind(_U16.unpack_from(p)[0])
    if cmd == Cmd.DIAL:
        if len(p) < ADDR_SIZE + 2:
            raise IPCRequestError("dial: missing address/port")
        return Dial(*_addr_port(p))
    if cmd == Cmd.CLOSE:
        if len(p) < 4:
            raise IPCRequestError("close: missing conn_id")
        return Close(_U32.unpack_from(p)[0])
    if cmd == Cmd.BROADCAST:
        if len(p) < 6:
            raise IPCRequestError("broadcast: missing header")
        network, port, token_len = struct.unpack_from(">HHH", p)
        if len(p) < 6 + token_len:
            raise IPCRequestError("broadcast: truncated token")
        return Broadcast(network, port, _text(p[6:6 + token_len]), p[6 + token_len:])
    simple = _SIMPLE.get(cmd)
    if simple is not None:
        return simple()
    if cmd == Cmd.HANDSHAKE:
        return _decode_handshake(p)
    if cmd == Cmd.RESOLVE_HOSTNAME:
        if not p:
            raise IPCRequestError("resolve_hostname: missing hostname")
        return ResolveHostname(_text(p))
    if cmd == Cmd.SET_HOSTNAME:
        return SetHostname(_text(p))
    if cmd == Cmd.SET_VISIBILITY:
        if not p:
            raise IPCRequestError("set_visibility: missing value")
        return SetVisibility(p[0] == 1)
    if cmd == Cmd.SET_TAGS:
        tags = _string_list(p, "set_tags: invalid JSON")
        if len(tags) > 3:
            raise IPCRequestError("set_tags: maximum 3 tags allowed")
        return SetTags(tuple(tags))
    if cmd == Cmd.SET_WEBHOOK:
        return SetWebhook(_text(p))
    if cmd == Cmd.NETWORK:
        return _decode_network(p)
    if cmd == Cmd.MANAGED:
        return _decode_managed(p)
    if cmd == Cmd.PREFER_DIRECT:
        if len(p) != 4:
            raise IPCRequestError("prefer_direct: payload must be 4 bytes (node_id)")
        return PreferDirect(_U32.unpack(p)[0])
    verb = _JSON_VERBS.get(cmd)  # type: ignore[call-overload]  # IntEnum keys match plain ints
    if verb is not None:
        return JsonRequest(Cmd(cmd), _json_object(p, verb))
    raise IPCRequestError(f"unknown command: 0x{cmd:02X}")


_SIMPLE: dict[int, type[Request]] = {
    Cmd.INFO: Info, Cmd.HEALTH: Health, Cmd.DEREGISTER: Deregister, Cmd.ROTATE_KEY: RotateKey, Cmd.CANCEL: Cancel,
}


def _decode_handshake(p: bytes) -> Handshake:
    if not p:
        raise IPCRequestError("handshake: missing sub-command")
    sub, rest = p[0], p[1:]
    if sub in (HandshakeSub.PENDING, HandshakeSub.TRUSTED):
        return Handshake(HandshakeSub(sub))
    names = {HandshakeSub.SEND: "request", HandshakeSub.APPROVE: "approve", HandshakeSub.REJECT: "reject",
             HandshakeSub.REVOKE: "revoke"}
    if sub in names:
        if len(rest) < 4:
            raise IPCRequestError(f"handshake {names[HandshakeSub(sub)]}: missing node_id")
        text = _text(rest[4:]) if sub in (HandshakeSub.SEND, HandshakeSub.REJECT) else ""
        return Handshake(HandshakeSub(sub), _U32.unpack_from(rest)[0], text)
    if sub == HandshakeSub.WAIT:
        if len(rest) < 8:
            raise IPCRequestError("handshake wait: payload must be [nodeID(4)][timeoutMs(4)]")
        node_id, timeout_ms = struct.unpack_from(">II", rest)
        return Handshake(HandshakeSub.WAIT, node_id, timeout_ms=timeout_ms)
    raise IPCRequestError(f"handshake: unknown sub-command 0x{sub:02X}")


def _decode_network(p: bytes) -> Network:
    if not p:
        raise IPCRequestError("network: missing sub-command")
    sub, rest = p[0], p[1:]
    if sub in (NetworkSub.LIST, NetworkSub.POLL_INVITES):
        return Network(NetworkSub(sub))
    needs = {
        NetworkSub.JOIN: (2, "network join: missing network_id"),
        NetworkSub.LEAVE: (2, "network leave: missing network_id"),
        NetworkSub.MEMBERS: (2, "network members: missing network_id"),
        NetworkSub.INVITE: (6, "network invite: missing network_id or target_node_id"),
        NetworkSub.RESPOND_INVITE: (3, "network respond-invite: missing network_id or accept flag"),
    }
    if sub not in needs:
        raise IPCRequestError(f"network: unknown sub-command 0x{sub:02X}")
    minimum, message = needs[NetworkSub(sub)]
    if len(rest) < minimum:
        raise IPCRequestError(message)
    network_id = _U16.unpack_from(rest)[0]
    if sub == NetworkSub.JOIN:
        return Network(NetworkSub.JOIN, network_id, token=_text(rest[2:]))
    if sub == NetworkSub.INVITE:
        return Network(NetworkSub.INVITE, network_id, node_id=_U32.unpack_from(rest, 2)[0])
    if sub == NetworkSub.RESPOND_INVITE:
        return Network(NetworkSub.RESPOND_INVITE, network_id, accept=rest[2] == 1)
    return Network(NetworkSub(sub), network_id)


def _decode_managed(p: bytes) -> Managed:
    if not p:
        raise IPCRequestError("managed: missing sub-command")
    sub, rest = p[0], p[1:]
    if sub in (ManagedSub.STATUS, ManagedSub.CYCLE, ManagedSub.RECONCILE):
        return Managed(ManagedSub(sub), _U16.unpack_from(rest)[0] if len(rest) >= 2 else None)
    if sub == ManagedSub.POLICY:
        if len(rest) < 3:
            raise IPCRequestError("managed policy: missing sub-sub-command and network_id")
        action, network_id = rest[0], _U16.unpack_from(rest, 1)[0]
        if action == 0:
            return Managed(ManagedSub.POLICY, network_id, 0)
        if action != 1:
            raise IPCRequestError(f"managed policy: unknown action 0x{action:02X}")
        if len(rest) < 5:
            raise IPCRequestError("managed policy set: missing token length")
        token_len = _U16.unpack_from(rest, 3)[0]
        if len(rest) < 5 + token_len:
            raise IPCRequestError("managed policy set: truncated token")
        return Managed(ManagedSub.POLICY, network_id, 1, token=_text(rest[5:5 + token_len]), body=rest[5 + token_len:])
    if sub == ManagedSub.MEMBER_TAGS:
        if len(rest) < 7:
            raise IPCRequestError("managed member-tags: missing action, network_id, or node_id")
        action, network_id, node_id = rest[0], _U16.unpack_from(rest, 1)[0], _U32.unpack_from(rest, 3)[0]
        if action == 0:
            return Managed(ManagedSub.MEMBER_TAGS, network_id, 0, node_id=node_id)
        if action != 1:
            raise IPCRequestError(f"managed member-tags: unknown action 0x{action:02X}")
        if len(rest) < 8:
            raise IPCRequestError("managed member-tags set: missing tags JSON")
        tags = _string_list(rest[7:], "member-tags set: invalid tags JSON")
        return Managed(ManagedSub.MEMBER_TAGS, network_id, 1, node_id=node_id, tags=tuple(tags))
    raise IPCRequestError(f"managed: unknown sub-command 0x{sub:02X}")


# --- replies and pushes (daemon -> client) -------------------------------------------------------

class Reply:
    cmd: ClassVar[Cmd]

    def payload(self) -> bytes:
        return b""

    def encode(self) -> bytes:
        return encode_frame(self.cmd, self.payload())


@dataclass(frozen=True, slots=True)
class PortReply(Reply):
    """BindOK or UnbindOK: ``[port u16]``."""

    cmd: Cmd  # type: ignore[misc]
    port: int

    def payload(self) -> bytes:
        return _U16.pack(self.port)


@dataclass(frozen=True, slots=True)
class ConnReply(Reply):
    """DialOK, or CloseOK (also pushed when the remote end closes): ``[conn_id u32]``."""

    cmd: Cmd  # type: ignore[misc]
    conn_id: int

    def payload(self) -> bytes:
        return _U32.pack(self.conn_id)


@dataclass(frozen=True, slots=True)
class Accept(Reply):
    """Pushed once per inbound connection on a bound port."""

    cmd: ClassVar[Cmd] = Cmd.ACCEPT
    local_port: int
    conn_id: int
    remote: Addr
    remote_port: int

    def payload(self) -> bytes:
        return _ACCEPT.pack(self.local_port, self.conn_id, self.remote.network, self.remote.node, self.remote_port)


@dataclass(frozen=True, slots=True)
class Recv(Reply):
    cmd: ClassVar[Cmd] = Cmd.RECV
    conn_id: int
    data: bytes

    def payload(self) -> bytes:
        return _U32.pack(self.conn_id) + self.data


@dataclass(frozen=True, slots=True)
class RecvFrom(Reply):
    """An inbound datagram, pushed to every IPC client (clients filter on ``dst_port``)."""

    cmd: ClassVar[Cmd] = Cmd.RECV_FROM
    src: Addr
    src_port: int
    dst_port: int
    data: bytes

    def payload(self) -> bytes:
        return _RECV_FROM.pack(self.src.network, self.src.node, self.src_port, self.dst_port) + self.data


@dataclass(frozen=True, slots=True)
class Error(Reply):
    cmd: ClassVar[Cmd] = Cmd.ERROR
    message: str
    code: int = ERROR_CODE

    def payload(self) -> bytes:
        return _U16.pack(self.code) + _raw(self.message)


@dataclass(frozen=True, slots=True)
class EmptyReply(Reply):
    """SendToOK or BroadcastOK: no payload."""

    cmd: Cmd  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class JsonReply(Reply):
    """Every other ``*_OK``: a JSON body (info, health, handshake, registry-backed verbs)."""

    cmd: Cmd  # type: ignore[misc]
    body: Any

    def payload(self) -> bytes:
        return gojson.dumps(self.body)


AnyReply = Union[PortReply, ConnReply, Accept, Recv, RecvFrom, Error, EmptyReply, JsonReply]

_PORT_REPLIES = frozenset({Cmd.BIND_OK, Cmd.UNBIND_OK})
_CONN_REPLIES = frozenset({Cmd.DIAL_OK, Cmd.CLOSE_OK})
_EMPTY_REPLIES = frozenset({Cmd.SEND_TO_OK, Cmd.BROADCAST_OK})
JSON_REPLIES = frozenset({
    Cmd.INFO_OK, Cmd.HEALTH_OK, Cmd.HANDSHAKE_OK, Cmd.RESOLVE_HOSTNAME_OK, Cmd.SET_HOSTNAME_OK,
    Cmd.SET_VISIBILITY_OK, Cmd.DEREGISTER_OK, Cmd.SET_TAGS_OK, Cmd.SET_WEBHOOK_OK, Cmd.NETWORK_OK, Cmd.MANAGED_OK,
    Cmd.ROTATE_KEY_OK, Cmd.PREFER_DIRECT_OK, Cmd.SUBMIT_BADGE_OK, Cmd.ENROLL_RECOVERY_OK, Cmd.SIGN_ENVELOPE_OK,
    Cmd.VERIFY_ENVELOPE_OK,
})
OK_FOR = {cmd: Cmd[cmd.name + "_OK"] for cmd in Cmd if cmd.name + "_OK" in Cmd.__members__ and cmd != Cmd.SEND_TO}
"""Request cmd -> the cmd of its success reply (Bind -> BindOK, ...); SendToConfirm -> SendToOK."""
OK_FOR[Cmd.SEND_TO_CONFIRM] = Cmd.SEND_TO_OK


def encode_reply(reply: Reply) -> bytes:
    return reply.encode()


def error_frame(message: str) -> bytes:
    """A whole 0x0A frame with the generic code 1, as the official daemon writes it."""
    return Error(message).encode()


def decode_reply(frame: Frame) -> AnyReply:
    """Parse a daemon reply or push; raises ``IPCMessageError`` if it is malformed or unknown."""
    cmd, p = frame.cmd, frame.payload
    try:
        if cmd in _PORT_REPLIES:
            return PortReply(Cmd(cmd), _U16.unpack(p)[0])
        if cmd in _CONN_REPLIES:
            return ConnReply(Cmd(cmd), _U32.unpack(p)[0])
        if cmd == Cmd.ACCEPT:
            local_port, conn_id, network, node, remote_port = _ACCEPT.unpack(p)
            return Accept(local_port, conn_id, Addr(network, node), remote_port)
        if cmd == Cmd.RECV:
            return Recv(_U32.unpack_from(p)[0], p[4:])
        if cmd == Cmd.RECV_FROM:
            network, node, src_port, dst_port = _RECV_FROM.unpack_from(p)
            return RecvFrom(Addr(network, node), src_port, dst_port, p[_RECV_FROM.size:])
        if cmd == Cmd.ERROR:
            return Error(_text(p[2:]), _U16.unpack_from(p)[0])
        if cmd in _EMPTY_REPLIES:
            return EmptyReply(Cmd(cmd))
        if cmd in JSON_REPLIES:
            return JsonReply(Cmd(cmd), json.loads(p))
    except (struct.error, ValueError, UnicodeDecodeError) as exc:
        raise IPCMessageError(f"malformed IPC reply 0x{cmd:02X} ({len(p)} payload bytes): {exc}") from None
    raise IPCMessageError(f"unknown IPC reply command 0x{cmd:02X}; the official driver drops it silently")
