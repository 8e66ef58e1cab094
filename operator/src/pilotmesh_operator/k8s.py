"""Kubernetes API access shared by the operator and the injector: client setup and raw JSON calls.

Plain dicts in and out (what the pure render/analysis functions take), through the `kubernetes`
client's configuration and connection pool.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

FIELD_MANAGER = "pilotmesh-operator"

# Policy collections the analyzer understands; the optional ones are read when their CRDs exist.
POLICY_PATHS = (
    ("/apis/networking.k8s.io/v1/networkpolicies", False),
    ("/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies", True),
    ("/apis/policy.networking.k8s.io/v1alpha1/baselineadminnetworkpolicies", True),
    ("/apis/crd.projectcalico.org/v1/networkpolicies", True),
    ("/apis/crd.projectcalico.org/v1/globalnetworkpolicies", True),
    ("/apis/cilium.io/v2/ciliumnetworkpolicies", True),
    ("/apis/cilium.io/v2/ciliumclusterwidenetworkpolicies", True),
)


def api_client(kubeconfig: str | None = None) -> ApiClient:
    """From a kubeconfig file when given, else in-cluster config, else the default kubeconfig."""
    if kubeconfig:
        return kubernetes.config.new_client_from_config(config_file=kubeconfig)
    try:
        kubernetes.config.load_incluster_config()
        return ApiClient()
    except kubernetes.config.ConfigException:
        return kubernetes.config.new_client_from_config()


def _request(api: ApiClient, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
             content_type: str = "application/json", timeout: Any = 30):
    """Send one request through the client's pool and auth; raise ApiException on HTTP errors.

    A JSON ``body`` is given as a dict (the client serialises it); other content types as a str.
    """
    method, url, headers, body, post = api.param_serialize(
        method=method, resource_path=path, query_params=list((query or {}).items()),
        header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
        auth_settings=["BearerToken"])
    resp = api.call_api(method, url, headers, body, post, _request_timeout=timeout)
    if not 200 <= resp.status < 300:
        resp.read()
        raise ApiException(http_resp=resp)
    return resp


def call(api: ApiClient, method: str, path: str, body: Any = None, *, query: dict[str, Any] | None = None,
         content_type: str = "application/json", timeout: float = 30) -> dict[str, Any]:
    """One JSON request; raises ApiException on HTTP errors."""
    data = _request(api, method, path, body, query=query, content_type=content_type, timeout=timeout).read()
    return json.loads(data) if data else {}


def get(api: ApiClient, path: str) -> dict[str, Any] | None:
    """The object at ``path``, or None when it does not exist."""
    try:
        return call(api, "GET", path)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def apply(api: ApiClient, path: str, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
    """Server-side apply ``obj`` at ``path`` (the object's own URL) under our field manager."""
    return call(api, "PATCH", path, json.dumps(obj), query={"fieldManager": FIELD_MANAGER, "force": str(force).lower()},
                content_type="application/apply-patch+yaml")


def delete(api: ApiClient, path: str) -> bool:
    """Delete the object at ``path``; False when it was already gone."""
    try:
        call(api, "DELETE", path, {"propagationPolicy": "Background"})
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def watch_lines(api: ApiClient, path: str, query: dict[str, Any], timeout: float) -> Iterator[dict[str, Any]]:
    """Watch events at ``path`` (a collection URL) as dicts, until the server ends the stream."""
    resp = _request(api, "GET", path, query={**query, "watch": "true"}, timeout=(10, timeout)).response
    try:
        buffer = b""
        for chunk in resp.stream(65536):
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
    finally:
        resp.release_conn()


def object_path(obj: dict[str, Any], plural: str) -> str:
    """The URL of ``obj`` given its resource plural (apiVersion and metadata taken from the object)."""
    api_version, meta = obj["apiVersion"], obj["metadata"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    ns = f"/namespaces/{meta['namespace']}" if meta.get("namespace") else ""
    return f"{base}{ns}/{plural}/{meta['name']}"


def server_version(api: ApiClient) -> str:
    return call(api, "GET", "/version")["gitVersion"]
