"""asyncio glue: one HTTPS/WebSocket connection on the beacon side of the TLS listener.

HTTP and WebSocket framing come from the sans-I/O `websockets.server.ServerProtocol`; the auth
messages from `compat_proto`; routing from the beacon core. `GET /v1/compat` with subprotocol
`pilot.v1` upgrades; `/healthz` answers 200; anything else gets a 4xx with a one-line reason.
"""
from __future__ import annotations

import asyncio
import http
import logging
import secrets
from typing import TYPE_CHECKING

from websockets.exceptions import InvalidHeader
from websockets.frames import CloseCode, Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from . import compat_proto
from .errors import RendezvousError

if TYPE_CHECKING:
    from .server import RendezvousServer

log = logging.getLogger("pilot_rendezvous.compat")


class CompatSession(asyncio.Protocol):
    """One TLS connection routed to the beacon side. After `auth_ok` it is the node's sink in
    `server.compat_sessions`; a newer session of the same node replaces it."""

    def __init__(self, server: "RendezvousServer", *, auth_timeout: float = compat_proto.AUTH_TIMEOUT,
                 idle_timeout: float = compat_proto.IDLE_TIMEOUT) -> None:
        self.server = server
        self.auth_timeout, self.idle_timeout = auth_timeout, idle_timeout
        self.ws = ServerProtocol(subprotocols=[compat_proto.SUBPROTOCOL], max_size=compat_proto.MAX_DATAGRAM)
        self.transport: asyncio.Transport | None = None
        self.remote: tuple[str, int] = ("?", 0)
        self.challenge: compat_proto.Challenge | None = None
        self.node_id = 0
        self.paused = False
        self.last_activity = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self._fragments: list[bytes] = []
        self._opcode: Opcode = Opcode.BINARY
        self._abort: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.remote = (peer[0], peer[1])
        loop = asyncio.get_running_loop()
        self.last_activity = loop.time()
        self.timer = loop.call_later(self.auth_timeout, self._check_timers)

    def data_received(self, data: bytes) -> None:
        self.last_activity = asyncio.get_running_loop().time()
        self.ws.receive_data(data)
        try:
            for event in self.ws.events_received():
                if isinstance(event, Request):
                    self._on_request(event)
                else:
                    self._on_frame(event)
        except Exception:
            log.exception("compat session failed", extra={"remote": self._where()})
            self.server.errors["compat_internal"] += 1
            self.ws.fail(CloseCode.INTERNAL_ERROR, "internal error")
        self._flush()

    def eof_received(self) -> bool:
        self.ws.receive_eof()
        self._flush()
        return False

    def pause_writing(self) -> None:
        self.paused = True          # datagrams to a slow reader are dropped, as UDP would

    def resume_writing(self) -> None:
        self.paused = False

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self.timer, self._abort):
            if timer is not None:
                timer.cancel()
        sent = self.ws.close_sent
        if sent is not None and sent.code == CloseCode.MESSAGE_TOO_BIG:
            log.info("compat session closed: message over 64 KiB", extra={"node_id": self.node_id})
            self.server.errors["compat_oversize"] += 1
        if self.node_id and self.server.compat_sessions.get(self.node_id) is self:
            del self.server.compat_sessions[self.node_id]
            self.server.beacon.detach(self.node_id)
            log.info("compat node disconnected", extra={"node_id": self.node_id, "remote": self._where()})

    # -- beacon sink ------------------------------------------------------------------------
    def send_datagram(self, payload: bytes) -> bool:
        if self.paused or self.ws.state is not State.OPEN or self.transport.is_closing():
            return False
        self.ws.send_binary(payload)
        self._flush()
        return True

    # -- internals ----------------------------------------------------------------------------
    def _where(self) -> str:
        return f"{self.remote[0]}:{self.remote[1]}"

    def _flush(self) -> None:
        for chunk in self.ws.data_to_send():
            if chunk:
                self.transport.write(chunk)
            else:
                self.transport.close()      # websockets' SEND_EOF: the exchange is over
                return
        if self.ws.close_expected() and not self.transport.is_closing() and self._abort is None:
            # the peer should close the TCP connection first; don't wait for it forever
            self._abort = asyncio.get_running_loop().call_later(2.0, self.transport.abort)

    def _check_timers(self) -> None:
        loop = asyncio.get_running_loop()
        if self.transport.is_closing():
            return
        if not self.node_id:
            log.info("compat session closed: no valid auth_reply in time",
                     extra={"remote": self._where(), "timeout_s": self.auth_timeout})
            self.server.errors["compat_auth_timeout"] += 1
            if self.ws.state is State.OPEN:
                self.ws.send_close(CloseCode.POLICY_VIOLATION, "auth timeout")
                self._flush()
            else:
                self.transport.abort()
            return
        idle = loop.time() - self.last_activity
        if idle >= self.idle_timeout:
            log.info("compat session idle, closing", extra={"node_id": self.node_id, "idle_s": round(idle)})
            self.server.errors["compat_idle"] += 1
            self.ws.send_close(CloseCode.GOING_AWAY, "idle")
            self._flush()
            return
        self.timer = loop.call_later(self.idle_timeout - idle, self._check_timers)

    def _reject(self, status: http.HTTPStatus, reason: str, kind: str) -> None:
        log.info("beacon HTTPS request refused", extra={"remote": self._where(), "status": int(status),
                                                        "reason": reason})
        self.server.errors[kind] += 1
        self.ws.send_response(self.ws.reject(status, reason + "\n"))

    def _on_request(self, request: Request) -> None:
        path = request.path.split("?", 1)[0]
        if path in ("/healthz", "/health"):
            self.ws.send_response(self.ws.reject(http.HTTPStatus.OK, "ok\n"))
            return
        if path != compat_proto.PATH:
            self._reject(http.HTTPStatus.NOT_FOUND, f"not found: the compat bridge is at {compat_proto.PATH}",
                         "http_not_found")
            return
        offered = [p.strip() for value in request.headers.get_all("Sec-WebSocket-Protocol")
                   for p in value.split(",")]
        if "upgrade" in request.headers.get("Connection", "").lower() and compat_proto.SUBPROTOCOL not in offered:
            self._reject(http.HTTPStatus.BAD_REQUEST,
                         f"missing WebSocket subprotocol {compat_proto.SUBPROTOCOL} "
                         f"(send Sec-WebSocket-Protocol: {compat_proto.SUBPROTOCOL}; offered: {offered or 'none'})",
                         "compat_subprotocol")
            return
        response = self.ws.accept(request)
        if response.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            exc = self.ws.handshake_exc
            reason = f"{exc}" if exc is not None and not isinstance(exc, InvalidHeader) else response.reason_phrase
            log.info("WebSocket upgrade refused", extra={"remote": self._where(),
                                                         "status": response.status_code, "reason": reason})
            self.server.errors["compat_upgrade"] += 1
            self.ws.send_response(response)
            return
        self.ws.send_response(response)
        now = self.server.clock()
        self.challenge = compat_proto.Challenge(secrets.token_hex(32), int(now))
        self.ws.send_text(self.challenge.encode().encode())
        log.debug("compat auth_challenge", extra={"remote": self._where(), "text": self.challenge.encode()})

    def _on_frame(self, frame: Frame) -> None:
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._opcode, self._fragments = frame.opcode, [frame.data]
        elif frame.opcode is Opcode.CONT and self._fragments:
            self._fragments.append(frame.data)
        else:
            return                    # ping, pong and close are answered by ServerProtocol
        if not frame.fin:
            if sum(map(len, self._fragments)) > compat_proto.MAX_DATAGRAM:
                self.ws.fail(CloseCode.MESSAGE_TOO_BIG, "message over 64 KiB")
            return
        data, self._fragments = b"".join(self._fragments), []
        if not self.node_id:
            self._on_auth(self._opcode, data)
        elif self._opcode is Opcode.BINARY:
            self.server.deliver(self.server.beacon.compat_datagram(self.node_id, data, self.server.clock()))

    def _on_auth(self, opcode: Opcode, data: bytes) -> None:
        if opcode is not Opcode.TEXT:
            self._auth_failed("expected the auth_reply text message before any datagram")
            return
        store = self.server.registry.store
        log.debug("compat auth_reply", extra={"remote": self._where(), "text": data[:400].decode("utf-8", "replace")})

        def public_key_of(node_id: int) -> str | None:
            rec = store.node(node_id)
            return rec.public_key if rec is not None else None
        try:
            node_id = compat_proto.verify_reply(data.decode("utf-8", "replace"), self.challenge, public_key_of)
        except RendezvousError as err:
            self._auth_failed(str(err))
            return
        self.node_id = node_id
        self.ws.send_text(compat_proto.auth_ok().encode())
        old = self.server.compat_sessions.get(node_id)
        if old is not None and old is not self:
            old.replace()
        self.server.compat_sessions[node_id] = self
        self.server.beacon.attach(node_id, self.remote)
        self.server.registry.last_seen[node_id] = self.server.clock()
        self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(self.idle_timeout, self._check_timers)
        log.info("compat node connected", extra={"node_id": node_id, "remote": self._where()})

    def _auth_failed(self, reason: str) -> None:
        log.warning("compat auth refused", extra={"remote": self._where(), "reason": reason})
        self.server.errors["compat_auth"] += 1
        self.ws.send_text(compat_proto.auth_error(reason).encode())
        self.ws.send_close(CloseCode.POLICY_VIOLATION, "auth failed")

    def replace(self) -> None:
        """A newer session of the same node took over (last writer wins, as the official beacon)."""
        self.node_id = 0
        if self.ws.state is State.OPEN:
            self.ws.send_close(CloseCode.NORMAL_CLOSURE, "replaced by a newer session")
            self._flush()

