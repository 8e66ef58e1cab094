"""kopf glue for the operator's periodic operations: the watchdog (with the mesh metrics), the end of a
CA rotation, and forgetting a deleted mesh's metrics. `register()` is called by `pilotmesh operator`
before kopf starts, with the intervals from its flags.
"""
from __future__ import annotations

import datetime as dt
from typing import Any

import kopf

from . import certinfo, metrics
from .clusterfacts import secret_data
from .handlers import MESH
from .operations import Operations, WatchdogSettings

CERT_CHECK_SECONDS = 30.0
_settings = WatchdogSettings()


def _ops(memo: kopf.Memo) -> Operations:
    if "operations" not in memo:
        memo["operations"] = Operations(memo.reconciler.api, memo.reconciler.settings, _settings)
    return memo["operations"]


def watchdog(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Find opted-in pods without the daemon and outdated daemons; report, and restart owners if asked."""
    name = body["metadata"]["name"]
    result = _ops(memo).run_watchdog(body)
    metrics.observe_mesh(name, {**body.get("status", {}), **result.counts, "uninjectedPods": result.uninjected})
    for r in result.restarts:
        metrics.RESTARTS.labels(name, r.reason).inc()
    if body.get("status", {}).get("uninjectedPods") != result.uninjected:
        patch.status["uninjectedPods"] = result.uninjected


def certificates(memo: kopf.Memo, **_: Any) -> None:
    """Drop the previous CA once every injector serves the new chain; export the certificates' expiry."""
    ops = _ops(memo)
    ops.finish_ca_rotation()
    summary = certinfo.summarize(secret_data(ops.api, ops.settings.namespace), dt.datetime.now(dt.timezone.utc),
                                 dt.timedelta(0))
    metrics.observe_certificates(summary.serving_not_after, summary.ca_not_after, summary.bundle_cas)


def forget(body: kopf.Body, **_: Any) -> None:
    metrics.forget_mesh(body["metadata"]["name"])


def register(settings: WatchdogSettings) -> None:
    global _settings
    _settings = settings
    kopf.timer(*MESH, interval=settings.interval, initial_delay=min(settings.interval, 5.0), idle=2)(watchdog)
    kopf.timer(*MESH, interval=min(CERT_CHECK_SECONDS, settings.interval),
               initial_delay=min(settings.interval, 5.0))(certificates)
    kopf.on.delete(*MESH, optional=True)(forget)
