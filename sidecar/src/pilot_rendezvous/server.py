"""asyncio glue: the registry on TCP and the beacon on UDP, driving the sans-I/O cores."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .beacon_proto import Beacon
from .registry import Registry
from .registry_proto import MAX_FRAME, RegistryConnection

log = logging.getLogger("pilot_rendezvous.server")

IDLE_TIMEOUT = 300.0     # an idle registry connection is closed after this (as the official server)
FRAME_TIMEOUT = 30.0     # a half-sent frame must complete within this (slow-loris guard)
WRITE_TIMEOUT = 5.0
MAX_CONNECTIONS = 10_000


def parse_hostport(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` -> (host, port); ValueError with the expected form."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: want HOST:PORT, [IPv6]:PORT or :PORT")
    return host.strip("[]") or default_host, int(port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _BeaconProtocol(asyncio.DatagramProtocol):
    def __init__(self, beacon: Beacon, clock: Callable[[], float]) -> None:
        self.beacon, self.clock = beacon, clock
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            replies = self.beacon.datagram_received(data, (addr[0], addr[1]), self.clock())
        except Exception:
            log.exception("beacon datagram failed", extra={"remote": str(addr)})
            return
        for payload, dest in replies:
            self.transport.sendto(payload, dest)

    def error_received(self, exc: Exception) -> None:
        log.debug("beacon socket error: %s", exc)


class RendezvousServer:
    """Owns the listeners. `start()` binds (port 0 picks a free port); `stop()` closes everything."""

    def __init__(self, registry: Registry, beacon: Beacon, *, registry_listen: tuple[str, int] | None,
                 beacon_listen: tuple[str, int] | None, clock: Callable[[], float] = time.time,
                 idle_timeout: float = IDLE_TIMEOUT, frame_timeout: float = FRAME_TIMEOUT,
                 max_frame: int = MAX_FRAME, max_connections: int = MAX_CONNECTIONS) -> None:
        self.registry, self.beacon, self.clock = registry, beacon, clock
        self.registry_listen, self.beacon_listen = registry_listen, beacon_listen
        self.idle_timeout, self.frame_timeout = idle_timeout, frame_timeout
        self.max_frame, self.max_connections = max_frame, max_connections
        self.connections: set[asyncio.Task] = set()
        self._tcp: asyncio.base_events.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._expiry: asyncio.Task | None = None

    @property
    def registry_address(self) -> tuple[str, int] | None:
        return self._tcp.sockets[0].getsockname()[:2] if self._tcp else None

    @property
    def beacon_address(self) -> tuple[str, int] | None:
        return self._udp.get_extra_info("sockname")[:2] if self._udp else None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.registry_listen:
            self._tcp = await asyncio.start_server(self._serve_registry, *self.registry_listen,
                                                   reuse_address=True, limit=self.max_frame + 8)
            log.info("registry listening", extra={"addr": format_hostport(*self.registry_address)})
        if self.beacon_listen:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _BeaconProtocol(self.beacon, self.clock), local_addr=self.beacon_listen)
            log.info("beacon listening", extra={"addr": format_hostport(*self.beacon_address)})
        self._expiry = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._expiry:
            self._expiry.cancel()
        if self._tcp:
            self._tcp.close()
        for task in list(self.connections):
            task.cancel()
        if self.connections:
            await asyncio.gather(*self.connections, return_exceptions=True)
        if self._tcp:
            await self._tcp.wait_closed()
        if self._udp:
            self._udp.close()

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            self.beacon.expire(self.clock())

    async def _serve_registry(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        peer = writer.get_extra_info("peername") or ("?", 0)
        remote = format_hostport(peer[0], peer[1])
        if len(self.connections) >= self.max_connections:
            log.warning("registry connection limit reached, refusing", extra={"remote": remote})
            writer.close()
            return
        self.connections.add(task)
        conn = RegistryConnection(self.registry, remote, max_frame=self.max_frame)
        try:
            while not conn.closed:
                timeout = self.frame_timeout if conn.pending else self.idle_timeout
                data = await asyncio.wait_for(reader.read(65536), timeout)
                if not data:
                    break
                out = conn.receive_data(data, self.clock())
                if out:
                    writer.write(out)
                    await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            if conn.closed:
                log.info("registry connection closed", extra={"remote": remote, "reason": conn.close_reason})
        except (asyncio.TimeoutError, ConnectionError, OSError) as err:
            log.debug("registry connection ended: %r", err, extra={"remote": remote})
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("registry connection failed", extra={"remote": remote})
        finally:
            self.connections.discard(task)
            writer.close()
