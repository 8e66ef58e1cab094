"""Prometheus metrics of the daemon: ``-metrics-listen HOST:PORT`` (a PilotMesh extension; off by default).

``GET /metrics`` is served by aiohttp on the daemon's own event loop (no threads). A custom collector reads the
live daemon at scrape time (the figures of the ``info`` reply, the transport manager's state), so the packet
path carries no metric calls. Anything but ``GET /metrics`` gets 404/405; a request that is not HTTP, 400.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from . import status
from .transport import is_compat
from .udp import join_host_port, split_host_port

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("pilot_daemon.metrics")
P = "pilot_daemon_"

# (metric name without _total, key of the info reply, help)
COUNTERS = (
    ("packets_sent", "pkts_sent", "Tunnel frames sent (direct or relayed)"),
    ("packets_received", "pkts_recv", "Tunnel frames received"),
    ("bytes_sent", "bytes_sent", "Bytes of tunnel frames sent"),
    ("bytes_received", "bytes_recv", "Bytes of tunnel frames received"),
    ("accept_queue_drops", "accept_queue_drops", "Connections dropped because a port's accept queue was full"),
)
GAUGES = (
    ("peers", "peers", "Peers known (tunnel, relay or traffic seen)"),
    ("encrypted_peers", "encrypted_peers", "Peers with an encrypted tunnel"),
    ("authenticated_peers", "authenticated_peers", "Peers whose tunnel is authenticated"),
    ("relay_peers", "relay_peer_count", "Peers reached through the beacon relay"),
    ("connections", "connections", "Open stream connections"),
    ("ports", "ports", "Bound ports (IPC clients and built-in services)"),
    ("handshakes_pending", "handshake_pending_count", "Trust handshakes waiting for an answer"),
)


class DaemonCollector:
    def __init__(self, daemon: "Daemon") -> None:
        self.d = daemon

    def collect(self) -> Iterator[Metric]:
        d, t = self.d, self.d.transports
        info = status.info(d, d.uptime())
        yield InfoMetricFamily(P + "node", "This node on the overlay", value={
            "node_id": str(d.node_id), "address": d.address, "hostname": d.hostname, "version": info["version"]})
        yield InfoMetricFamily(P + "transport", "The transport: mode asked for (udp, compat, auto), transport in "
                               "use, and its path", value={"mode": t.requested, "transport": t.mode, "path": t.path()})
        yield CounterMetricFamily(P + "transport_switches", "Live transport switches (auto re-probes, transport "
                                  "file)", value=t.switches)
        yield CounterMetricFamily(P + "network_changes", "Network changes (netlink, debounced) that made auto "
                                  "re-probe the transport", value=t.network_changes)
        link = d.udp
        compat = is_compat(link)
        yield GaugeMetricFamily(P + "compat_tunnel_up", "1 while the compat WebSocket to the beacon is up, 0 while "
                                "it is down or reconnecting (and on udp)", value=int(compat and link.state == "up"))
        yield GaugeMetricFamily(P + "compat_tunnel_failures", "Consecutive failed compat WebSocket sessions",
                                value=link.failures if compat else 0)
        for name, key, text in COUNTERS:
            yield CounterMetricFamily(P + name, text, value=info[key])
        encryption = CounterMetricFamily(P + "tunnel_encryption", "Tunnel frames decrypted (ok) or dropped for a "
                                         "decryption failure (fail)", labels=["result"])
        encryption.add_metric(["ok"], info["tunnel_encryption_success"])
        encryption.add_metric(["fail"], info["tunnel_encryption_failure"])
        yield encryption
        for name, key, text in GAUGES:
            yield GaugeMetricFamily(P + name, text, value=info[key])
        yield GaugeMetricFamily(P + "uptime_seconds", "Seconds since the daemon started", value=d.uptime())


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (every interface); ValueError naming the flag."""
    try:
        host, port = split_host_port(text)
        if not 0 <= port <= 65535:
            raise ValueError(port)
    except ValueError:
        raise ValueError(f"-metrics-listen {text!r}: use HOST:PORT, e.g. 127.0.0.1:9103") from None
    return host, port


class MetricsServer:
    def __init__(self, daemon: "Daemon", listen: str) -> None:
        self.listen = parse_listen(listen)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(DaemonCollector(daemon))
        self.address: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        host, port = self.listen
        site = web.TCPSite(self._runner, host or None, port, reuse_address=True)
        await site.start()
        self.address = site._server.sockets[0].getsockname()[:2]    # type: ignore[union-attr]
        log.info("metrics listening", extra={"addr": join_host_port(*self.address), "path": "/metrics"})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
