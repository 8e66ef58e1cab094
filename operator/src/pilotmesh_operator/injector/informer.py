"""A list+watch cache of one collection, in a thread: plain dicts keyed by namespace/name.

The admission path reads these caches only; it never calls the API. A collection whose API is not
served (e.g. Calico's CRDs on a cluster without Calico) counts as synced and empty, and is retried.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from .. import k8s

log = logging.getLogger(__name__)


def _key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name')}"


class Informer:
    def __init__(self, api: ApiClient, path: str, *, on_change: Callable[[], None] = lambda: None,
                 query: dict[str, Any] | None = None, optional: bool = False, watch_timeout: int = 300) -> None:
        self.api, self.path, self.query = api, path, dict(query or {})
        self.on_change, self.optional, self.watch_timeout = on_change, optional, watch_timeout
        self.items: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        self.served = True
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer {path}", daemon=True)

    def start(self) -> "Informer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def values(self) -> list[dict[str, Any]]:
        return list(self.items.values())

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                rv = self._list()
                backoff = 0.5
                if rv is None:
                    self._stop.wait(60)   # not served here: look again later
                    continue
                self._watch(rv)
            except ApiException as exc:
                log.warning("list/watch %s failed: %s %s", self.path, exc.status, exc.reason)
            except Exception as exc:  # noqa: BLE001 - a dropped connection or a bad line: relist
                log.warning("list/watch %s failed: %s", self.path, exc)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30)

    def _list(self) -> str | None:
        try:
            data = k8s.call(self.api, "GET", self.path, query=self.query)
        except ApiException as exc:
            if self.optional and exc.status == 404:
                self.served = False
                self.items = {}
                self.synced.set()
                return None
            raise
        self.served = True
        kind, api_version = str(data.get("kind") or "").removesuffix("List"), data.get("apiVersion")
        for o in data.get("items") or []:   # list items of built-in kinds come without kind/apiVersion
            o.setdefault("kind", kind)
            o.setdefault("apiVersion", api_version)
        self.items = {_key(o): o for o in data.get("items") or []}
        self.synced.set()
        self.on_change()
        return data["metadata"]["resourceVersion"]

    def _watch(self, rv: str) -> None:
        query = {**self.query, "resourceVersion": rv, "allowWatchBookmarks": "true",
                 "timeoutSeconds": self.watch_timeout}
        for event in k8s.watch_lines(self.api, self.path, query, self.watch_timeout + 30):
            if self._stop.is_set():
                return
            kind, obj = event.get("type"), event.get("object") or {}
            if kind == "ERROR":
                log.info("watch %s ended: %s", self.path, obj.get("message"))
                return  # relist (410 Gone and the like)
            if kind in ("ADDED", "MODIFIED"):
                self.items = {**self.items, _key(obj): obj}
            elif kind == "DELETED":
                self.items = {k: v for k, v in self.items.items() if k != _key(obj)}
            else:
                continue  # BOOKMARK
            self.on_change()


def wait_synced(informers: list[Informer], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    return all(i.synced.wait(max(0.0, deadline - time.monotonic())) for i in informers)
