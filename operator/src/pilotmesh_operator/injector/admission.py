"""AdmissionReview in, AdmissionReview out: the whole injector decision as a pure function.

`review(body, snapshot)` never raises: a body that is not an AdmissionReview gets `Rejected` (HTTP 400),
anything else an `allowed` response -- patched when the pod is injected, unchanged with a warning when
it is skipped for a reason the user should see. Pods are never denied: a broken injector decision must
not stop a workload (the webhook's failurePolicy covers an unreachable injector).
"""
from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from pilot_daemon import contract

from ..render.inject import SKIP_REASONS, TransportDecision, inject
from ..render.netpol import analyze
from .snapshot import Snapshot

# Skips worth a warning to the user who created the pod (the others are the normal "not opted in").
WARN_SKIPS = frozenset({"invalid_annotation", "mount_conflict", "malformed", "no_containers", "namespace_excluded"})
MAX_WARNING = 240


class Rejected(ValueError):
    """The request body is not an AdmissionReview we can answer (HTTP 400 with this message)."""


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What happened, for metrics, logs and Events."""

    result: str                      # injected | skipped | ignored
    reason: str                      # a SKIP_REASONS key, or why it was ignored
    message: str
    namespace: str | None = None
    owner: Mapping[str, Any] | None = None   # the pod's controller ownerReference, for Events
    transport: str | None = None
    verdict: Any = None
    dry_run: bool = False


def _response(uid: str, patch: list | None = None, warnings: list[str] = ()) -> dict[str, Any]:
    resp: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        resp["patchType"] = "JSONPatch"
        resp["patch"] = base64.b64encode(json.dumps(patch, separators=(",", ":")).encode()).decode()
    if warnings:
        resp["warnings"] = [w if len(w) <= MAX_WARNING else w[:MAX_WARNING - 3] + "..." for w in warnings]
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": resp}


def parse(raw: bytes) -> Mapping[str, Any]:
    """The `request` of an AdmissionReview body, or Rejected saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Rejected(f"body is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("kind") != "AdmissionReview":
        raise Rejected("body is not an AdmissionReview (kind must be AdmissionReview)")
    if body.get("apiVersion") != "admission.k8s.io/v1":
        raise Rejected(f"AdmissionReview apiVersion {body.get('apiVersion')!r} is not supported; "
                       "set admissionReviewVersions: [v1]")
    request = body.get("request")
    if not isinstance(request, dict) or not isinstance(request.get("uid"), str) or not request["uid"]:
        raise Rejected("AdmissionReview has no request.uid")
    return request


def review(raw: bytes, snapshot: Snapshot) -> tuple[dict[str, Any], Outcome]:
    """Answer one AdmissionReview body; raises only Rejected (for a body that is not one)."""
    request = parse(raw)
    uid, namespace = request["uid"], request.get("namespace")
    dry_run = bool(request.get("dryRun"))
    kind = (request.get("kind") or {}).get("kind")
    pod = request.get("object")
    if kind != "Pod" or (request.get("resource") or {}).get("resource", "pods") != "pods":
        return _response(uid), Outcome("ignored", "not_a_pod", f"{kind} is not a Pod: nothing to inject",
                                       namespace, dry_run=dry_run)
    if request.get("operation", "CREATE") != "CREATE":
        return _response(uid), Outcome("ignored", "not_create", "only CREATE is injected", namespace, dry_run=dry_run)
    if not isinstance(pod, dict) or not isinstance(namespace, str) or not namespace:
        msg = "pilotmesh: the pod in this request is not an object with a namespace; not injected"
        return _response(uid, warnings=[msg]), Outcome("skipped", "malformed", msg, namespace, dry_run=dry_run)
    owner = _controller(pod)
    choice = snapshot.mesh_for(namespace)
    if choice is None:
        return _response(uid), Outcome("skipped", "no_mesh", f"no PilotMesh selects namespace {namespace}",
                                       namespace, owner, dry_run=dry_run)
    if choice.settings is None:
        msg = f"pilotmesh: {choice.error}; not injected"
        return _response(uid, warnings=[msg]), Outcome("skipped", "invalid_mesh", msg, namespace, owner,
                                                       dry_run=dry_run)
    mesh = choice.settings
    meta = pod.get("metadata")
    pod = {**pod, "metadata": {**(meta if isinstance(meta, Mapping) else {}), "namespace": namespace}}
    verdict = _verdict(pod, snapshot, mesh)
    result = inject(pod, mesh, TransportDecision.from_verdict(verdict) if verdict else None, namespace=namespace,
                    namespace_labels=snapshot.namespace_labels(namespace))
    if not result.injected:
        warnings = [f"pilotmesh: not injected: {result.message}"] if result.skip in WARN_SKIPS else []
        return _response(uid, warnings=warnings), Outcome("skipped", result.skip or "", result.message, namespace,
                                                          owner, dry_run=dry_run)
    warnings = [f"pilotmesh: {w}" for w in result.warnings]
    if verdict is not None and verdict.verdict == "no-egress":
        warnings.append("pilotmesh: this pod's NetworkPolicies allow neither UDP nor TCP 443 to the rendezvous; "
                        "its daemon will not connect until egress to TCP 443 is allowed")
    return _response(uid, result.patch, warnings), Outcome("injected", "injected", result.message, namespace, owner,
                                                           result.transport, verdict, dry_run)


def _verdict(pod: dict, snapshot: Snapshot, mesh) -> Any:
    """The NetworkPolicy verdict when the transport is decided here (policy auto); None otherwise."""
    asked = ((pod.get("metadata") or {}).get("annotations") or {}).get(contract.ANNOTATION_TRANSPORT, mesh.transport)
    if mesh.mode != "sidecar" or asked != "auto":
        return None
    meta = pod.get("metadata") or {}
    labels = meta.get("labels") if isinstance(meta.get("labels"), Mapping) else {}
    # judged as it will run: with the label injection adds (policies may select injected pods by it)
    pod = {**pod, "metadata": {**meta, "labels": {**labels, contract.LABEL_INJECTED: mesh.mode}}}
    try:
        return analyze(pod, snapshot.namespaces, snapshot.policies, snapshot.analyzer_settings(mesh))
    except ValueError:
        return None  # an unreadable pod or settings: inject() reports the pod; the daemon decides the transport


def _controller(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    meta = pod.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller"):
            return ref
    return None


__all__ = ["review", "parse", "Rejected", "Outcome", "SKIP_REASONS", "Snapshot"]
