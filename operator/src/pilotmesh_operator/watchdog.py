"""The watchdog's decisions (pure): which opted-in pods run without the daemon or with an outdated one, and
which of their owners to restart now.

Pods are found by label selectors only (see `SELECTORS`), never by watching all pods. Limitation: a pod
opted in only by the `pilot.io/inject` *annotation* carries no label a selector can find, so when it runs
without the daemon the watchdog cannot see it (label the pod, or its namespace, `pilot.io/inject=true` to be
covered). Once injected, every pod carries the `pilot.io/injected` label, so outdated daemons are always found.

Uninjected means: the injector would inject the pod if it were created now (`render.inject.inject()` decides,
as in the webhook), yet it has no `pilot.io/status`. Outdated means: its daemon image differs from the mesh's
(a per-pod `pilot.io/image` pin is respected). Owners are restarted like `kubectl rollout restart`
(Deployment, StatefulSet, DaemonSet), rate-limited, only while the injector is ready (else a restart would
only make more pods without the daemon), never twice for the same pod, and outdated pods only when asked.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from pilot_daemon import contract

from .injector.snapshot import Snapshot
from .render.inject import inject
from .why import injection_status

RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"
RESTARTABLE = {"Deployment": "deployments", "StatefulSet": "statefulsets", "DaemonSet": "daemonsets"}
# Label selectors the glue lists pods with (cluster-wide, paginated); namespaces labelled pilot.io/inject=true
# are listed with NAMESPACE_SELECTOR in each such namespace.
SELECTORS = (f"{contract.LABEL_INJECT}=true,!{contract.LABEL_INJECTED}", contract.LABEL_INJECTED)
NAMESPACE_SELECTOR = f"{contract.LABEL_INJECT}!=false,!{contract.LABEL_INJECTED}"


@dataclasses.dataclass(frozen=True)
class Finding:
    kind: str                           # uninjected | outdated
    namespace: str
    pod: str
    created: str                        # the pod's creationTimestamp
    owner: Mapping[str, Any] | None     # the pod's controller ownerReference
    message: str
    uid: str = ""


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("metadata") or {}


def parse_time(text: str | None) -> dt.datetime | None:
    try:
        when = dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def find(pods: Iterable[Mapping[str, Any]], snapshot: Snapshot, mesh_name: str) -> list[Finding]:
    """Findings for the pods in namespaces ``mesh_name`` injects (duplicates by uid counted once)."""
    out, seen = [], set()
    for pod in pods:
        meta = _meta(pod)
        ns, uid = str(meta.get("namespace")), meta.get("uid") or (meta.get("namespace"), meta.get("name"))
        if uid in seen or meta.get("deletionTimestamp") or (pod.get("status") or {}).get("phase") in (
                "Succeeded", "Failed"):
            continue
        seen.add(uid)
        choice = snapshot.mesh_for(ns)
        if choice is None or choice.name != mesh_name or choice.settings is None:
            continue
        owner = next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), None)
        status = injection_status(pod)
        ref = (ns, str(meta.get("name")), str(meta.get("creationTimestamp") or ""), owner)
        if status:
            want = (meta.get("annotations") or {}).get(contract.ANNOTATION_IMAGE) or choice.settings.image
            if status.get("mode") == "sidecar" and status.get("image") and status["image"] != want:
                out.append(Finding("outdated", *ref, f"daemon image {status['image']} differs from {want}",
                                   str(meta.get("uid") or "")))
            continue
        result = inject(pod, choice.settings, None, namespace=ns, namespace_labels=snapshot.namespace_labels(ns))
        if result.injected:
            out.append(Finding("uninjected", *ref, f"opted in but running without the daemon (PilotMesh {mesh_name} "
                                                   "would inject it now): admitted while the webhook was unreachable",
                               str(meta.get("uid") or "")))
    return out


class RestartBudget:
    """At most ``per_minute`` restarts in any 60 s window (time passed in)."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._recent: collections.deque[float] = collections.deque()

    def take(self, now: float) -> bool:
        while self._recent and now - self._recent[0] >= 60:
            self._recent.popleft()
        if len(self._recent) >= self.per_minute:
            return False
        self._recent.append(now)
        return True


@dataclasses.dataclass(frozen=True)
class Restart:
    kind: str
    namespace: str
    name: str
    reason: str                     # uninjected | outdated
    pods: tuple[str, ...]


def plan_restarts(findings: Iterable[Finding], workloads: Mapping[tuple[str, str], Mapping[str, Any] | None], *,
                  restart_outdated: bool, injector_ready: bool, budget: RestartBudget, now: float
                  ) -> tuple[list[Restart], list[str]]:
    """The restarts to make now, and why others wait. ``workloads``: (namespace, pod name) -> the pod's top
    owner object (Deployment, ...) or None when it has none that can be restarted."""
    if not injector_ready:
        return [], ["the injector is not ready: restarting owners now would only create more pods without the daemon"]
    grouped: dict[tuple[str, str, str], list[Finding]] = {}
    notes: list[str] = []
    for f in findings:
        if f.kind == "outdated" and not restart_outdated:
            continue
        owner = workloads.get((f.namespace, f.pod))
        if owner is None or owner.get("kind") not in RESTARTABLE:
            notes.append(f"{f.namespace}/{f.pod}: no Deployment, StatefulSet or DaemonSet owns it; "
                         "recreate it yourself")
            continue
        restarted = parse_time(((((owner.get("spec") or {}).get("template") or {}).get("metadata") or {})
                                .get("annotations") or {}).get(RESTARTED_AT))
        created = parse_time(f.created)
        if restarted and created and restarted >= created:
            continue  # a restart was asked after this pod was created: its rollout is under way
        grouped.setdefault((str(owner["kind"]), f.namespace, str(_meta(owner).get("name"))), []).append(f)
    restarts = []
    for (kind, ns, name), group in sorted(grouped.items()):
        reason = "uninjected" if any(f.kind == "uninjected" for f in group) else "outdated"
        if not budget.take(now):
            notes.append(f"{kind} {ns}/{name}: restart postponed (at most {budget.per_minute} per minute)")
            continue
        restarts.append(Restart(kind, ns, name, reason, tuple(sorted(f.pod for f in group))))
    return restarts, notes


def restart_patch(now: dt.datetime) -> dict[str, Any]:
    """The strategic-merge patch `kubectl rollout restart` sends."""
    return {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: now.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}}
