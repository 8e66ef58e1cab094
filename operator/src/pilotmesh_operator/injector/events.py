"""Events about injection, posted on the pod's owner (ReplicaSet, Job, ...) off the admission path.

A bounded queue drained by one thread; the same (owner, reason) is posted at most once per window,
so a Deployment of 500 replicas gets one `Injected` Event, not 500. Dry-run requests post nothing.
"""
from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
import uuid
from collections.abc import Mapping
from typing import Any

from kubernetes.client import ApiClient

from .. import k8s

log = logging.getLogger(__name__)
WINDOW_SECONDS = 600.0


def event_body(owner: Mapping[str, Any], namespace: str, reason: str, message: str, kind: str,
               now: dt.datetime, component: str = "pilotmesh-injector") -> dict[str, Any]:
    """A core/v1 Event about ``owner`` (a controller ownerReference)."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{owner.get('name')}.{uuid.uuid4().hex[:12]}", "namespace": namespace},
        "involvedObject": {"apiVersion": owner.get("apiVersion"), "kind": owner.get("kind"),
                           "name": owner.get("name"), "uid": owner.get("uid"), "namespace": namespace},
        "reason": reason, "message": message[:1024], "type": kind,
        "source": {"component": component}, "reportingComponent": component,
        "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
    }


class EventPoster:
    def __init__(self, api: ApiClient, maxsize: int = 1000, *, window: float = WINDOW_SECONDS,
                 component: str = "pilotmesh-injector") -> None:
        self.api, self.window, self.component = api, window, component
        self._queue: queue.Queue = queue.Queue(maxsize)
        self._recent: dict[tuple, float] = {}
        threading.Thread(target=self._run, name="events", daemon=True).start()

    def post(self, owner: Mapping[str, Any] | None, namespace: str | None, reason: str, message: str,
             kind: str = "Normal") -> None:
        if not owner or not namespace or not owner.get("uid"):
            return
        key, now = (owner["uid"], reason), time.monotonic()
        if now - self._recent.get(key, -self.window) < self.window:
            return
        self._recent[key] = now
        if len(self._recent) > 10000:
            self._recent = {k: t for k, t in self._recent.items() if now - t < self.window}
        try:
            self._queue.put_nowait(event_body(owner, namespace, reason, message, kind, dt.datetime.now(dt.timezone.utc),
                                              self.component))
        except queue.Full:
            log.warning("event queue full; dropped %s for %s", reason, owner.get("name"))

    def _run(self) -> None:
        while True:
            body = self._queue.get()
            try:
                k8s.call(self.api, "POST", f"/api/v1/namespaces/{body['metadata']['namespace']}/events",
                         body, timeout=10)
            except Exception as exc:  # noqa: BLE001 - an Event is best effort
                log.warning("could not post event %s: %s", body["reason"], exc)
