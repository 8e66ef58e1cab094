"""The compat link: one long-lived WebSocket to the beacon (``-compat-beacon wss://…/v1/compat``).

As the official 1.18 daemon (``pkg/daemon/transport/wss``): subprotocol ``pilot.v1``; the server sends
``{"type":"auth_challenge","nonce","ts"}``, we answer ``{"type":"auth_reply","node_id","public_key","sig"}``
(Ed25519 over ``compat_auth:<node>:<ts>:<nonce>``) and wait for ``{"type":"auth_ok"}``. Then every binary
message is one datagram we would have sent to the beacon over UDP (discover 0x01, relay 0x05) and every
binary message received is one the beacon would have sent us (0x02, 0x06). A ping every 30 s (10 s to
answer); a lost connection is re-dialled with exponential backoff. It quacks like ``UDPSocket`` for the
daemon: ``send(data, endpoint)`` where the only endpoint is ``COMPAT_ADDR`` (the beacon).

Messages sent while the daemon handles one event (a batch of received messages, an IPC read) are framed at
once and written together by ``flush()`` at the end of it (or on the next loop pass): one TLS write and one
TCP send for a burst of segments instead of one per datagram, the order kept.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import ssl
import time
from collections.abc import Callable
from typing import Any

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidHandshake, InvalidURI, ProtocolError
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.uri import parse_uri

from . import proxy as proxy_io
from ..proto import proxy as px
from .registry_client import check_fingerprint

log = logging.getLogger("pilot_daemon.compat")

SUBPROTOCOL = "pilot.v1"
COMPAT_ADDR = ("0.0.0.0", 0)   # the source of every message from the link: the beacon
PING_INTERVAL, PING_TIMEOUT = 30.0, 10.0
DIAL_TIMEOUT = 10.0
BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0
MAX_MESSAGE = 64 * 1024 + 64
SEND_BUFFER_LIMIT = 4 << 20    # beyond this, datagrams are dropped (UDP semantics) instead of queued


class CompatError(Exception):
    """The beacon refused the WebSocket or its authentication; the message says which and why."""


class CompatLink:
    direct = False   # reaches only the beacon: peers are always relayed

    def __init__(self, url: str, *, tls: ssl.SSLContext, fingerprint: str, proxies: proxy_io.Proxies | None,
                 sign: Callable[[str], str], public_key: str, on_datagram: Callable[[bytes, Any], None],
                 on_batch_end: Callable[[], None]) -> None:
        try:
            self.uri = parse_uri(url)
        except InvalidURI as exc:
            raise ValueError(f"-compat-beacon {url!r}: {exc} (use wss://HOST[:PORT]/v1/compat)") from None
        if not self.uri.secure:
            raise ValueError(f"-compat-beacon {url!r}: use wss:// (the compat transport is TLS on 443)")
        self.url, self.tls, self.fingerprint, self.proxies = url, tls, fingerprint, proxies
        self.sign, self.public_key = sign, public_key
        self.on_datagram, self.on_batch_end = on_datagram, on_batch_end
        self.node_id = 0
        self.state = "down"          # down | connecting | up
        self.last_error = ""
        self.failures = 0            # consecutive failed sessions
        self.connects = 0
        self.sent = self.received = self.dropped = 0
        self._ws: ClientProtocol | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._up = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._pong: asyncio.Future | None = None
        self._out: list[bytes] = []   # framed messages waiting for flush()

    # -- the UDPSocket face ---------------------------------------------------------------------
    @property
    def local(self) -> tuple[str, int]:
        return COMPAT_ADDR

    def send(self, data: bytes, endpoint: Any) -> None:
        ws, writer = self._ws, self._writer
        if tuple(endpoint or ()) != COMPAT_ADDR or self.state != "up" or ws is None or writer is None:
            self.dropped += 1       # no direct paths in compat; nothing to send on while reconnecting
            return
        if not self._out:
            if writer.transport.get_write_buffer_size() > SEND_BUFFER_LIMIT:
                self.dropped += 1
                return
            asyncio.get_running_loop().call_soon(self.flush)
        ws.send_binary(data)
        self._out += ws.data_to_send()
        self.sent += 1

    def flush(self) -> None:
        """Write the messages queued by ``send`` (one write for all of them)."""
        out, self._out = self._out, []
        writer = self._writer
        if out and writer is not None and not writer.is_closing():
            writer.write(b"".join(out))

    def close(self) -> None:
        log.info("compat link closed", extra={"sent": self.sent, "received": self.received, "dropped": self.dropped,
                                              "connects": self.connects})
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._teardown()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self, node_id: int) -> None:
        """Connect (and keep reconnecting) as ``node_id``; a new id re-authenticates."""
        if node_id != self.node_id and self._task is not None:
            self.close()
        self.node_id = node_id
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def wait_up(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._up.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return self._up.is_set()

    def describe(self) -> str:
        host, port = self.uri.host, self.uri.port
        via = self.proxies.describe(host, port) if self.proxies else "direct"
        return f"{self.url} via {via}" if via != "direct" else self.url

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            started = time.monotonic()
            try:
                await self._session()
                reason = "the beacon closed the connection"
            except asyncio.CancelledError:
                raise
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ssl.SSLError, CompatError,
                    px.ProxyRefused, InvalidHandshake, ProtocolError) as exc:
                reason = _reason(exc)
            finally:
                self._teardown()
            if time.monotonic() - started > 2 * PING_INTERVAL:
                backoff = BACKOFF_MIN     # a long healthy session: reconnect quickly
            self.failures += 1
            self.last_error = reason
            delay = backoff * (0.8 + 0.4 * random.random())
            log.warning("compat link down, reconnecting", extra={"beacon": self.url, "reason": reason,
                                                                 "retry_in_s": round(delay, 2)})
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _session(self) -> None:
        self.state = "connecting"
        host, port = self.uri.host, self.uri.port
        reader, writer = await proxy_io.dial(host, port, tls=self.tls, proxies=self.proxies, timeout=DIAL_TIMEOUT)
        self._writer = writer
        if self.fingerprint:
            check_fingerprint(writer, self.fingerprint, f"compat beacon {host}:{port}")
        ws = self._ws = ClientProtocol(self.uri, subprotocols=[SUBPROTOCOL], max_size=MAX_MESSAGE)
        ws.send_request(ws.connect())
        writer.writelines(ws.data_to_send())
        pinger = asyncio.get_running_loop().create_task(self._ping_loop(ws, writer))
        try:
            await self._read_loop(reader, writer, ws)
        finally:
            pinger.cancel()

    async def _read_loop(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         ws: ClientProtocol) -> None:
        fragments: list[bytes] = []
        opcode = Opcode.BINARY
        deadline = DIAL_TIMEOUT   # for the upgrade and the auth exchange; then the pings watch the link
        while True:
            data = await (asyncio.wait_for(reader.read(1 << 16), deadline) if self.state != "up"
                          else reader.read(1 << 16))
            if data:
                ws.receive_data(data)
            else:
                ws.receive_eof()
            delivered = False
            for event in ws.events_received():
                if isinstance(event, Response):
                    if ws.handshake_exc is not None:
                        raise CompatError(f"WebSocket upgrade refused: {ws.handshake_exc}"
                                          f" {event.body.decode(errors='replace').strip()[:200]}".rstrip())
                    continue
                frame: Frame = event
                if frame.opcode is Opcode.PONG:
                    if self._pong is not None and not self._pong.done():
                        self._pong.set_result(None)
                    continue
                if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
                    opcode, fragments = frame.opcode, [frame.data]
                elif frame.opcode is Opcode.CONT and fragments:
                    fragments.append(frame.data)
                else:
                    continue
                if not frame.fin:
                    continue
                message, fragments = b"".join(fragments), []
                if self.state != "up":
                    self._on_auth_message(opcode, message, ws)
                elif opcode is Opcode.BINARY:
                    self.received += 1
                    delivered = True
                    self.on_datagram(message, COMPAT_ADDR)
            chunks = ws.data_to_send()
            if chunks and not writer.is_closing():
                writer.writelines(chunks)
            if delivered:
                self.on_batch_end()
            if ws.state is State.CLOSED or not data:
                if ws.close_rcvd is not None:
                    raise CompatError(f"the beacon closed the WebSocket: {ws.close_rcvd}")
                return

    def _on_auth_message(self, opcode: Opcode, message: bytes, ws: ClientProtocol) -> None:
        try:
            msg = json.loads(message) if opcode is Opcode.TEXT else None
        except ValueError:
            msg = None
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "auth_challenge" and isinstance(msg.get("nonce"), str) and isinstance(msg.get("ts"), int):
            text = f"compat_auth:{self.node_id}:{msg['ts']}:{msg['nonce']}"
            reply = {"type": "auth_reply", "node_id": self.node_id, "public_key": self.public_key,
                     "sig": self.sign(text)}
            ws.send_text(json.dumps(reply, separators=(",", ":")).encode())
        elif kind == "auth_ok":
            self.state = "up"
            self.failures = 0
            self.connects += 1
            self.last_error = ""
            self._up.set()
            log.info("compat mode tunnel up", extra={"node_id": self.node_id, "beacon": self.url,
                                                     "via": self.describe()})
        else:
            body = message[:300].decode(errors="replace")
            raise CompatError(f"compat auth rejected: {body} (is node {self.node_id} registered with this "
                              f"rendezvous, with this key?)")

    async def _ping_loop(self, ws: ClientProtocol, writer: asyncio.StreamWriter) -> None:
        while True:
            await asyncio.sleep(PING_INTERVAL)
            if self.state != "up":
                continue
            self._pong = asyncio.get_running_loop().create_future()
            ws.send_ping(os.urandom(4))
            writer.writelines(ws.data_to_send())
            try:
                await asyncio.wait_for(self._pong, PING_TIMEOUT)
            except asyncio.TimeoutError:
                log.warning("compat beacon did not answer a ping in time; reconnecting",
                            extra={"timeout_s": PING_TIMEOUT})
                writer.transport.abort()
                return

    def _teardown(self) -> None:
        self.state = "down"
        self._up.clear()
        self._out = []
        writer, self._writer, self._ws = self._writer, None, None
        if writer is not None:
            writer.transport.abort()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out (is TCP/443 to the beacon, or the proxy, reachable?)"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (f"TLS certificate not trusted: {exc.verify_message} (set SSL_CERT_FILE to the CA, "
                "or pin with -registry-fingerprint and -tls-trust pinned)")
    return str(exc) or type(exc).__name__
