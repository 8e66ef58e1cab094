"""asyncio glue: the registry on TCP and the beacon on UDP, driving the sans-I/O cores.

`RendezvousServer` also holds what the TLS front end and the metrics read: the compat sessions
by node id (the beacon core addresses them as `CompatPeer`), request counts by type and outcome,
and error counts by kind."""
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from .beacon_proto import Beacon, CompatPeer, Out
from .registry import Registry
from .registry_proto import MAX_FRAME, RegistryConnection

log = logging.getLogger("pilot_rendezvous.server")

IDLE_TIMEOUT = 300.0     # an idle registry connection is closed after this (as the official server)
FRAME_TIMEOUT = 30.0     # a half-sent frame must complete within this (slow-loris guard)
MAX_CONNECTIONS = 10_000


def parse_hostport(text: str, default_host: str = "0.0.0.0") -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `:port` -> (host, port); ValueError with the expected form."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: want HOST:PORT, [IPv6]:PORT or :PORT")
    return host.strip("[]") or default_host, int(port)


def format_hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class CompatSink(Protocol):
    """What the beacon needs of a compat session: write one datagram as one binary message."""
    def send_datagram(self, payload: bytes) -> bool: ...


class _BeaconProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: "RendezvousServer") -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            replies = self.server.beacon.datagram_received(data, (addr[0], addr[1]), self.server.clock())
        except Exception:
            log.exception("beacon datagram failed", extra={"remote": str(addr)})
            self.server.errors["beacon_internal"] += 1
            return
        self.server.deliver(replies)

    def error_received(self, exc: Exception) -> None:
        log.debug("beacon socket error: %s", exc)


class RegistryProtocol(asyncio.Protocol):
    """One registry TCP connection. A single timer enforces the idle and half-frame deadlines."""

    def __init__(self, server: "RendezvousServer") -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.conn: RegistryConnection | None = None
        self.remote = "?"
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = transport.get_extra_info("peername") or ("?", 0)
        self.remote = format_hostport(peer[0], peer[1])
        if len(self.server.connections) >= self.server.max_connections:
            log.warning("registry connection limit reached, refusing", extra={"remote": self.remote})
            self.server.errors["registry_connection_limit"] += 1
            transport.close()
            return
        self.server.connections.add(self)
        self.conn = RegistryConnection(self.server.registry, self.remote, max_frame=self.server.max_frame)
        self._rearm()

    def _rearm(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.server.frame_timeout if self.conn.pending else self.server.idle_timeout
        self.deadline = loop.time() + timeout
        if self.timer is not None and self.timer.when() > self.deadline:
            self.timer.cancel()
            self.timer = None
        if self.timer is None:
            self.timer = loop.call_at(self.deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() >= self.deadline:
            self.timer = None
            log.debug("registry connection timed out", extra={"remote": self.remote})
            self.server.errors["registry_timeout"] += 1
            self.transport.abort()
        else:
            self.timer = loop.call_at(self.deadline, self._check_deadline)

    def data_received(self, data: bytes) -> None:
        try:
            out = self.conn.receive_data(data, self.server.clock())
        except Exception:
            log.exception("registry connection failed", extra={"remote": self.remote})
            self.server.errors["registry_internal"] += 1
            self.transport.abort()
            return
        if out:
            self.transport.write(out)
        if self.conn.closed:
            log.info("registry connection closed", extra={"remote": self.remote, "reason": self.conn.close_reason})
            self.server.errors["registry_framing"] += 1
            self.transport.close()
        else:
            self._rearm()

    def pause_writing(self) -> None:     # a client that does not read its replies stops being read
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.server.connections.discard(self)


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
        self.connections: set[RegistryProtocol] = set()
        self.compat_sessions: dict[int, CompatSink] = {}
        self.requests: Counter[tuple[str, bool]] = Counter()     # (message type, ok) -> count
        self.errors: Counter[str] = Counter()                    # error kind -> count
        if registry.on_request is None:
            registry.on_request = lambda mtype, ok: self.requests.update(((mtype, ok),))
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
            self._tcp = await loop.create_server(lambda: RegistryProtocol(self), *self.registry_listen,
                                                 reuse_address=True)
            log.info("registry listening", extra={"addr": format_hostport(*self.registry_address)})
        if self.beacon_listen:
            self._udp, _ = await loop.create_datagram_endpoint(
                lambda: _BeaconProtocol(self), local_addr=self.beacon_listen)
            log.info("beacon listening", extra={"addr": format_hostport(*self.beacon_address)})
        self._expiry = asyncio.create_task(self._expire_loop())

    async def stop(self) -> None:
        if self._expiry:
            self._expiry.cancel()
        if self._tcp:
            self._tcp.close()
        for proto in list(self.connections):
            proto.transport.close()
        if self._tcp:
            await self._tcp.wait_closed()
        if self._udp:
            self._udp.close()

    def deliver(self, out: Out) -> None:
        """Send what the beacon core decided: UDP datagrams, or binary messages to compat sessions."""
        for payload, dest in out:
            if isinstance(dest, CompatPeer):
                session = self.compat_sessions.get(dest.node_id)
                if session is None or not session.send_datagram(payload):
                    self.beacon.stats.dropped += 1
            elif self._udp is not None:
                self._udp.sendto(payload, dest)
            else:       # compat-only deployment: a UDP destination cannot be reached
                self.beacon.stats.dropped += 1

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(30)
            self.beacon.expire(self.clock())
