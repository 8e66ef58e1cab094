"""asyncio glue: the single TLS listener (443 in production) in front of the registry and the
compat bridge, routed by the ClientHello's server name.

  SNI == -registry-sni  -> the registry stream (`[u32 len][JSON]`, as on the plain TCP port)
  SNI == -beacon-sni    -> HTTPS/WebSocket (`/v1/compat`, `/healthz`)
  no or another SNI     -> the first bytes decide: an HTTP method goes to the beacon side,
                           anything else to the registry (clients that dial an IP send no SNI)
The official 1.18 daemon sends SNI = the host name of `-registry` / `-compat-beacon`, no ALPN.
Certificate files are polled; a changed pair is loaded for new connections, a bad one is logged
and the previous certificate stays in service.
"""
from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass

from .compat_server import CompatSession
from .server import RegistryProtocol, RendezvousServer, format_hostport
from .tlsfiles import CertInfo, TLSConfigError, TLSFiles

log = logging.getLogger("pilot_rendezvous.tls")

HANDSHAKE_TIMEOUT = 10.0
RELOAD_INTERVAL = 5.0
REGISTRY, BEACON = "registry", "beacon"
HTTP_METHODS = (b"GET ", b"HEAD", b"POST", b"PUT ", b"OPTI", b"DELE", b"PATC", b"CONN", b"TRAC")


@dataclass
class TLSSettings:
    listen: tuple[str, int]
    files: TLSFiles
    registry_sni: str
    beacon_sni: str
    handshake_timeout: float = HANDSHAKE_TIMEOUT
    reload_interval: float = RELOAD_INTERVAL


def route_for(server_name: str | None, registry_sni: str, beacon_sni: str) -> str | None:
    name = (server_name or "").lower().rstrip(".")
    if name and name == registry_sni.lower():
        return REGISTRY
    if name and name == beacon_sni.lower():
        return BEACON
    return None


def sniff_route(first: bytes) -> str:
    return BEACON if first[:4] in HTTP_METHODS else REGISTRY


class _Router(asyncio.Protocol):
    """Application protocol during the TLS handshake; hands the connection to its final protocol."""

    def __init__(self, frontend: "TLSFrontend") -> None:
        self.frontend = frontend
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.timer: asyncio.TimerHandle | None = None

    def start(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        route = getattr(transport.get_extra_info("ssl_object"), "pilot_route", None)
        if route is not None:
            self._hand_over(route)
        else:   # decided by the first bytes (data may already be buffered)
            self.timer = asyncio.get_running_loop().call_later(self.frontend.settings.handshake_timeout,
                                                               transport.abort)
            self._maybe_sniff()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.transport is not None:
            self._maybe_sniff()

    def _maybe_sniff(self) -> None:
        if len(self.buffer) >= 4:
            self._hand_over(sniff_route(bytes(self.buffer)))

    def _hand_over(self, route: str) -> None:
        if self.timer is not None:
            self.timer.cancel()
        server = self.frontend.server
        proto: asyncio.Protocol = RegistryProtocol(server) if route == REGISTRY else CompatSession(server)
        self.frontend.routed[route] += 1
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if self.buffer and not self.transport.is_closing():
            proto.data_received(bytes(self.buffer))
        self.buffer.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class _Accept(asyncio.Protocol):
    """Plain TCP accept: stop reading, then run the TLS handshake on the connection."""

    def __init__(self, frontend: "TLSFrontend") -> None:
        self.frontend = frontend

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.pause_reading()   # type: ignore[attr-defined]
        task = asyncio.get_running_loop().create_task(self.frontend.handshake(transport))  # type: ignore[arg-type]
        self.frontend.tasks.add(task)
        task.add_done_callback(self.frontend.tasks.discard)


class TLSFrontend:
    """Owns the TLS listener. `start()` loads the certificate (TLSConfigError if unusable), binds,
    and starts the reload watcher; `stop()` closes the listener."""

    def __init__(self, server: RendezvousServer, settings: TLSSettings) -> None:
        self.server, self.settings = server, settings
        self.ctx: ssl.SSLContext | None = None
        self.cert: CertInfo | None = None
        self.stamp: tuple | None = None
        self.routed = {REGISTRY: 0, BEACON: 0}
        self.tasks: set[asyncio.Task] = set()
        self._listener: asyncio.base_events.Server | None = None
        self._reload: asyncio.Task | None = None

    @property
    def address(self) -> tuple[str, int] | None:
        return self._listener.sockets[0].getsockname()[:2] if self._listener else None

    def _names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.settings.registry_sni, self.settings.beacon_sni) if n)

    def load(self) -> CertInfo:
        files = self.settings.files
        try:        # taken before reading, so a write during the load is seen by the next poll
            stamp = files.stamp()
        except OSError:
            stamp = None        # files.load() says which file is missing
        ctx, info = files.load(self._names(), now=self.server.clock())
        ctx.sni_callback = self._sni
        self.ctx, self.cert, self.stamp = ctx, info, stamp
        return info

    def _sni(self, ssl_object: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
        ssl_object.pilot_route = route_for(server_name, self.settings.registry_sni,   # type: ignore[attr-defined]
                                           self.settings.beacon_sni)

    async def start(self) -> None:
        info = self.load()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(lambda: _Accept(self), *self.settings.listen, reuse_address=True)
        log.info("TLS listening", extra={"addr": format_hostport(*self.address),
                                         "registry_sni": self.settings.registry_sni,
                                         "beacon_sni": self.settings.beacon_sni, "fingerprint": info.fingerprint,
                                         "not_after": info.not_after.isoformat(), "names": list(info.names)})
        self._reload = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        if self._reload:
            self._reload.cancel()
        if self._listener:
            self._listener.close()
            await self._listener.wait_closed()
        for task in list(self.tasks):
            task.cancel()

    async def handshake(self, raw: asyncio.Transport) -> None:
        peer = raw.get_extra_info("peername") or ("?", 0)
        router = _Router(self)
        try:
            tls = await asyncio.get_running_loop().start_tls(
                raw, router, self.ctx, server_side=True, ssl_handshake_timeout=self.settings.handshake_timeout)
        except (OSError, asyncio.TimeoutError, ConnectionError) as err:     # ssl.SSLError is an OSError
            self.server.errors["tls_handshake"] += 1
            log.info("TLS handshake failed", extra={"remote": format_hostport(peer[0], peer[1]),
                                                    "reason": _reason(err)})
            raw.abort()
            return
        router.start(tls)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed; True when a new certificate is in service."""
        try:
            if self.settings.files.stamp() == self.stamp:
                return False
            previous = self.cert
            info = self.load()
        except (TLSConfigError, OSError) as err:
            self.server.errors["tls_reload"] += 1
            log.error("TLS certificate reload failed, keeping the previous certificate", extra={"error": str(err)})
            try:
                self.stamp = self.settings.files.stamp()     # report a bad pair once, not every poll
            except OSError:
                pass
            return False
        log.info("TLS certificate reloaded", extra={"fingerprint": info.fingerprint,
                                                   "previous": previous.fingerprint if previous else "",
                                                   "not_after": info.not_after.isoformat()})
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.reload_interval)
            self.reload_if_changed()


def _reason(err: BaseException) -> str:
    if isinstance(err, asyncio.TimeoutError) or "timed out" in str(err):
        return "no TLS handshake in time"
    if isinstance(err, ssl.SSLError):
        return err.reason or str(err)
    return str(err) or type(err).__name__
