"""The operator's side effects: read the cluster, call the pure functions, apply what they return.

The kopf handlers (handlers.py) call `Reconciler.reconcile()` and `.delete()`; nothing here knows kopf.
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from pilot_daemon import contract

from . import certs, desired, k8s
from .injector.snapshot import Snapshot
from .mesh import MeshSettings, MeshSpecError, parse_kube_version
from .podcounts import pod_counts
from .render.daemonset import daemonset_pod, daemonset_name, node_daemonset
from .render.inject import TransportDecision
from .render.netpol import analyze
from .render.netpol.from_pilotmesh import settings_from_pilotmesh
from .status import condition, conflicts

log = logging.getLogger(__name__)
MESHES = "/apis/pilot.io/v1alpha1/pilotmeshes"


def _path(obj: Mapping[str, Any]) -> str:
    return k8s.object_path(dict(obj), desired.PLURALS[obj["kind"]])


class Reconciler:
    def __init__(self, api: ApiClient, settings: desired.OperatorSettings) -> None:
        self.api, self.settings = api, settings
        self.cluster_version = parse_kube_version(k8s.server_version(api))

    # -- shared parts ---------------------------------------------------------------------
    def ensure_certificates(self, now: dt.datetime) -> certs.Plan:
        path = f"/api/v1/namespaces/{self.settings.namespace}/secrets/{desired.TLS_SECRET}"
        secret = k8s.get(self.api, path) or {}
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        plan = certs.plan(data, self.settings.cert_names, now)
        if plan.changed:
            log.info("injector certificate: %s", plan.reason)
            k8s.apply(self.api, path, desired.tls_secret(self.settings, plan.data))
        return plan

    def ensure_injector(self) -> None:
        if self.settings.manage_injector:
            for obj in desired.injector_objects(self.settings):
                k8s.apply(self.api, _path(obj), obj)

    def policies(self) -> list[dict[str, Any]]:
        """Every policy object of the kinds the analyzer reads (kinds whose CRDs are absent are skipped)."""
        out: list[dict[str, Any]] = []
        for path, optional in k8s.POLICY_PATHS:
            try:
                out += k8s.call(self.api, "GET", path).get("items") or []
            except ApiException as exc:
                if not (optional and exc.status == 404):
                    raise
        return out

    def ensure_node_daemons(self, name: str, mesh: MeshSettings, namespaces: list[dict[str, Any]],
                            owned: set[str]) -> dict | None:
        """DaemonSet mode (the mesh's, or a namespace's `pilot.io/mode` label): apply the node DaemonSet
        (transport decided for its own pods); else remove it."""
        ns = self.settings.namespace
        path = f"/apis/apps/v1/namespaces/{ns}/daemonsets/{daemonset_name(name)}"
        labelled = {n["metadata"]["name"] for n in namespaces
                    if ((n["metadata"].get("labels") or {}).get(contract.LABEL_MODE)) == "daemonset"}
        if mesh.mode != "daemonset" and not labelled & owned:
            k8s.delete(self.api, path)
            return None
        transport, reason = mesh.transport, f"PilotMesh spec.transport={mesh.transport}"
        if transport == "auto":
            verdict = analyze(daemonset_pod(name, ns), namespaces, self.policies(),
                              settings_from_pilotmesh(dict(mesh.spec), ns))
            decision = TransportDecision.from_verdict(verdict)
            transport, reason = decision.transport, decision.reason
        k8s.apply(self.api, path, node_daemonset(name, mesh, ns, transport, reason))
        status = (k8s.get(self.api, path) or {}).get("status") or {}
        desired_n, ready_n = status.get("desiredNumberScheduled", 0), status.get("numberReady", 0)
        return condition("NodeDaemonsReady", desired_n > 0 and ready_n >= desired_n,
                         "Ready" if desired_n and ready_n >= desired_n else "Progressing",
                         f"{ready_n}/{desired_n} node daemons ready, transport {transport}: {reason}"[:1024])

    def injector_ready(self, ca_pem: bytes) -> tuple[bool, str]:
        if self.settings.webhook_url:
            url = urlsplit(self.settings.webhook_url)
            ctx = ssl.create_default_context(cadata=ca_pem.decode())
            try:
                with urllib.request.urlopen(f"https://{url.netloc}/readyz", context=ctx, timeout=3) as resp:
                    return resp.status == 200, f"injector at {url.netloc} is ready"
            except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with the reason
                return False, f"injector at {url.netloc} does not answer /readyz: {exc}"
        path = f"/apis/apps/v1/namespaces/{self.settings.namespace}/deployments/{desired.INJECTOR}"
        dep = k8s.get(self.api, path) or {}
        ready = (dep.get("status") or {}).get("readyReplicas") or 0
        return ready > 0, f"{ready} injector replica(s) ready"

    # -- one mesh -------------------------------------------------------------------------
    def reconcile(self, mesh: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
        """Apply everything the mesh needs; return the status fields (conditions without times)."""
        name = mesh["metadata"]["name"]
        mwc_path = f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/{desired.webhook_name(name)}"
        try:
            settings = MeshSettings.from_object(mesh, cluster_version=self.cluster_version,
                                                operator_namespace=self.settings.namespace)
        except MeshSpecError as exc:
            k8s.delete(self.api, mwc_path)
            return {"conditions": [condition("Ready", False, "InvalidSpec", str(exc))]}
        meshes = k8s.call(self.api, "GET", MESHES).get("items") or []
        namespaces = k8s.call(self.api, "GET", "/api/v1/namespaces").get("items") or []
        clash = conflicts(mesh, meshes, namespaces)
        if clash:
            k8s.delete(self.api, mwc_path)
            text = "; ".join(f"PilotMesh {m} already selects namespace(s) {', '.join(sorted(ns))}"
                             for m, ns in sorted(clash.items()))
            return {"conditions": [condition("Conflict", True, "OverlappingNamespaces", f"{text}: injecting nothing"),
                                   condition("Ready", False, "Conflict", text)]}
        plan = self.ensure_certificates(now)
        self.ensure_injector()
        k8s.apply(self.api, mwc_path, desired.webhook_configuration(name, settings, plan.data["ca-bundle.crt"],
                                                                    self.settings))
        owned = self._owned_namespaces(mesh, meshes, namespaces)
        node_daemons = self.ensure_node_daemons(name, settings, namespaces, owned)
        injector_ok, injector_msg = self.injector_ready(plan.data["ca.crt"])
        counts = pod_counts(self._injected_pods(), settings.image, owned)
        ready = injector_ok
        return {
            **counts,
            "certificateNotAfter": plan.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "conditions": [
                condition("CertificateReady", True, "Issued", f"serving certificate valid until "
                          f"{plan.not_after:%Y-%m-%d %H:%M} UTC ({plan.reason})"),
                condition("WebhookReady", True, "Configured",
                          f"MutatingWebhookConfiguration {desired.webhook_name(name)} applied"),
                condition("InjectorReady", injector_ok, "Available" if injector_ok else "Unavailable", injector_msg),
                condition("Conflict", False, "NoOverlap", "no older PilotMesh selects the same namespaces"),
                condition("Ready", ready, "Ready" if ready else "InjectorUnavailable",
                          "pods are injected" if ready else injector_msg),
                *([node_daemons] if node_daemons else []),
            ],
        }

    def _owned_namespaces(self, mesh, meshes, namespaces) -> set[str]:
        snap = Snapshot.build(meshes, namespaces, [])
        name = mesh["metadata"]["name"]
        return {n["metadata"]["name"] for n in namespaces
                if (choice := snap.mesh_for(n["metadata"]["name"])) and choice.name == name}

    def _injected_pods(self) -> list[dict[str, Any]]:
        pods, token = [], None
        while True:
            query = {"labelSelector": contract.LABEL_INJECTED, "limit": 500}
            if token:
                query["continue"] = token
            page = k8s.call(self.api, "GET", "/api/v1/pods", query=query)
            pods += page.get("items") or []
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                return pods

    def delete(self, mesh: Mapping[str, Any]) -> None:
        """The webhook configuration goes first, so no pod creation can hang on a dying injector."""
        name = mesh["metadata"]["name"]
        k8s.delete(self.api, f"/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/"
                             f"{desired.webhook_name(name)}")
        k8s.delete(self.api, f"/apis/apps/v1/namespaces/{self.settings.namespace}/daemonsets/{daemonset_name(name)}")
        others = [m for m in k8s.call(self.api, "GET", MESHES).get("items") or []
                  if m["metadata"]["name"] != name and not m["metadata"].get("deletionTimestamp")]
        if others:
            return
        for obj in reversed(desired.injector_objects(self.settings)):
            k8s.delete(self.api, _path(obj))
        k8s.delete(self.api, f"/api/v1/namespaces/{self.settings.namespace}/secrets/{desired.TLS_SECRET}")

