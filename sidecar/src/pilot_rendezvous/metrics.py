"""Health and Prometheus metrics (`-metrics-listen`): `/healthz`, `/readyz`, `/metrics`.

Every value is read from the running server at scrape time (a custom collector on a private
`CollectorRegistry`), so the cores keep plain counters and import nothing from Prometheus.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .server import RendezvousServer, format_hostport
from .tls_frontend import TLSFrontend

log = logging.getLogger("pilot_rendezvous.metrics")
P = "pilot_rendezvous_"


class RendezvousCollector:
    def __init__(self, server: RendezvousServer, tls: TLSFrontend | None = None) -> None:
        self.server, self.tls = server, tls

    def collect(self) -> Iterator[Metric]:
        s, stats = self.server, self.server.beacon.stats
        requests = CounterMetricFamily(P + "registry_requests", "Registry requests by message type and result "
                                       "(registrations: type=register; lookups: type=lookup|resolve)",
                                       labels=["type", "result"])
        for (mtype, ok), n in sorted(s.requests.items()):
            requests.add_metric([mtype, "ok" if ok else "error"], n)
        yield requests
        errors = CounterMetricFamily(P + "errors", "Refused or failed connections and messages by kind",
                                     labels=["kind"])
        for kind, n in sorted(s.errors.items()):
            errors.add_metric([kind], n)
        yield errors
        frames = CounterMetricFamily(P + "relayed_frames", "Tunnel frames relayed by the beacon, by delivery path",
                                     labels=["path"])
        frames.add_metric(["udp"], stats.relayed_frames - stats.relayed_to_compat)
        frames.add_metric(["compat"], stats.relayed_to_compat)
        yield frames
        yield CounterMetricFamily(P + "relayed_bytes", "Bytes of tunnel frames relayed by the beacon",
                                  value=stats.relayed_bytes)
        yield CounterMetricFamily(P + "beacon_discovers", "Beacon discover (STUN) messages answered",
                                  value=stats.discovers)
        yield CounterMetricFamily(P + "beacon_punches", "Punch requests coordinated", value=stats.punches)
        dropped = CounterMetricFamily(P + "beacon_dropped", "Beacon messages dropped", labels=["reason"])
        dropped.add_metric(["unroutable_or_unknown"], stats.dropped)
        dropped.add_metric(["compat_unroutable"], stats.compat_unroutable)
        dropped.add_metric(["compat_spoofed_source"], stats.compat_spoofed)
        yield dropped
        yield GaugeMetricFamily(P + "compat_sessions", "Authenticated compat (WebSocket) nodes connected",
                                value=len(s.compat_sessions))
        yield GaugeMetricFamily(P + "registry_connections", "Open registry connections (TCP and TLS)",
                                value=len(s.connections))
        yield GaugeMetricFamily(P + "beacon_udp_endpoints", "Nodes with a live UDP beacon endpoint",
                                value=len(s.beacon.endpoints))
        yield GaugeMetricFamily(P + "nodes", "Nodes known to the registry (persisted)",
                                value=s.registry.store.node_count())
        if self.tls is not None:
            routed = CounterMetricFamily(P + "tls_connections", "TLS connections by route", labels=["route"])
            for route, n in sorted(self.tls.routed.items()):
                routed.add_metric([route], n)
            yield routed
            if self.tls.cert is not None:
                yield GaugeMetricFamily(P + "tls_cert_not_after_seconds", "Expiry of the served certificate "
                                        "(unix seconds)", value=self.tls.cert.not_after.timestamp())


def readiness(server: RendezvousServer, tls: TLSFrontend | None) -> list[str]:
    """Reasons the server is not ready; empty when it is."""
    problems = []
    if server.registry_listen and server.registry_address is None:
        problems.append("registry listener not bound")
    if server.beacon_listen and server.beacon_address is None:
        problems.append("beacon listener not bound")
    if tls is not None:
        if tls.address is None:
            problems.append("TLS listener not bound")
        elif tls.cert is not None and tls.cert.not_after.timestamp() <= server.clock():
            problems.append("TLS certificate expired")
    try:
        server.registry.store.node_count()
    except Exception as err:  # noqa: BLE001 - any storage failure means not ready
        problems.append(f"store unavailable: {err}")
    return problems


class MetricsServer:
    def __init__(self, server: RendezvousServer, listen: tuple[str, int], tls: TLSFrontend | None = None) -> None:
        self.server, self.listen, self.tls = server, listen, tls
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(RendezvousCollector(server, tls))
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        problems = readiness(self.server, self.tls)
        return web.Response(status=503 if problems else 200, text="\n".join(problems or ["ready"]) + "\n")

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, *self.listen, reuse_address=True)
        await site.start()
        self.address = site._server.sockets[0].getsockname()[:2]    # type: ignore[union-attr]
        log.info("metrics listening", extra={"addr": format_hostport(*self.address)})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
