"""kopf glue for re-deciding injected pods' transports when policies change (the work: transport_sync.py).

- NetworkPolicies, Namespaces, PilotMeshes: kopf indexes are the caches (kopf runs no other handler
  until every index has its first full listing, so the first batch never sees half a cluster), and
  on-event handlers tell the TransportSync what changed.
- Calico, Cilium and (Baseline)AdminNetworkPolicy kinds: list+watch threads (injector.informer) that
  look again every minute while their CRDs are missing, so clusters without them log nothing.
Pods are never watched: the sync lists injected pods by label when something changed.
"""
from __future__ import annotations

import asyncio
import os
from typing import Any

import kopf

from . import k8s
from .injector.informer import Informer
from .injector.server import POLICY_PATHS
from .transport_state import MESH, NAMESPACE, POLICY
from .transport_sync import Sources, TransportSync

NETPOLS = ("networking.k8s.io", "v1", "networkpolicies")
NAMESPACES = ("v1", "namespaces")
MESHES = ("pilot.io", "v1alpha1", "pilotmeshes")
KINDS = {"adminnetworkpolicies": "AdminNetworkPolicy", "baselineadminnetworkpolicies": "BaselineAdminNetworkPolicy",
         "networkpolicies": "NetworkPolicy", "globalnetworkpolicies": "GlobalNetworkPolicy",
         "ciliumnetworkpolicies": "CiliumNetworkPolicy",
         "ciliumclusterwidenetworkpolicies": "CiliumClusterwideNetworkPolicy"}


def collection(path: str) -> tuple[str, str]:
    """(apiVersion, kind) of a collection path such as /apis/cilium.io/v2/ciliumnetworkpolicies."""
    _, _, group, version, plural = path.split("/")
    return f"{group}/{version}", KINDS[plural]


@kopf.index(*NETPOLS)
def pilotmesh_netpols(body: kopf.Body, **_: Any) -> dict:
    return {None: dict(body)}


@kopf.index(*NAMESPACES)
def pilotmesh_namespaces(body: kopf.Body, **_: Any) -> dict:
    return {None: {"metadata": {"name": body.metadata.name, "labels": dict(body.metadata.labels)}}}


@kopf.index(*MESHES)
def pilotmesh_meshes(body: kopf.Body, **_: Any) -> dict:
    return {None: dict(body)}


def _values(index: Any) -> list:
    return [v for key in index for v in index[key]]


@kopf.on.startup()
async def start_transport_sync(memo: kopf.Memo, pilotmesh_netpols: kopf.Index, pilotmesh_namespaces: kopf.Index,
                               pilotmesh_meshes: kopf.Index, **_: Any) -> None:
    loop = asyncio.get_running_loop()
    reconciler = memo.get("reconciler")
    settings = getattr(reconciler, "settings", None)
    sync = TransportSync(k8s.api_client(os.environ.get("KUBECONFIG")),
                         operator_namespace=getattr(settings, "namespace", "pilot-system"),
                         cluster_version=getattr(reconciler, "cluster_version", None))
    informers = []
    for path, optional in POLICY_PATHS:
        if optional:
            api_version, kind = collection(path)
            informer = Informer(sync.api, path, optional=True)
            informer.on_change = lambda i=informer, c=(api_version, kind): loop.call_soon_threadsafe(
                sync.replace, POLICY, [{"apiVersion": c[0], "kind": c[1], **o} for o in i.values()], c)
            informers.append(informer.start())

    def policies() -> list:
        return _values(pilotmesh_netpols) + [
            {"apiVersion": c[0], "kind": c[1], **o} for i in informers for c in [collection(i.path)] for o in i.values()]

    sources = Sources(meshes=lambda: _values(pilotmesh_meshes), namespaces=lambda: _values(pilotmesh_namespaces),
                      policies=policies, synced=lambda: all(i.synced.is_set() for i in informers))
    memo["transport_sync"], memo["transport_informers"] = sync, informers
    memo["transport_task"] = asyncio.create_task(sync.run(sources), name="transport re-decision")


@kopf.on.cleanup()
async def stop_transport_sync(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("transport_task")
    if task is not None:
        task.cancel()
    for informer in memo.get("transport_informers") or []:
        informer.stop()


def _observe(memo: kopf.Memo, kind: str, event: dict, body: kopf.Body) -> None:
    sync: TransportSync | None = memo.get("transport_sync")
    if sync is not None:
        sync.observe(kind, dict(body), deleted=event.get("type") == "DELETED")
        sync.mark_listed()   # kopf calls event handlers only once every index is listed


@kopf.on.event(*NETPOLS)
async def netpol_changed(memo: kopf.Memo, event: dict, body: kopf.Body, **_: Any) -> None:
    _observe(memo, POLICY, event, body)


@kopf.on.event(*NAMESPACES)
async def namespace_changed(memo: kopf.Memo, event: dict, body: kopf.Body, **_: Any) -> None:
    _observe(memo, NAMESPACE, event, body)


@kopf.on.event(*MESHES)
async def mesh_changed(memo: kopf.Memo, event: dict, body: kopf.Body, **_: Any) -> None:
    _observe(memo, MESH, event, body)
