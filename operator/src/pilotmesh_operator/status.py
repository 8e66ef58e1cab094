"""PilotMesh status as pure functions: conflicts between meshes, and the conditions to report."""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .injector.snapshot import mesh_order
from .render.netpol.selectors import label_selector


def _selects(mesh: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    try:
        return label_selector((mesh.get("spec") or {}).get("namespaceSelector") or {}, "namespaceSelector")(dict(labels))
    except ValueError:
        return False


def conflicts(mesh: Mapping[str, Any], meshes: Iterable[Mapping[str, Any]],
              namespaces: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Older meshes that select a namespace ``mesh`` selects too: {older mesh name: [namespaces]}."""
    mine = mesh_order(mesh)
    older = [m for m in meshes if mesh_order(m) < mine]
    out: dict[str, list[str]] = {}
    for ns in namespaces:
        meta = ns.get("metadata") or {}
        labels = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta.get("name")}
        if not _selects(mesh, labels):
            continue
        for other in older:
            if _selects(other, labels):
                out.setdefault(other["metadata"]["name"], []).append(str(meta.get("name")))
    return out


def condition(ctype: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
    return {"type": ctype, "status": "True" if ok else "False", "reason": reason, "message": message}


def merge_conditions(previous: Sequence[Mapping[str, Any]] | None, new: Sequence[Mapping[str, Any]],
                     generation: int | None, now: dt.datetime) -> list[dict[str, Any]]:
    """Keep lastTransitionTime when a condition's status did not change (the Kubernetes convention)."""
    before = {c.get("type"): c for c in previous or [] if isinstance(c, Mapping)}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for c in new:
        old = before.get(c["type"])
        since = old.get("lastTransitionTime") if old and old.get("status") == c["status"] else stamp
        out.append({**c, "lastTransitionTime": since or stamp, "observedGeneration": generation})
    return out
