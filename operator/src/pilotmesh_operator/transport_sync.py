"""Re-deciding injected pods' transports when policies, namespaces or meshes change (the side effects).

Watch events go to `TransportSync.observe()` (the Tracker turns them into namespaces to look at); the
`run()` loop waits `debounce` seconds after the first change so a burst becomes one batch, then lists the
injected pods of those namespaces by label (paginated), calls the pure `redecide()`, merge-patches the
pods' `pilot.io/transport` and `pilot.io/transport-reason`, and posts one `TransportChanged` Event per
owner. Nothing runs before every cache has its first full listing; then all pods are re-decided once,
and again every `resync` seconds (pods admitted while the injector's cache lagged a change).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from . import clusterread, k8s
from .injector.events import EventPoster
from .injector.snapshot import Snapshot
from .redecide import Change, event_messages, redecide
from .transport_state import ALL, CompileCache, Pending, Tracker, read_namespaces

log = logging.getLogger(__name__)
EVENT_REASON = "TransportChanged"
CLUSTER_LIST_ABOVE = 20   # more namespaces than this: one cluster-wide list (by label) instead of one per namespace


@dataclasses.dataclass
class Sources:
    """Where the current objects come from (the operator's caches); `synced()` is False until all are listed."""

    meshes: Callable[[], Iterable[Mapping[str, Any]]]
    namespaces: Callable[[], Iterable[Mapping[str, Any]]]
    policies: Callable[[], Iterable[Mapping[str, Any]]]
    synced: Callable[[], bool] = lambda: True


@dataclasses.dataclass
class BatchResult:
    scope: str
    pods: int = 0
    changed: int = 0
    transports_changed: int = 0
    failed: int = 0
    seconds: float = 0.0


class TransportSync:
    def __init__(self, api: ApiClient, *, operator_namespace: str = "pilot-system",
                 cluster_version: tuple[int, int] | None = None, debounce: float = 0.25, resync: float = 600.0,
                 workers: int = 8, poster: EventPoster | None = None) -> None:
        self.api, self.operator_namespace, self.cluster_version = api, operator_namespace, cluster_version
        self.debounce, self.resync = debounce, resync
        self.tracker, self.pending, self.cache = Tracker(), Pending(), CompileCache()
        self.poster = poster or EventPoster(api, window=0.0, component="pilotmesh-operator")
        self.listed = False          # the watch caches had their first full listing
        self.last: BatchResult | None = None
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="transport-patch")
        self._wake: asyncio.Event | None = None

    # -- inputs (called on the event loop) --------------------------------------------------
    def observe(self, kind: str, obj: Mapping[str, Any], deleted: bool = False) -> None:
        self.schedule(self.tracker.observe(kind, obj, deleted))

    def replace(self, kind: str, objects: Iterable[Mapping[str, Any]], collection: tuple[str, str]) -> None:
        self.schedule(self.tracker.replace(kind, objects, collection))

    def mark_listed(self) -> None:
        """The caches are complete: re-decide everything once."""
        if not self.listed:
            self.listed = True
            self.schedule(ALL)

    def schedule(self, scope: Pending) -> None:
        if scope:
            self.pending.add(scope)
            if self._wake is not None:
                self._wake.set()

    # -- the loop -------------------------------------------------------------------------
    async def run(self, sources: Sources) -> None:
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        if self.pending:
            self._wake.set()
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self.resync)
            except asyncio.TimeoutError:
                self.schedule(ALL)
            self._wake.clear()
            if not self.listed or not self.pending:
                continue
            if not sources.synced():
                await asyncio.sleep(0.5)
                self._wake.set()
                continue
            await asyncio.sleep(self.debounce)    # let a burst of changes become one batch
            scope = self.pending.take()
            snapshot = self.snapshot(sources)
            try:
                self.last = await loop.run_in_executor(None, self.apply, scope, snapshot)
            except Exception as exc:  # noqa: BLE001 - the API may be briefly away: retry the same scope
                log.warning("transport re-decision for %s failed (%s); retrying", scope.describe(), exc)
                self.schedule(scope)
                await asyncio.sleep(2.0)

    def snapshot(self, sources: Sources) -> Snapshot:
        """The current objects as one Snapshot, unchanged policies not recompiled."""
        meshes = sorted(sources.meshes(), key=lambda m: (str((m.get("metadata") or {}).get("creationTimestamp")),
                                                         str((m.get("metadata") or {}).get("name"))))
        namespaces = {str((n.get("metadata") or {}).get("name")): n for n in sources.namespaces()}
        snap = Snapshot(meshes=meshes, namespaces=namespaces, policies=self.cache.compile(sources.policies()),
                        cluster_version=self.cluster_version, operator_namespace=self.operator_namespace)
        self.tracker.read_by_meshes = read_namespaces(snap)
        return snap

    # -- the side effects (in a worker thread) --------------------------------------------
    def apply(self, scope: Pending, snapshot: Snapshot) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult(scope.describe())
        pods = self.list_pods(scope)
        result.pods = len(pods)
        changes = redecide(pods, snapshot)
        outcomes = list(self._pool.map(self.patch, changes))
        done = [c for c, outcome in zip(changes, outcomes) if outcome == "patched"]
        for subject, ns, message in event_messages(done):
            self.poster.post(subject, ns, EVENT_REASON, message)
        failed = outcomes.count("failed")
        result.changed, result.failed = len(done), failed
        result.transports_changed = sum(1 for c in changes if c.transport_changed)
        result.seconds = time.perf_counter() - started
        level = logging.INFO if changes else logging.DEBUG
        log.log(level, "transport re-decision in %s: %d pods, %d annotations changed (%d transports), %d failed, "
                "%.0f ms", result.scope, result.pods, result.changed, result.transports_changed, failed,
                result.seconds * 1000)
        return result

    def list_pods(self, scope: Pending) -> list[dict[str, Any]]:
        if scope.everything or len(scope.namespaces) > CLUSTER_LIST_ABOVE:
            pods = clusterread.injected_pods(self.api, None)
            return [p for p in pods if scope.everything or (p.get("metadata") or {}).get("namespace") in scope.namespaces]
        return list(clusterread.injected_pods(self.api, scope.namespaces))

    def patch(self, change: Change) -> str:
        """Merge-patch one pod's annotations: patched, gone (deleted meanwhile) or failed."""
        path = f"/api/v1/namespaces/{change.namespace}/pods/{change.name}"
        try:
            k8s.call(self.api, "PATCH", path, change.patch(), content_type="application/merge-patch+json", timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return "gone"
            log.warning("could not patch pod %s/%s: %s %s", change.namespace, change.name, exc.status, exc.reason)
            return "failed"
        return "patched"
