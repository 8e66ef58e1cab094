"""The operator's periodic operations, as side effects around pure decisions: the watchdog (watchdog.py)
and the end of a CA rotation (rotation.py). Nothing here knows kopf; handlers_watchdog.py calls it.
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from pilot_daemon import contract

from . import certprobe, certs, desired, k8s, rotation, watchdog
from .clusterread import MESHES, list_all
from .injector.events import EventPoster
from .injector.snapshot import Snapshot
from .podcounts import pod_counts
from .statusreport import owned_namespaces

log = logging.getLogger(__name__)
COMPONENT = "pilotmesh-operator"


@dataclasses.dataclass(frozen=True)
class WatchdogSettings:
    interval: float = 60.0
    restarts_per_minute: int = 5


@dataclasses.dataclass(frozen=True)
class WatchdogResult:
    findings: list[watchdog.Finding]
    restarts: list[watchdog.Restart]
    notes: list[str]
    counts: dict[str, int]          # podcounts.pod_counts of the mesh's injected pods, fresh from this round

    @property
    def uninjected(self) -> int:
        return sum(f.kind == "uninjected" for f in self.findings)


class Operations:
    def __init__(self, api: ApiClient, settings: desired.OperatorSettings, wd: WatchdogSettings) -> None:
        self.api, self.settings, self.wd = api, settings, wd
        self.budget = watchdog.RestartBudget(wd.restarts_per_minute)
        self.events = EventPoster(api, component=COMPONENT)

    # -- watchdog -------------------------------------------------------------------------
    def _pods(self, snapshot: Snapshot, mesh_name: str) -> list[dict[str, Any]]:
        """Opted-in and injected pods, by label selector only, page by page."""
        pods = [p for sel in watchdog.SELECTORS for p in list_all(self.api, "/api/v1/pods", {"labelSelector": sel})]
        for ns in sorted(snapshot.namespaces):
            choice = snapshot.mesh_for(ns)
            opted_in = snapshot.namespace_labels(ns).get(contract.LABEL_INJECT) == "true"
            if choice and choice.name == mesh_name and opted_in:
                pods += list_all(self.api, f"/api/v1/namespaces/{ns}/pods",
                                 {"labelSelector": watchdog.NAMESPACE_SELECTOR})
        return pods

    def _top_owner(self, namespace: str, ref: Mapping[str, Any] | None, cache: dict) -> dict[str, Any] | None:
        """The workload behind a pod's controller reference (a ReplicaSet's Deployment), or None."""
        if not ref or ref.get("kind") not in ("ReplicaSet", *watchdog.RESTARTABLE):
            return None
        key = (namespace, ref.get("kind"), ref.get("name"))
        if key not in cache:
            plural = "replicasets" if ref["kind"] == "ReplicaSet" else watchdog.RESTARTABLE[ref["kind"]]
            obj = k8s.get(self.api, f"/apis/apps/v1/namespaces/{namespace}/{plural}/{ref['name']}")
            if obj is not None:
                obj.setdefault("kind", ref["kind"])
            if obj is not None and ref["kind"] == "ReplicaSet":
                up = next((r for r in obj["metadata"].get("ownerReferences") or [] if r.get("controller")), None)
                obj = self._top_owner(namespace, up, cache) if up and up.get("kind") == "Deployment" else None
            cache[key] = obj
        return cache[key]

    def run_watchdog(self, mesh: Mapping[str, Any]) -> WatchdogResult:
        name = mesh["metadata"]["name"]
        snapshot = Snapshot.build(list(list_all(self.api, MESHES)), list(list_all(self.api, "/api/v1/namespaces")),
                                  [], operator_namespace=self.settings.namespace)
        pods = self._pods(snapshot, name)
        findings = watchdog.find(pods, snapshot, name)
        image = ((mesh.get("spec") or {}).get("daemon") or {}).get("image", "")
        injected = [p for p in pods if contract.LABEL_INJECTED in (p["metadata"].get("labels") or {})]  # listed once
        counts = pod_counts(injected, image, owned_namespaces(snapshot, name))
        cache: dict = {}
        owners = {(f.namespace, f.pod): self._top_owner(f.namespace, f.owner, cache) for f in findings}
        for f in findings:
            self._event(f, owners[(f.namespace, f.pod)])
        spec = mesh.get("spec") or {}
        conditions = {c.get("type"): c.get("status") for c in (mesh.get("status") or {}).get("conditions") or []}
        restarts, notes = [], []
        if (spec.get("watchdog") or {}).get("restart"):
            restarts, notes = watchdog.plan_restarts(
                findings, owners, restart_outdated=bool((spec.get("watchdog") or {}).get("restartOutdated")),
                injector_ready=conditions.get("InjectorReady") == "True", budget=self.budget, now=time.monotonic())
        now = dt.datetime.now(dt.timezone.utc)
        for r in restarts:
            path = f"/apis/apps/v1/namespaces/{r.namespace}/{watchdog.RESTARTABLE[r.kind]}/{r.name}"
            obj = k8s.call(self.api, "PATCH", path, watchdog.restart_patch(now),
                           content_type="application/strategic-merge-patch+json")
            log.info("watchdog restarted %s %s/%s (%s pods: %s)", r.kind, r.namespace, r.name, r.reason,
                     ", ".join(r.pods))
            self.events.post(_ref(obj, r.kind), r.namespace, "RestartedByWatchdog",
                             f"restarted by PilotMesh {name}: {len(r.pods)} pod(s) {r.reason}: {', '.join(r.pods)}")
        for note in notes:
            log.info("watchdog: %s", note)
        return WatchdogResult(findings, restarts, notes, counts)

    def _event(self, f: watchdog.Finding, owner: Mapping[str, Any] | None) -> None:
        ref = _ref(owner, str(owner.get("kind"))) if owner else (
            f.owner or {"apiVersion": "v1", "kind": "Pod", "name": f.pod, "uid": f.uid})
        reason, kind = ("PodWithoutDaemon", "Warning") if f.kind == "uninjected" else ("DaemonOutdated", "Normal")
        self.events.post(ref, f.namespace, reason, f"pod {f.pod}: {f.message}", kind)

    # -- certificates ---------------------------------------------------------------------
    def finish_ca_rotation(self) -> str | None:
        """Publish only the current CA once every injector serves a chain from it; returns what was done."""
        path = f"/api/v1/namespaces/{self.settings.namespace}/secrets/{desired.TLS_SECRET}"
        secret = k8s.get(self.api, path)
        if secret is None:
            return None
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        if not rotation.rotating(data):
            return None
        served = certprobe.observe(certprobe.injector_endpoints(self.api, self.settings))
        done, why = rotation.may_drop_previous_ca(data, served)
        if not done:
            log.info("CA rotation: previous CA kept: %s", why)
            return None
        k8s.apply(self.api, path, desired.tls_secret(self.settings, certs.drop_previous_ca(data)))
        log.info("CA rotation complete: %s; previous CA dropped from the bundle", why)
        return why


def _ref(obj: Mapping[str, Any], kind: str) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {"apiVersion": obj.get("apiVersion", "apps/v1"), "kind": kind, "name": meta.get("name"),
            "uid": meta.get("uid")}
