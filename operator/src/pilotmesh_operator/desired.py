"""What the operator wants to exist, as pure functions of the mesh and the operator's own settings.

The MutatingWebhookConfiguration of a mesh has two webhooks, so that only pods that may be injected ever
reach the injector (no other injector filters this much on the server side):
  pods.inject.pilot.io        namespaces without the default label; only pods that carry the
                              `pilot.io/inject` annotation or label (any value: a wrong value gets a warning)
  namespaces.inject.pilot.io  namespaces labelled `pilot.io/inject=true`; every pod (opt-out per pod)
Both exclude kube-system, kube-public, kube-node-lease and the operator's namespace, and AND the mesh's
own namespaceSelector. The injector is idempotent, so `reinvocationPolicy: IfNeeded` is safe.
"""
from __future__ import annotations

import base64
import dataclasses
from collections.abc import Mapping
from typing import Any

from pilot_daemon import contract

from .mesh import ALWAYS_EXCLUDED_NAMESPACES, MeshSettings

INJECTOR = "pilotmesh-injector"
TLS_SECRET = "pilotmesh-injector-tls"
LABELS = {"app.kubernetes.io/name": INJECTOR, "app.kubernetes.io/part-of": "pilotmesh",
          "app.kubernetes.io/managed-by": "pilotmesh-operator"}
MESH_LABEL = "pilot.io/mesh"
INJECT_PATH = "/inject"

HAS_OPT_IN = ("(has(object.metadata.annotations) && '{key}' in object.metadata.annotations) || "
              "(has(object.metadata.labels) && '{key}' in object.metadata.labels)").format(key=contract.ANNOTATION_INJECT)


@dataclasses.dataclass(frozen=True)
class OperatorSettings:
    namespace: str = "pilot-system"
    injector_image: str = "ghcr.io/pilotmesh/operator:0.1.0"
    injector_replicas: int = 2
    injector_host_network: bool = False
    injector_port: int = 8443
    webhook_url: str | None = None          # url: client config (loopback control planes); else service:
    manage_injector: bool = True            # create the injector Deployment/Service/PDB
    injector_resources: Mapping[str, Any] = dataclasses.field(default_factory=lambda: {
        "requests": {"cpu": "50m", "memory": "96Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}})
    injector_anti_affinity: str = "soft"    # soft | hard | none
    injector_pdb: bool = True               # with two or more replicas

    @property
    def cert_names(self) -> tuple[str, ...]:
        svc = f"{INJECTOR}.{self.namespace}.svc"
        names = (svc, f"{svc}.cluster.local", f"{INJECTOR}.{self.namespace}")
        if self.webhook_url:
            from urllib.parse import urlsplit
            host = urlsplit(self.webhook_url).hostname
            names = ((host,) if host else ()) + names
        return names


def webhook_name(mesh_name: str) -> str:
    return f"pilotmesh-{mesh_name}"


def _namespace_selector(mesh: MeshSettings, operator_namespace: str, default_on: bool) -> dict[str, Any]:
    selector = dict(mesh.namespace_selector or {})
    expressions = list(selector.get("matchExpressions") or [])
    expressions.append({"key": "kubernetes.io/metadata.name", "operator": "NotIn",
                        "values": sorted(ALWAYS_EXCLUDED_NAMESPACES | {operator_namespace})})
    expressions.append({"key": contract.LABEL_INJECT, "operator": "In" if default_on else "NotIn", "values": ["true"]})
    selector["matchExpressions"] = expressions
    return selector


def webhook_configuration(mesh_name: str, mesh: MeshSettings, ca_bundle: bytes,
                          settings: OperatorSettings) -> dict[str, Any]:
    if settings.webhook_url:
        client: dict[str, Any] = {"url": settings.webhook_url}
    else:
        client = {"service": {"namespace": settings.namespace, "name": INJECTOR, "path": INJECT_PATH, "port": 443}}
    client["caBundle"] = base64.b64encode(ca_bundle).decode()

    def hook(name: str, default_on: bool) -> dict[str, Any]:
        out = {
            "name": name, "admissionReviewVersions": ["v1"], "sideEffects": "NoneOnDryRun",
            "failurePolicy": mesh.failure_policy, "timeoutSeconds": mesh.timeout_seconds,
            "reinvocationPolicy": "IfNeeded", "matchPolicy": "Equivalent", "clientConfig": client,
            "namespaceSelector": _namespace_selector(mesh, settings.namespace, default_on),
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                       "resources": ["pods"], "scope": "Namespaced"}],
        }
        if not default_on:
            out["matchConditions"] = [{"name": "opted-in", "expression": HAS_OPT_IN}]
        return out

    return {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": webhook_name(mesh_name), "labels": {**LABELS, MESH_LABEL: mesh_name}},
        "webhooks": [hook("pods.inject.pilot.io", False), hook("namespaces.inject.pilot.io", True)],
    }


def tls_secret(settings: OperatorSettings, data: Mapping[str, bytes]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": TLS_SECRET, "namespace": settings.namespace, "labels": dict(LABELS)},
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}}


def injector_objects(settings: OperatorSettings) -> list[dict[str, Any]]:
    """Deployment, Service and PodDisruptionBudget of the injector (sidecar mode)."""
    selector = {"app.kubernetes.io/name": INJECTOR}
    meta = {"name": INJECTOR, "namespace": settings.namespace, "labels": dict(LABELS)}
    pod_spec: dict[str, Any] = {
        "serviceAccountName": INJECTOR,
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
        **_anti_affinity(settings.injector_anti_affinity, selector),
        "containers": [{
            "name": "injector", "image": settings.injector_image,
            "args": ["injector", f"--listen=:{settings.injector_port}", "--metrics-listen=:9090",
                     "--tls-cert=/tls/tls.crt", "--tls-key=/tls/tls.key", "--log-format=json"],
            "env": [{"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
            "ports": [{"name": "https", "containerPort": settings.injector_port},
                      {"name": "metrics", "containerPort": 9090}],
            "readinessProbe": {"httpGet": {"path": "/readyz", "port": "metrics"}, "periodSeconds": 5},
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "metrics"}, "periodSeconds": 10},
            "resources": dict(settings.injector_resources),
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": True}],
        }],
        "volumes": [{"name": "tls", "secret": {"secretName": TLS_SECRET}}],
    }
    if settings.injector_host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "ClusterFirstWithHostNet"
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                  "spec": {"replicas": settings.injector_replicas, "selector": {"matchLabels": selector},
                           "template": {"metadata": {"labels": dict(LABELS)}, "spec": pod_spec}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
               "spec": {"selector": selector, "ports": [{"name": "https", "port": 443, "targetPort": "https"}]}}
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": meta,
           "spec": {"minAvailable": 1, "selector": {"matchLabels": selector}}}
    account = {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}
    with_pdb = settings.injector_pdb and settings.injector_replicas > 1
    return [account, deployment, service, pdb] if with_pdb else [account, deployment, service]


def _anti_affinity(mode: str, selector: Mapping[str, str]) -> dict[str, Any]:
    term = {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": dict(selector)}}
    if mode == "hard":
        return {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}}
    if mode == "soft":
        return {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": term}]}}}
    return {}


PLURALS = {"Deployment": "deployments", "Service": "services", "PodDisruptionBudget": "poddisruptionbudgets",
           "ServiceAccount": "serviceaccounts", "Secret": "secrets",
           "MutatingWebhookConfiguration": "mutatingwebhookconfigurations"}
