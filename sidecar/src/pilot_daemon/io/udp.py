"""The daemon's one UDP socket, shared by tunnel frames and beacon messages.

Reads are drained in batches on each readiness event (up to ``BATCH`` datagrams), then ``on_batch_end``
runs once, so a burst of segments costs one pass of the stream machinery instead of one per datagram. A lone
datagram (the kernel holds nothing after it: FIONREAD) ends the batch at once: the ioctl is cheaper than the
read that would otherwise find the socket empty and raise BlockingIOError (on a cold CPU ~50 vs ~80 us, each
measured alone); the loop is level-triggered, so nothing is left behind.
Sends go straight to the non-blocking socket; a full send buffer drops the datagram (UDP semantics).
"""
from __future__ import annotations

import asyncio
import fcntl
import logging
import socket
import termios
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pilot_daemon.udp")

Endpoint = tuple[str, int]
BATCH = 128
BUFFER_BYTES = 4 << 20
MAX_DATAGRAM = 65535


class UDPSocket:
    """``await UDPSocket.open(listen, on_datagram, on_batch_end)``; ``send(data, endpoint)`` never raises."""

    direct = True   # reaches peers directly (a CompatLink reaches only the beacon)

    def __init__(self, sock: socket.socket, on_datagram: Callable[[bytes, Any], None],
                 on_batch_end: Callable[[], None]) -> None:
        self.sock = sock
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.sent = 0
        self.send_errors = 0
        self._pending = bytearray(4)   # FIONREAD's answer
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    async def open(cls, listen: str, on_datagram: Callable[[bytes, Any], None],
                   on_batch_end: Callable[[], None] = lambda: None) -> "UDPSocket":
        host, port = split_host_port(listen)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, BUFFER_BYTES)
                except OSError:
                    pass
            sock.bind((host or ("::" if family == socket.AF_INET6 else "0.0.0.0"), port))
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return cls(sock, on_datagram, on_batch_end)

    @property
    def local(self) -> Endpoint:
        host, port = self.sock.getsockname()[:2]
        return host, port

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        handle = self.on_datagram
        first = True
        for _ in range(BATCH):
            try:
                data, addr = recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:   # e.g. ICMP port unreachable surfacing as ECONNREFUSED
                log.debug("udp receive error: %s", exc)
                continue
            try:
                handle(data, addr[:2])
            except Exception:  # a bug for one datagram must not stop the socket
                log.exception("datagram handler failed")
            if first:
                first = False
                if not self._more_queued():
                    break
        try:
            self.on_batch_end()
        except Exception:
            log.exception("datagram batch handler failed")

    def _more_queued(self) -> bool:
        try:
            fcntl.ioctl(self.sock, termios.FIONREAD, self._pending)
        except OSError:
            return True    # unknown: read on until the socket says it is empty
        return self._pending != b"\0\0\0\0"

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        try:
            self.sock.sendto(data, endpoint)
            self.sent += 1
        except (OSError, ValueError, TypeError) as exc:
            self.send_errors += 1
            log.debug("udp send to %s failed: %s", endpoint, exc)

    def flush(self) -> None:
        """Nothing is held back: each datagram left in ``send`` (the link interface; see CompatLink.flush)."""

    def close(self) -> None:
        try:
            self._loop.remove_reader(self.sock.fileno())
        except (ValueError, OSError):
            pass
        self.sock.close()


def split_host_port(text: str) -> Endpoint:
    """``host:port`` / ``[v6]:port`` / ``:port`` -> (host, port); raises ValueError on garbage."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"address {text!r} has no port (use host:port)")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
