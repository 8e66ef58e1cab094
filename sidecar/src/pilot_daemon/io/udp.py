"""The daemon's one UDP socket, shared by tunnel frames and beacon messages."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("pilot_daemon.udp")

Endpoint = tuple[str, int]


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, Any], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.on_datagram(data, addr[:2])
        except Exception:  # a bug for one datagram must not stop the socket
            log.exception("datagram handler failed")

    def error_received(self, exc: Exception) -> None:
        log.debug("udp error: %s", exc)


class UDPSocket:
    """``await UDPSocket.open(host, port, on_datagram)``; ``send(data, endpoint)`` never raises."""

    def __init__(self, transport: asyncio.DatagramTransport) -> None:
        self.transport = transport
        self.sent = 0
        self.send_errors = 0

    @classmethod
    async def open(cls, listen: str, on_datagram: Callable[[bytes, Any], None]) -> "UDPSocket":
        host, port = split_host_port(listen)
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(on_datagram),
                                                           local_addr=(host or "0.0.0.0", port))
        return cls(transport)  # type: ignore[arg-type]

    @property
    def local(self) -> Endpoint:
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port

    def send(self, data: bytes, endpoint: Endpoint) -> None:
        try:
            self.transport.sendto(data, endpoint)
            self.sent += 1
        except (OSError, ValueError, TypeError) as exc:
            self.send_errors += 1
            log.debug("udp send to %s failed: %s", endpoint, exc)

    def close(self) -> None:
        self.transport.close()


def split_host_port(text: str) -> Endpoint:
    """``host:port`` / ``[v6]:port`` / ``:port`` -> (host, port); raises ValueError on garbage."""
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"address {text!r} has no port (use host:port)")
    return host.strip("[]"), int(port)


def join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
