"""Re-deciding injected pods' transports after policies, namespaces or meshes change (pure).

`redecide(pods, snapshot)` returns a `Change` for each injected sidecar-mode pod whose transport policy
is `auto` (recorded at injection in `pilot.io/status` as transportPolicy: the pod's own
`pilot.io/transport` or the mesh's spec.transport) and whose `pilot.io/transport` or
`pilot.io/transport-reason` no longer says what the NetworkPolicy verdict says now.
A reason that differs only in the pod's name (admission sees `generateName`) is not a change.
Pods that look the same to the analyzer (replicas: same namespace, labels, named ports, IP families)
share one analyze() call.
"""
from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from pilot_daemon import contract

from .injector.admission import _controller
from .injector.snapshot import Snapshot
from .render.inject import MAX_REASON, TransportDecision
from .render.netpol import Settings, SettingsError, Verdict, analyze
from .render.netpol.analyze import PodInputError

NAME_TOKEN = "\x00pod\x00"   # stands for the pod's name while replicas share a verdict
FAMILY_IP = {4: "192.0.2.1", 6: "2001:db8::1"}
HOST_NETWORK_NOTE = "; hostNetwork pod: NetworkPolicy does not apply to it"  # as render.inject words it
FINISHED = ("Succeeded", "Failed")


@dataclasses.dataclass(frozen=True)
class Change:
    """New transport annotations for one pod, and what they replace."""

    namespace: str
    name: str
    uid: str | None
    old_transport: str | None
    new_transport: str
    old_reason: str | None
    new_reason: str
    owner: Mapping[str, Any] | None   # the pod's controller ownerReference; None for a bare pod
    verdict: Verdict

    @property
    def transport_changed(self) -> bool:
        return self.old_transport != self.new_transport

    def patch(self) -> dict[str, Any]:
        """A JSON merge patch for the pod (allowed on running pods: metadata only)."""
        return {"metadata": {"annotations": {contract.ANNOTATION_TRANSPORT: self.new_transport,
                                             contract.ANNOTATION_TRANSPORT_REASON: self.new_reason}}}

    def subject(self) -> dict[str, Any]:
        """What an Event about this change is posted on: the owner, else the pod itself."""
        if self.owner:
            return dict(self.owner)
        return {"apiVersion": "v1", "kind": "Pod", "name": self.name, "uid": self.uid}



def auto_pod(pod: Mapping[str, Any]) -> bool:
    """An injected sidecar-mode pod, still running, whose transport is decided from policies."""
    meta = pod.get("metadata") if isinstance(pod, Mapping) else None
    if not isinstance(meta, Mapping) or meta.get("deletionTimestamp"):
        return False
    phase = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}
    if phase.get("phase") in FINISHED:
        return False
    try:
        status = json.loads((meta.get("annotations") or {}).get(contract.ANNOTATION_STATUS) or "{}")
    except (TypeError, ValueError):
        return False
    return isinstance(status, dict) and status.get("mode") == "sidecar" and status.get("transportPolicy") == "auto"


def reason_for(verdict: Verdict, pod: Mapping[str, Any]) -> str:
    """`pilot.io/transport-reason` for a verdict, worded and capped as the injector writes it."""
    why = TransportDecision.from_verdict(verdict).reason
    if (pod.get("spec") or {}).get("hostNetwork"):
        why += HOST_NETWORK_NOTE
    return why if len(why) <= MAX_REASON else why[:MAX_REASON - 3] + "..."


def same_reason(old: str | None, new: str, pod: Mapping[str, Any]) -> bool:
    """Equal but for the pod's name (generateName at admission, the name now) and the 512-char cap."""
    if old is None:
        return False
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace") or ""
    for name in (meta.get("name"), meta.get("generateName")):
        if name:
            old, new = old.replace(f"{ns}/{name}", f"{ns}/<pod>"), new.replace(f"{ns}/{name}", f"{ns}/<pod>")
    if old == new:
        return True
    if old.endswith("...") and new.endswith("...") and len(old) >= MAX_REASON - 3 - len(ns) - 64:
        old, new = old[:-3], new[:-3]   # both capped: the names' lengths moved the cut
        return old.startswith(new) or new.startswith(old)
    return False


def group_policies(policies: Iterable[Any]) -> dict[str | None, list[Any]]:
    """Compiled policies by namespace; None holds the cluster-scoped ones (they apply everywhere)."""
    out: dict[str | None, list[Any]] = {None: []}
    for c in policies:
        out.setdefault(getattr(c, "namespace", None), []).append(c)
    return out


def analyzer_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """What analyze() reads of a pod, with its name replaced by NAME_TOKEN and its IPs by their families.

    Replicas of one workload have equal views, so they share one analyze() call (see `redecide`).
    """
    meta = pod.get("metadata") if isinstance(pod.get("metadata"), Mapping) else {}
    spec = pod.get("spec") if isinstance(pod.get("spec"), Mapping) else {}
    status = pod.get("status") if isinstance(pod.get("status"), Mapping) else {}

    def ports(key: str) -> list | None:
        items = spec.get(key)
        return [{"ports": c.get("ports")} for c in items if isinstance(c, Mapping)] if isinstance(items, list) else None
    families = set()
    for entry in status.get("podIPs") or [] if isinstance(status.get("podIPs"), list) else []:
        ip = str(entry.get("ip") if isinstance(entry, Mapping) else entry).strip()
        family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        try:
            socket.inet_pton(family, ip.split("%", 1)[0])   # what ipaddress accepts, at a fraction of the cost
        except OSError:
            continue
        families.add(6 if family == socket.AF_INET6 else 4)
    return {"metadata": {"namespace": meta.get("namespace"), "labels": meta.get("labels"), "name": NAME_TOKEN},
            "spec": {"containers": ports("containers"), "initContainers": ports("initContainers"),
                     "serviceAccountName": spec.get("serviceAccountName"), "hostNetwork": spec.get("hostNetwork")},
            "status": {"podIPs": [{"ip": FAMILY_IP[f]} for f in sorted(families)]}}


def _named(shared: Verdict, pod: Mapping[str, Any]) -> Verdict:
    """A verdict computed on the analyzer view, with the pod's own name put back."""
    meta = pod["metadata"]
    ns = str(meta.get("namespace") or "default")
    token, ref = f"{ns}/{NAME_TOKEN}", f"{ns}/{meta.get('name') or meta.get('generateName') or '?'}"
    return dataclasses.replace(shared, reasons=[r.replace(token, ref) for r in shared.reasons],
                               warnings=[w.replace(token, ref) for w in shared.warnings])


def redecide(pods: Iterable[Mapping[str, Any]], snapshot: Snapshot) -> list[Change]:
    """The annotation changes `pods` need under `snapshot` (its policies compiled, see Snapshot.build)."""
    by_ns = group_policies(snapshot.policies)
    settings: dict[str, Settings | None] = {}
    shared: dict[tuple[str, str], Verdict | None] = {}   # (mesh, analyzer view) -> verdict
    choices: dict[str, Any] = {}
    changes: list[Change] = []
    for pod in pods:
        if not auto_pod(pod):
            continue
        meta = pod["metadata"]
        ns = str(meta.get("namespace") or "")
        if ns not in choices:
            choices[ns] = snapshot.mesh_for(ns)
        choice = choices[ns]
        if choice is None or choice.settings is None or choice.settings.mode != "sidecar":
            continue  # no mesh (or a broken one) to take settings from: leave the pod as it is
        if choice.name not in settings:
            try:
                settings[choice.name] = Settings.from_dict(snapshot.analyzer_settings(choice.settings))
            except SettingsError:
                settings[choice.name] = None
        s = settings[choice.name]
        if s is None:
            continue
        view = analyzer_view(pod)
        key = (choice.name, json.dumps(view, sort_keys=True, default=str))
        if key not in shared:
            known = [snapshot.namespaces[n] for n in namespaces_read(s, ns) if n in snapshot.namespaces]
            try:
                shared[key] = analyze(view, known, by_ns[None] + by_ns.get(ns, []), s)
            except PodInputError:
                shared[key] = None
        if shared[key] is None:
            continue
        verdict = _named(shared[key], pod)
        annotations = meta.get("annotations") or {}
        old_t = annotations.get(contract.ANNOTATION_TRANSPORT)
        old_r = annotations.get(contract.ANNOTATION_TRANSPORT_REASON)
        new_r = reason_for(verdict, pod)
        if old_t == verdict.transport and same_reason(old_r, new_r, pod):
            continue
        changes.append(Change(ns, str(meta.get("name")), meta.get("uid"), old_t, verdict.transport, old_r, new_r,
                              _controller(pod), verdict))
    return changes


def event_messages(changes: Iterable[Change], most: int = 5) -> list[tuple[dict[str, Any], str, str]]:
    """(subject, namespace, message) for one `TransportChanged` Event per owner and direction."""
    groups: dict[tuple, list[Change]] = {}
    for c in changes:
        if c.transport_changed:
            subject = c.subject()
            groups.setdefault((c.namespace, subject.get("uid") or subject.get("name"), c.old_transport,
                               c.new_transport), []).append(c)
    out = []
    for (ns, _, old, new), same in groups.items():
        names = sorted(c.name for c in same)
        pods = f"pod {names[0]}" if len(names) == 1 else (
            f"{len(names)} pods ({', '.join(names[:most])}{', ...' if len(names) > most else ''})")
        out.append((same[0].subject(), ns, f"transport {old or 'unset'} -> {new} for {pods}: {same[0].new_reason}"))
    return out


def namespaces_read(s: Settings, namespace: str) -> set[str]:
    """The namespaces whose labels analyze() reads for a pod in `namespace`: its own, DNS, rendezvous, peers."""
    return {namespace, s.dns_namespace, *(ep.namespace for ep in s.rendezvous if ep.namespace),
            *(ns for ns, _ in s.peers)}
