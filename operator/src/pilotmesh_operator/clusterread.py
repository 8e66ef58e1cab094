"""Reading what the NetworkPolicy analyzer needs straight from the API (paginated lists, no caches).

Used by `pilotmesh transport-verdict --pod NAMESPACE/NAME` and by the operator's transport re-decision
(injected pods are listed by label, page by page: nothing ever watches all pods).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from pilot_daemon import contract

from . import k8s
from .injector.server import POLICY_PATHS
from .injector.snapshot import Snapshot

MESHES = "/apis/pilot.io/v1alpha1/pilotmeshes"
PAGE = 500
INJECTED_SIDECARS = f"{contract.LABEL_INJECTED}=sidecar"


class NotFound(LookupError):
    """An object the command was asked about does not exist; the message names it."""


def list_all(api: ApiClient, path: str, query: dict[str, Any] | None = None, *, optional: bool = False,
             page: int = PAGE) -> Iterator[dict[str, Any]]:
    """Every item of a collection, `page` at a time. With `optional`, a collection not served yields nothing."""
    params = {**(query or {}), "limit": page}
    while True:
        try:
            data = k8s.call(api, "GET", path, query=params)
        except ApiException as exc:
            if optional and exc.status == 404:
                return
            raise
        kind = str(data.get("kind") or "").removesuffix("List")
        api_version = data.get("apiVersion")
        for item in data.get("items") or []:
            item.setdefault("kind", kind)   # list items come without kind/apiVersion
            item.setdefault("apiVersion", api_version)
            yield item
        cont = (data.get("metadata") or {}).get("continue")
        if not cont:
            return
        params["continue"] = cont


def injected_pods(api: ApiClient, namespaces: Iterable[str] | None) -> Iterator[dict[str, Any]]:
    """Injected sidecar-mode pods in `namespaces` (None: the whole cluster), by label selector."""
    query = {"labelSelector": INJECTED_SIDECARS}
    if namespaces is None:
        yield from list_all(api, "/api/v1/pods", query)
        return
    for ns in sorted(namespaces):
        yield from list_all(api, f"/api/v1/namespaces/{ns}/pods", query)


def policies(api: ApiClient) -> list[dict[str, Any]]:
    """Policy objects of every kind the analyzer understands that this cluster serves."""
    return [o for path, optional in POLICY_PATHS for o in list_all(api, path, optional=optional)]


@dataclasses.dataclass
class LiveInput:
    """One pod and everything its verdict depends on, as the cluster has them now."""

    pod: dict[str, Any]
    snapshot: Snapshot
    mesh: str | None            # the PilotMesh whose settings apply, None when no mesh selects the namespace
    settings: dict[str, Any]    # analyzer settings (from that mesh, else the defaults)


def read_live(api: ApiClient, namespace: str, name: str, operator_namespace: str = "pilot-system") -> LiveInput:
    """Read a pod, the namespaces, all policies and the PilotMesh that selects its namespace."""
    pod = k8s.get(api, f"/api/v1/namespaces/{namespace}/pods/{name}")
    if pod is None:
        raise NotFound(f"pod {namespace}/{name} not found (check the name with kubectl get pods -n {namespace})")
    pod.setdefault("kind", "Pod")
    meshes = list(list_all(api, MESHES, optional=True))
    namespaces = list(list_all(api, "/api/v1/namespaces"))
    snapshot = Snapshot.build(meshes, namespaces, policies(api), operator_namespace=operator_namespace)
    choice = snapshot.mesh_for(namespace)
    if choice is None or choice.settings is None:
        return LiveInput(pod, snapshot, choice.name if choice else None, {})
    return LiveInput(pod, snapshot, choice.name, snapshot.analyzer_settings(choice.settings))
