"""Prometheus metrics of the operator (served by `pilotmesh operator --metrics-listen`, default :9091).

Gauges are set from what the operator already knows: a PilotMesh's status (pod counts, conditions), the
watchdog's findings and the injector Secret. `reconciling(mesh)` counts reconcile errors around a call.
"""
from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import Counter, Gauge, start_http_server

RECONCILE_ERRORS = Counter("pilotmesh_operator_reconcile_errors_total", "PilotMesh reconciles that raised", ["mesh"])
CERT_EXPIRY = Gauge("pilotmesh_operator_certificate_expiry_timestamp_seconds",
                    "Unix time at which the injector's certificates in the Secret expire", ["certificate"])
BUNDLE_CAS = Gauge("pilotmesh_operator_ca_bundle_certificates", "CAs in the published caBundle (2 while rotating)")
PODS = Gauge("pilotmesh_mesh_pods", "Pods of a mesh by state (injected, outdated, uninjected)", ["mesh", "state"])
TRANSPORTS = Gauge("pilotmesh_mesh_transport_pods", "Injected pods of a mesh by transport", ["mesh", "transport"])
CONDITION = Gauge("pilotmesh_mesh_condition", "PilotMesh status conditions (1 = True)", ["mesh", "type"])
RESTARTS = Counter("pilotmesh_watchdog_restarts_total", "Owners restarted by the watchdog", ["mesh", "reason"])

_STATES = {"injectedPods": "injected", "outdatedPods": "outdated", "uninjectedPods": "uninjected"}
_TRANSPORTS = {"udpPods": "udp", "compatPods": "compat"}


def serve(host: str, port: int) -> None:
    """Start the /metrics endpoint in a background thread."""
    start_http_server(port, host)


@contextlib.contextmanager
def reconciling(mesh: str) -> Iterator[None]:
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(mesh).inc()
        raise


def observe_mesh(mesh: str, status: Mapping[str, Any]) -> None:
    """Set a mesh's gauges from its status (or a reconcile result with the same fields)."""
    for field, state in _STATES.items():
        if isinstance(status.get(field), int):
            PODS.labels(mesh, state).set(status[field])
    for field, transport in _TRANSPORTS.items():
        if isinstance(status.get(field), int):
            TRANSPORTS.labels(mesh, transport).set(status[field])
    for c in status.get("conditions") or []:
        if isinstance(c, Mapping) and c.get("type"):
            CONDITION.labels(mesh, c["type"]).set(1 if c.get("status") == "True" else 0)


def observe_certificates(serving_not_after: dt.datetime | None, ca_not_after: dt.datetime | None,
                         bundle_cas: int) -> None:
    for name, when in (("serving", serving_not_after), ("ca", ca_not_after)):
        if when is not None:
            CERT_EXPIRY.labels(name).set(when.timestamp())
    BUNDLE_CAS.set(bundle_cas)


def forget_mesh(mesh: str) -> None:
    """Drop a deleted mesh's series."""
    for gauge in (PODS, TRANSPORTS, CONDITION):
        for labels in list(gauge._metrics):  # noqa: SLF001 - prometheus_client has no public "labels of"
            if labels[0] == mesh:
                gauge.remove(*labels)
