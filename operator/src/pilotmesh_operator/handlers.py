"""kopf glue: each handler hands the PilotMesh to the Reconciler and writes what it returns to status."""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf

from . import metrics
from .status import merge_conditions

MESH = ("pilot.io", "v1alpha1", "pilotmeshes")
FINALIZER = "pilot.io/finalizer"
RESYNC_SECONDS = 60.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = FINALIZER
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="pilot.io",
                                                                          key="last-handled-configuration")
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="pilot.io")
    settings.admission.managed = None          # we own the webhook configuration (see desired.py)
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """The service account in a cluster, else $KUBECONFIG (client certificates included)."""
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


def _reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo) -> None:
    with metrics.reconciling(body.metadata.name):
        result = memo.reconciler.reconcile(body, dt.datetime.now(dt.timezone.utc))
    metrics.observe_mesh(body.metadata.name, result)
    _write_status(body, patch, result)


def _write_status(body: kopf.Body, patch: kopf.Patch, result: dict[str, Any]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    generation = body.metadata.get("generation")
    conditions = merge_conditions(body.status.get("conditions"), result.pop("conditions"), generation, now)
    patch.status.update({**result, "conditions": conditions, "observedGeneration": generation})


@kopf.on.resume(*MESH)
@kopf.on.create(*MESH)
@kopf.on.update(*MESH, field="spec")
def reconcile(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    _reconcile(body, patch, memo)


@kopf.timer(*MESH, interval=RESYNC_SECONDS, initial_delay=RESYNC_SECONDS, idle=5)
def resync(body: kopf.Body, patch: kopf.Patch, memo: kopf.Memo, **_: Any) -> None:
    """Renew certificates, refresh pod counts and injector readiness, notice new conflicts."""
    _reconcile(body, patch, memo)


@kopf.on.delete(*MESH)
def delete(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.delete(body)
