"""The IPC Unix socket, byte-compatible with the official daemon's.

Created atomically like the official daemon: bind inside a fresh 0700 temp dir next to the target, chmod
0600, rename into place, so the socket's appearance means "ready". Peers with another UID are refused
(SO_PEERCRED). Each client is an ``asyncio.Protocol`` with its own ``FrameDecoder``: frames are handled
as they arrive, in order. Send/SendTo/Cancel run inline and are never answered; every other request gets
exactly one reply (a 0x0A error when the handler fails): at once when the handler can answer without
waiting (info, close, a dial whose tunnel is up answers when the peer does), else from a task. An
oversize frame drops the client, as the official daemon does. Reading pauses while a stream the client
writes to is full or while the client does not read its replies.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import socket
import struct
import tempfile
from typing import Protocol

from ..proto import ipc
from ..proto.errors import IPCFrameTooLarge, IPCRequestError

log = logging.getLogger("pilot_daemon.ipc")

MAX_CLIENTS = 1024
MAX_INFLIGHT = 1024
MAX_WRITE_BUFFER = 64 << 20   # a client that stops reading this long is dropped


class Handler(Protocol):
    def handle_inline(self, client: "Client", request: ipc.AnyRequest) -> None: ...
    def handle_now(self, client: "Client", request: ipc.AnyRequest) -> "bytes | object | None": ...
    async def handle(self, client: "Client", request: ipc.AnyRequest) -> bytes | None: ...
    def client_gone(self, client: "Client") -> None: ...


LATER = object()
"""``handle_now`` result: the handler pushes the reply itself when it is ready (e.g. a dial, when the peer answers)."""


class SocketInUse(OSError):
    """Another live daemon already serves this socket path."""


class Client:
    """One connected IPC client; ``push()`` queues a whole frame (reply or unsolicited push).

    Queued frames leave in one write when the server flushes: at the end of the event that produced them
    (an IPC read, a batch of datagrams) or, for anything else, on the next loop pass."""

    _ids = itertools.count(1)

    def __init__(self, transport: asyncio.Transport, server: "IPCServer") -> None:
        self.id = next(self._ids)
        self.transport = transport
        self.server = server
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self._out: list[bytes] = []
        self._paused: set[str] = set()   # why reading is paused: "stream" (a full stream), "write" (not reading)

    def pause(self) -> None:
        """Stop reading this client's requests (a stream it writes to is full)."""
        self._pause("stream", True)

    def resume(self) -> None:
        self._pause("stream", False)

    def _pause(self, why: str, on: bool) -> None:
        was = bool(self._paused)
        if on:
            self._paused.add(why)
        else:
            self._paused.discard(why)
        if self.closed or was == bool(self._paused):
            return
        with contextlib.suppress(RuntimeError):   # transport closing
            if self._paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def push(self, frame: bytes) -> None:
        if self.closed:
            return
        if not self._out:
            self.server.mark_pending(self)
        self._out.append(frame)

    def write_out(self) -> None:
        out, self._out = self._out, []
        if self.closed or not out:
            return
        if self.transport.is_closing():
            self.closed = True
            return
        if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("ipc client %d is not reading; dropping it", self.id)
            self.close()
            return
        self.transport.write(b"".join(out))

    def close(self) -> None:
        self.closed = True
        self.transport.close()


class _Connection(asyncio.Protocol):
    """Glue between one accepted socket and its ``Client``: frames are dispatched as they arrive."""

    def __init__(self, server: "IPCServer") -> None:
        self.server = server
        self.client: Client | None = None
        self.decoder = ipc.FrameDecoder()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = self.server.accept(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None or client.closed:
            return
        try:
            self.decoder.feed(data)
            for frame in self.decoder.events():
                self.server.dispatch(client, frame)
        except IPCFrameTooLarge as exc:
            log.info("ipc client %d dropped: %s", client.id, exc.message)
            client.close()
        self.server.flush()

    def pause_writing(self) -> None:
        if self.client is not None:
            self.client._pause("write", True)

    def resume_writing(self) -> None:
        if self.client is not None:
            self.client._pause("write", False)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.server.gone(self.client)


def peer_uid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None
    return struct.unpack("3i", creds)[1]


def parse_allowed_uids(value: str) -> frozenset[int] | None:
    """-socket-allow-uids: None = any UID; else the UIDs allowed (``same`` = this process's)."""
    value = (value or "same").strip()
    if value == "any":
        return None
    if value == "same":
        return frozenset({os.getuid()})
    try:
        return frozenset({os.getuid(), *(int(u) for u in value.split(",") if u.strip())})
    except ValueError:
        raise ValueError(f"-socket-allow-uids {value!r}: use same, any, or UIDs separated by commas") from None


def bind_atomically(path: str, mode: int = 0o600) -> socket.socket:
    """A listening Unix socket at ``path`` (mode 0600 unless other UIDs may connect) that appears in one rename."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if os.path.exists(path):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
        except OSError:
            pass  # stale socket of a dead daemon: replaced below
        else:
            raise SocketInUse(f"{path} is served by a running daemon; stop it or pass another -socket")
        finally:
            probe.close()
    tmpdir = tempfile.mkdtemp(prefix=".pilot-sock-", dir=directory)  # mode 0700
    tmp = os.path.join(tmpdir, "s")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(tmp)
        os.chmod(tmp, mode)
        sock.listen(256)
        os.replace(tmp, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(tmpdir)
    sock.setblocking(False)
    return sock


class IPCServer:
    def __init__(self, path: str, handler: Handler, *, max_clients: int = MAX_CLIENTS,
                 allowed_uids: frozenset[int] | None = frozenset({os.getuid()})) -> None:
        self.path = path
        self.allowed_uids = allowed_uids
        self.handler = handler
        self.max_clients = max_clients
        self.clients: dict[int, Client] = {}
        self._server: asyncio.base_events.Server | None = None
        self._pending: list[Client] = []
        self.refused = 0

    async def start(self) -> None:
        sock = bind_atomically(self.path, 0o600 if self.allowed_uids == {os.getuid()} else 0o666)
        loop = asyncio.get_running_loop()
        self._server = await loop.create_unix_server(lambda: _Connection(self), sock=sock)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients.values()):
            client.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    # -- connections ------------------------------------------------------------------------------
    def accept(self, transport: asyncio.Transport) -> Client | None:
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        refused_uid = uid is not None and self.allowed_uids is not None and uid not in self.allowed_uids
        if refused_uid or len(self.clients) >= self.max_clients:
            self.refused += 1
            log.warning("ipc connection refused", extra={"peer_uid": uid, "clients": len(self.clients)})
            transport.close()
            return None
        client = Client(transport, self)
        self.clients[client.id] = client
        return client

    def gone(self, client: Client) -> None:
        self.clients.pop(client.id, None)
        for task in list(client.tasks):
            task.cancel()
        client.closed = True
        try:
            self.handler.client_gone(client)
        except Exception:
            log.exception("cleanup after ipc client %d failed", client.id)

    # -- output -------------------------------------------------------------------------------------
    def mark_pending(self, client: Client) -> None:
        if not self._pending:
            asyncio.get_running_loop().call_soon(self.flush)
        self._pending.append(client)

    def flush(self) -> None:
        """Write every client's queued frames (one write per client)."""
        pending, self._pending = self._pending, []
        for client in pending:
            client.write_out()

    # -- requests -----------------------------------------------------------------------------------
    def dispatch(self, client: Client, frame: ipc.Frame) -> None:
        try:
            request = ipc.decode_request(frame)
        except IPCRequestError as exc:
            if not exc.silent:
                client.push(ipc.error_frame(exc.message))
            return
        if log.isEnabledFor(logging.DEBUG):
            log.debug("ipc request", extra={"client": client.id, "cmd": f"0x{frame.cmd:02X}",
                                            "request": type(request).__name__, "bytes": len(frame.payload)})
        if request.cmd in ipc.NO_REPLY:
            try:
                self.handler.handle_inline(client, request)
            except IPCRequestError:
                pass  # never answered, as in the official daemon
            except Exception:
                log.exception("ipc %s failed", type(request).__name__)
            return
        try:   # the fast path: answered now, or later by the handler itself, without a task
            now = self.handler.handle_now(client, request)
        except IPCRequestError as exc:
            client.push(ipc.error_frame(exc.message))
            return
        except Exception as exc:
            log.exception("ipc %s failed", type(request).__name__)
            client.push(ipc.error_frame(f"internal error: {exc}"))
            return
        if isinstance(now, bytes):
            client.push(now)
        elif now is LATER:
            return
        elif len(client.tasks) >= MAX_INFLIGHT:
            client.push(ipc.error_frame("too many in-flight requests"))
        else:
            task = asyncio.get_running_loop().create_task(self._answer(client, request))
            client.tasks.add(task)
            task.add_done_callback(client.tasks.discard)

    async def _answer(self, client: Client, request: ipc.AnyRequest) -> None:
        try:
            reply = await self.handler.handle(client, request)
        except IPCRequestError as exc:
            reply = ipc.error_frame(exc.message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("ipc %s failed", type(request).__name__)
            reply = ipc.error_frame(f"internal error: {exc}")
        if reply is not None:
            client.push(reply)
