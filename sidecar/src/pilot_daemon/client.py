"""A small blocking client for a pilot-daemon's IPC socket (ours or the official one), on the sans-I/O codec.

    with Client("/shared/pilot.sock") as c:
        me = c.info()["address"]
        conn = c.dial(Addr.parse("0:0000.0000.0002"), 7)     # port 7: the echo service
        c.send(conn, b"hello"); print(c.recv(conn))

For applications the official Python SDK (`pilotprotocol`) is the full client; this one serves scripts,
the demo and tests. One request at a time; pushes (accepts, data, closes) that arrive in between are
queued and handed out by `next_push()` / `recv()`.
"""
from __future__ import annotations

import collections
import socket
import time
from typing import Any

from .proto import ipc
from .proto.addr import Addr


class ClientError(RuntimeError):
    """The daemon answered with an error frame (its text is the message)."""


class Client:
    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(path))
        self.decoder = ipc.FrameDecoder()
        self.pushes: collections.deque = collections.deque()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close_socket()

    def close_socket(self) -> None:
        self.sock.close()

    # -- frames ---------------------------------------------------------------------------
    def _next_frame(self, deadline: float):
        while True:
            for frame in self.decoder.events():
                return ipc.decode_reply(frame)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no answer from the daemon")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the IPC connection")
            self.decoder.feed(data)

    def request(self, req: ipc.Request, expect: ipc.Cmd, timeout: float = 10.0):
        self.sock.sendall(req.encode())
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next_frame(deadline)
            if isinstance(reply, ipc.Error):
                raise ClientError(reply.message)
            if reply.cmd == expect:
                return reply
            self.pushes.append(reply)

    def next_push(self, timeout: float = 10.0):
        if self.pushes:
            return self.pushes.popleft()
        return self._next_frame(time.monotonic() + timeout)

    # -- verbs ----------------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        return self.request(ipc.Info(), ipc.Cmd.INFO_OK).body

    def bind(self, port: int) -> int:
        return self.request(ipc.Bind(port), ipc.Cmd.BIND_OK).port

    def dial(self, addr: Addr, port: int, timeout: float = 30.0) -> int:
        return self.request(ipc.Dial(addr, port), ipc.Cmd.DIAL_OK, timeout).conn_id

    def send(self, conn_id: int, data: bytes) -> None:
        self.sock.sendall(ipc.Send(conn_id, data).encode())   # no reply, as upstream

    def recv(self, conn_id: int, size: int = 1, timeout: float = 10.0) -> bytes:
        """At least ``size`` bytes of connection ``conn_id`` (other pushes stay queued)."""
        got, keep, deadline = b"", collections.deque(), time.monotonic() + timeout
        while len(got) < size:
            push = self.next_push(max(0.0, deadline - time.monotonic()))
            if isinstance(push, ipc.Recv) and push.conn_id == conn_id:
                got += push.data
            else:
                keep.append(push)
        self.pushes.extendleft(reversed(keep))
        return got

    def accept(self, timeout: float = 30.0) -> ipc.Accept:
        keep, deadline = collections.deque(), time.monotonic() + timeout
        while True:
            push = self.next_push(max(0.0, deadline - time.monotonic()))
            if isinstance(push, ipc.Accept):
                self.pushes.extendleft(reversed(keep))
                return push
            keep.append(push)

    def close(self, conn_id: int) -> None:
        self.request(ipc.Close(conn_id), ipc.Cmd.CLOSE_OK)
