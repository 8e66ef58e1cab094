"""The IPC Unix socket, byte-compatible with the official daemon's.

Created atomically like the official daemon: bind inside a fresh 0700 temp dir next to the target, chmod
0600, rename into place, so the socket's appearance means "ready". Peers with another UID are refused
(SO_PEERCRED). Each client gets its own ``FrameDecoder``; Send/SendTo/Cancel run inline in arrival order
and are never answered; every other request runs as a task and gets exactly one reply (a 0x0A error
when the handler fails). An oversize frame drops the client, as the official daemon does.
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
READ_CHUNK = 256 << 10


class Handler(Protocol):
    def handle_inline(self, client: "Client", request: ipc.AnyRequest) -> None: ...
    async def handle(self, client: "Client", request: ipc.AnyRequest) -> bytes | None: ...
    def client_gone(self, client: "Client") -> None: ...


class SocketInUse(OSError):
    """Another live daemon already serves this socket path."""


class Client:
    """One connected IPC client; ``push()`` writes a whole frame (reply or unsolicited push)."""

    _ids = itertools.count(1)

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.id = next(self._ids)
        self.writer = writer
        self.tasks: set[asyncio.Task] = set()
        self.closed = False
        self.readable = asyncio.Event()
        self.readable.set()
        self._out: list[bytes] = []

    def pause(self) -> None:
        """Stop reading this client's requests (a stream it writes to is full)."""
        self.readable.clear()

    def resume(self) -> None:
        self.readable.set()

    def push(self, frame: bytes) -> None:
        """Queue a frame; frames queued in one loop iteration leave in one write (fewer syscalls)."""
        if self.closed:
            return
        if not self._out:
            asyncio.get_running_loop().call_soon(self._write_out)
        self._out.append(frame)

    def _write_out(self) -> None:
        out, self._out = self._out, []
        if self.closed or not out:
            return
        transport = self.writer.transport
        if transport.is_closing():
            self.closed = True
            return
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("ipc client %d is not reading; dropping it", self.id)
            self.close()
            return
        self.writer.write(b"".join(out))

    async def drain(self) -> None:
        if not self.closed:
            with contextlib.suppress(ConnectionError, OSError):
                await self.writer.drain()

    def close(self) -> None:
        self.closed = True
        self.readable.set()
        self.writer.close()


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
        self.refused = 0

    async def start(self) -> None:
        sock = bind_atomically(self.path, 0o600 if self.allowed_uids == {os.getuid()} else 0o666)
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=READ_CHUNK)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for client in list(self.clients.values()):
            client.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        refused_uid = uid is not None and self.allowed_uids is not None and uid not in self.allowed_uids
        if refused_uid or len(self.clients) >= self.max_clients:
            self.refused += 1
            log.warning("ipc connection refused", extra={"peer_uid": uid, "clients": len(self.clients)})
            writer.close()
            return
        client = Client(writer)
        self.clients[client.id] = client
        decoder = ipc.FrameDecoder()
        try:
            while not client.closed:
                if not client.readable.is_set():
                    await client.readable.wait()
                data = await reader.read(READ_CHUNK)
                if not data:
                    break
                decoder.feed(data)
                for frame in decoder.events():
                    self._dispatch(client, frame)
                await client.drain()
        except IPCFrameTooLarge as exc:
            log.info("ipc client %d dropped: %s", client.id, exc.message)
        except (ConnectionError, OSError):
            pass
        finally:
            del self.clients[client.id]
            for task in list(client.tasks):
                task.cancel()
            client.close()
            try:
                self.handler.client_gone(client)
            except Exception:
                log.exception("cleanup after ipc client %d failed", client.id)

    def _dispatch(self, client: Client, frame: ipc.Frame) -> None:
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
        if len(client.tasks) >= MAX_INFLIGHT:
            client.push(ipc.error_frame("too many in-flight requests"))
            return
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
