"""Counting a mesh's injected pods from the pods' own annotations (pure)."""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pilot_daemon import contract


def pod_counts(pods: Iterable[Mapping[str, Any]], image: str, namespaces: set[str]) -> dict[str, int]:
    """injectedPods, outdatedPods (daemon image differs from the mesh's), udpPods, compatPods."""
    counts = {"injectedPods": 0, "outdatedPods": 0, "udpPods": 0, "compatPods": 0}
    for pod in pods:
        meta = pod.get("metadata") or {}
        if meta.get("namespace") not in namespaces or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        annotations = meta.get("annotations") or {}
        try:
            status = json.loads(annotations.get(contract.ANNOTATION_STATUS) or "{}")
        except ValueError:
            status = {}
        if not isinstance(status, dict) or not status:
            continue
        counts["injectedPods"] += 1
        want = annotations.get(contract.ANNOTATION_IMAGE) or image   # a pod pinned to an image is not outdated
        if status.get("image") and status["image"] != want:
            counts["outdatedPods"] += 1
        transport = annotations.get(contract.ANNOTATION_TRANSPORT)
        if transport in ("udp", "compat"):
            counts[f"{transport}Pods"] += 1
    return counts
