"""`pilotmesh injector`: the HTTPS admission endpoint, its caches, certificate and health.

POST /inject   AdmissionReview v1 (TLS)          GET /healthz, /readyz (TLS port and metrics port)
GET  /metrics  Prometheus (metrics port, plain HTTP)
Ready only once the certificate is loaded and every cache has synced.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .. import k8s
from ..k8s import POLICY_PATHS
from ..mesh import parse_kube_version
from . import metrics
from .admission import Rejected, review
from .events import EventPoster
from .informer import Informer, wait_synced
from .snapshot import Snapshot
from .tls import ReloadingContext, files_changed

log = logging.getLogger(__name__)
MAX_BODY = 8 * 1024 * 1024



@dataclasses.dataclass
class InjectorConfig:
    listen_host: str = "0.0.0.0"
    listen_port: int = 8443
    metrics_host: str = "0.0.0.0"
    metrics_port: int = 9090
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    tls_secret: str | None = None       # NAMESPACE/NAME: read the certificate through the API instead
    operator_namespace: str = "pilot-system"
    kubeconfig: str | None = None


class AdmissionEndpoint:
    """POST /inject: the pure `review()` behind HTTP, with metrics and Events (none for dry runs)."""

    def __init__(self, snapshot: Callable[[], Snapshot], events: EventPoster | None = None) -> None:
        self.snapshot, self.events = snapshot, events

    async def __call__(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        raw = await request.read()
        try:
            body, outcome = review(raw, self.snapshot())
        except Rejected as exc:
            metrics.FAILURES.labels("bad_request").inc()
            return web.json_response({"error": str(exc)}, status=400)
        except Exception:  # noqa: BLE001 - never a 500: admit the pod unchanged and say so
            log.exception("admission failed")
            metrics.FAILURES.labels("internal").inc()
            return web.json_response(_allow_with_warning(
                raw, "pilotmesh: the injector hit an internal error; pod not injected"))
        metrics.ADMISSIONS.labels(outcome.result, outcome.reason).inc()
        if outcome.verdict is not None:
            metrics.VERDICTS.labels(outcome.verdict.verdict, outcome.verdict.confidence).inc()
        if self.events and not outcome.dry_run:
            if outcome.result == "injected":
                self.events.post(outcome.owner, outcome.namespace, "Injected", outcome.message)
            elif outcome.result == "skipped" and outcome.reason != "annotation_absent":
                self.events.post(outcome.owner, outcome.namespace, "InjectionSkipped",
                                 f"{outcome.reason}: {outcome.message}", "Warning")
        metrics.LATENCY.observe(time.perf_counter() - started)
        log.debug("admission %s %s: %s", outcome.result, outcome.reason, outcome.message)
        return web.json_response(body)


class Injector:
    def __init__(self, config: InjectorConfig) -> None:
        self.config = config
        self.api = k8s.api_client(config.kubeconfig)
        self.tls = ReloadingContext()
        self.cluster_version = parse_kube_version(k8s.server_version(self.api))
        self.snapshot = Snapshot(cluster_version=self.cluster_version, operator_namespace=config.operator_namespace)
        self._dirty = True
        self.meshes = Informer(self.api, "/apis/pilot.io/v1alpha1/pilotmeshes", on_change=self._changed, optional=True)
        self.namespaces = Informer(self.api, "/api/v1/namespaces", on_change=self._changed)
        self.policies = [Informer(self.api, p, on_change=self._changed, optional=opt) for p, opt in POLICY_PATHS]
        self.informers = [self.meshes, self.namespaces, *self.policies]
        if config.tls_secret:
            ns, name = config.tls_secret.split("/", 1)
            self.secret = Informer(self.api, f"/api/v1/namespaces/{ns}/secrets", on_change=self._secret_changed,
                                   query={"fieldSelector": f"metadata.name={name}"})
            self.informers.append(self.secret)
        self.endpoint = AdmissionEndpoint(self.current, EventPoster(self.api))

    # -- state -------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._dirty = True

    def _secret_changed(self) -> None:
        for secret in self.secret.values():
            if self.tls.load_secret(secret) and self.tls.not_after:
                metrics.CERT_EXPIRY.set(self.tls.not_after.timestamp())

    def current(self) -> Snapshot:
        if self._dirty:
            self._dirty = False
            self.snapshot = Snapshot.build(
                self.meshes.values(), self.namespaces.values(), [o for i in self.policies for o in i.values()],
                cluster_version=self.cluster_version, operator_namespace=self.config.operator_namespace)
        return self.snapshot

    def ready(self) -> tuple[bool, str]:
        if not self.tls.loaded:
            return False, "serving certificate not loaded"
        waiting = [i.path for i in self.informers if not i.synced.is_set()]
        return (False, f"caches not synced: {', '.join(waiting)}") if waiting else (True, "ok")

    # -- HTTP --------------------------------------------------------------------------------
    async def handle_health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def handle_ready(self, request: web.Request) -> web.Response:
        ok, why = self.ready()
        return web.Response(text=why, status=200 if ok else 503)

    async def handle_metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _watch_files(self) -> None:
        last = None
        while True:
            changed = files_changed(self.config.tls_cert_file, self.config.tls_key_file, last)
            if changed:
                last = changed
                if self.tls.load_files(self.config.tls_cert_file, self.config.tls_key_file) and self.tls.not_after:
                    metrics.CERT_EXPIRY.set(self.tls.not_after.timestamp())
            await asyncio.sleep(2)

    async def run(self, started: asyncio.Event | None = None) -> None:
        for informer in self.informers:
            informer.start()
        if self.config.tls_cert_file:
            asyncio.create_task(self._watch_files())
        app = web.Application(client_max_size=MAX_BODY)
        app.add_routes([web.post("/inject", self.endpoint), web.get("/healthz", self.handle_health),
                        web.get("/readyz", self.handle_ready)])
        plain = web.Application()
        plain.add_routes([web.get("/metrics", self.handle_metrics), web.get("/healthz", self.handle_health),
                          web.get("/readyz", self.handle_ready)])
        runners = [web.AppRunner(app, access_log=None), web.AppRunner(plain, access_log=None)]
        for r in runners:
            await r.setup()
        await asyncio.get_running_loop().run_in_executor(None, wait_synced, self.informers, 60)
        await web.TCPSite(runners[0], self.config.listen_host, self.config.listen_port,
                          ssl_context=self.tls.context).start()
        if self.config.metrics_port:
            await web.TCPSite(runners[1], self.config.metrics_host, self.config.metrics_port).start()
        log.info("injector listening on https://%s:%d/inject (ready: %s)", self.config.listen_host,
                 self.config.listen_port, self.ready()[1])
        if started:
            started.set()
        try:
            await asyncio.Event().wait()
        finally:
            for r in runners:
                await r.cleanup()
            for informer in self.informers:
                informer.stop()


def _allow_with_warning(raw: bytes, warning: str) -> dict[str, Any]:
    uid = ""
    try:
        uid = json.loads(raw)["request"]["uid"]
    except Exception:  # noqa: BLE001 - best effort: the uid is all we need
        pass
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "response": {"uid": uid, "allowed": True, "warnings": [warning]}}
