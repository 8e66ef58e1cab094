"""Reading what `pilotmesh why` and `pilotmesh status` check, straight from the API (no caches).

The injector is probed as the apiserver reaches it: by the webhook's clientConfig URL (verified with the
webhook's own caBundle, so a bundle that does not match the served certificate shows up here), or through
the apiserver's service proxy for a `service:` client config.
"""
from __future__ import annotations

import base64
import ssl
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from . import desired, k8s
from .clusterread import MESHES, list_all, policies
from .injector.snapshot import Snapshot
from .mesh import parse_kube_version
from .why import WebhookFacts

MWC_PATH = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"


def snapshot(api: ApiClient, operator_namespace: str) -> Snapshot:
    """PilotMeshes, Namespaces and every policy kind served, as the injector would see them."""
    return Snapshot.build(list(list_all(api, MESHES, optional=True)), list(list_all(api, "/api/v1/namespaces")),
                          policies(api), cluster_version=parse_kube_version(k8s.server_version(api)),
                          operator_namespace=operator_namespace)


def secret_data(api: ApiClient, operator_namespace: str) -> dict[str, bytes] | None:
    secret = k8s.get(api, f"/api/v1/namespaces/{operator_namespace}/secrets/{desired.TLS_SECRET}")
    if secret is None:
        return None
    return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}


def webhook_configuration(api: ApiClient, mesh_name: str) -> dict[str, Any] | None:
    return k8s.get(api, f"{MWC_PATH}/{desired.webhook_name(mesh_name)}")


def probe_injector(api: ApiClient, mwc: Mapping[str, Any] | None, timeout: float = 3) -> tuple[bool, str]:
    """(ready, what was seen) for the injector the configuration points at."""
    hooks = (mwc or {}).get("webhooks") or []
    if not hooks:
        return False, "no webhook configuration to follow to the injector"
    client = hooks[0].get("clientConfig") or {}
    if client.get("url"):
        url = urlsplit(client["url"])
        bundle = base64.b64decode(client.get("caBundle") or "").decode() or None
        try:
            ctx = ssl.create_default_context(cadata=bundle) if bundle else ssl.create_default_context()
            with urllib.request.urlopen(f"https://{url.netloc}/readyz", context=ctx, timeout=timeout) as resp:
                return resp.status == 200, f"injector at {url.netloc} answers /readyz: {resp.read(200).decode()}"
        except Exception as exc:  # noqa: BLE001 - any failure is the answer, with its reason
            return False, f"injector at {url.netloc} is unreachable from here ({_reason(exc)})"
    svc = client.get("service") or {}
    ns, name, port = svc.get("namespace"), svc.get("name"), svc.get("port", 443)
    try:
        text = k8s._request(api, "GET", f"/api/v1/namespaces/{ns}/services/https:{name}:{port}/proxy/readyz",
                            timeout=timeout).read().decode(errors="replace")
        return True, f"injector Service {ns}/{name} answers /readyz through the apiserver: {text[:200]}"
    except ApiException as exc:
        return False, f"injector Service {ns}/{name} does not answer /readyz ({exc.status} {exc.reason})"
    except Exception as exc:  # noqa: BLE001
        return False, f"injector Service {ns}/{name} is unreachable ({_reason(exc)})"


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return f"{type(inner or exc).__name__}: {inner or exc}"


def webhook_facts(api: ApiClient, mesh_name: str, operator_namespace: str) -> WebhookFacts:
    mwc = webhook_configuration(api, mesh_name)
    data = secret_data(api, operator_namespace)
    return WebhookFacts(mwc, (data or {}).get("ca-bundle.crt") if data is not None else None, probe_injector(api, mwc))
