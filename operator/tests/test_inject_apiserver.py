"""Tier-1: the real apiserver accepts every injected golden object, and an injected pod passes PSA "restricted"."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from pilotmesh_operator.mesh import MeshSettings
from pilotmesh_operator.render.inject import inject

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inject"
pytestmark = pytest.mark.kube

_CREATE = {  # kind -> (kubernetes.client API class, its create method)
    "Pod": ("CoreV1Api", "create_namespaced_pod"),
    "Deployment": ("AppsV1Api", "create_namespaced_deployment"),
    "StatefulSet": ("AppsV1Api", "create_namespaced_stateful_set"),
    "DaemonSet": ("AppsV1Api", "create_namespaced_daemon_set"),
    "Job": ("BatchV1Api", "create_namespaced_job"),
    "CronJob": ("BatchV1Api", "create_namespaced_cron_job"),
}


def _ensure_namespace(core: Any, name: str, labels: dict[str, str]) -> None:
    import kubernetes

    try:
        core.create_namespace({"metadata": {"name": name, "labels": labels}})
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise


def _dry_run_create(api: Any, obj: dict[str, Any], namespace: str) -> None:
    import kubernetes

    cls, method = _CREATE[obj["kind"]]
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = namespace
    getattr(getattr(kubernetes.client, cls)(api), method)(namespace, obj, dry_run="All")


def _injected_goldens() -> list[str]:
    out = []
    for path in sorted(GOLDEN.glob("*.injected.yaml")):
        text = path.read_text()
        if "# skip:" not in text and yaml.safe_load(text).get("kind") in _CREATE:
            out.append(path.name)
    return out


@pytest.mark.parametrize("name", _injected_goldens())
def test_apiserver_accepts_injected_golden(kube, name: str) -> None:
    import kubernetes

    api = kube.client()
    _ensure_namespace(kubernetes.client.CoreV1Api(api), "golden", {})
    _dry_run_create(api, yaml.safe_load((GOLDEN / name).read_text()), "golden")


def test_injected_pod_passes_restricted_pod_security(kube) -> None:
    import kubernetes

    api = kube.client()
    _ensure_namespace(kubernetes.client.CoreV1Api(api), "restricted",
                      {"pod-security.kubernetes.io/enforce": "restricted"})
    restricted_ctx = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True,
                      "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "app-", "annotations": {"pilot.io/inject": "true"}},
           "spec": {"containers": [{"name": "app", "image": "example/app:1", "securityContext": restricted_ctx}],
                    "initContainers": [{"name": "setup", "image": "example/setup:1",
                                        "securityContext": restricted_ctx}]}}
    for native in ("always", "never"):
        mesh = MeshSettings.from_spec({"daemon": {"nativeSidecar": native}})
        result = inject(pod, mesh, namespace="restricted")
        assert result.injected, result.message
        _dry_run_create(api, result.obj, "restricted")   # raises 403 naming the violation if not restricted
