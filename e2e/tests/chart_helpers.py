"""Helpers shared by the test_chart_* modules: render the chart, pick objects, mint ServiceAccount kubeconfigs."""
from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from kubernetes import client

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "pilotmesh"
KUBE_VERSION = "1.36.3"   # for `helm template` only: our Helm build defaults to 1.20, below the chart's minimum


def kubectl(kube, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", "--kubeconfig", str(kube.kubeconfig), *args], input=stdin,
                          capture_output=True, text=True, check=check, timeout=120)


def set_args(values: dict[str, object]) -> list[str]:
    out = []
    for key, value in values.items():
        flag = "--set-string" if isinstance(value, str) else "--set"
        out += [flag, f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def template(helm: Path, values: dict[str, object] | None = None, *extra: str, namespace: str = "pilot-system",
             release: str = "pilotmesh", check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([str(helm), "template", release, str(CHART), "--namespace", namespace,
                           "--kube-version", KUBE_VERSION, *set_args(values or {}), *extra],
                          capture_output=True, text=True, check=check, timeout=60)


def render(helm: Path, values: dict[str, object] | None = None, *extra: str, **kw) -> list[dict]:
    return [d for d in yaml.safe_load_all(template(helm, values, *extra, **kw).stdout) if d]


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, (kind, name_suffix, [d["metadata"]["name"] for d in found])
    return found[0]


def hook(doc: dict) -> str | None:
    return (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")


def pod_templates(docs: list[dict]):
    for d in docs:
        if d["kind"] == "Pod":
            yield d["metadata"]["name"], d["spec"]
        elif "template" in (d.get("spec") or {}):
            yield d["metadata"]["name"], d["spec"]["template"]["spec"]


def serviceaccount_kubeconfig(api: client.ApiClient, admin_kubeconfig: Path, namespace: str, name: str,
                              out: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token), so a process run
    with it has exactly the RBAC the chart grants."""
    token = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600))).status.token
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    out.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "clusters": [cluster],
        "users": [{"name": name, "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": cluster["name"], "user": name}}],
        "current-context": name}))
    return out
