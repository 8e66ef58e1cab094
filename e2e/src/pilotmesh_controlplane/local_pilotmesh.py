"""PilotMesh's operator and injector as local processes against a local control plane.

Pods can't run on kwok nodes, so the demo and the tier-1 tests run the injector on 127.0.0.1 and point
the webhook configuration at it by URL (the operator's `--webhook-url`), exactly as the chart's `url:`
switch does for clusters whose control plane can't reach pod IPs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml

from . import procs

ROOT = Path(__file__).resolve().parents[3]
CRD = ROOT / "charts" / "pilotmesh" / "crds" / "pilotmeshes.pilot.io.yaml"
OPERATOR_NS = "pilot-system"


class LocalPilotMesh:
    def __init__(self, kubeconfig: Path, logs: Path, namespace: str = OPERATOR_NS) -> None:
        self.kubeconfig, self.logs, self.namespace = Path(kubeconfig), Path(logs), namespace
        self.port = procs.free_port()
        self.webhook_url = f"https://127.0.0.1:{self.port}/inject"
        self.operator_metrics_port = procs.free_port()
        self.operator_pid: int | None = None
        self.injector_pid: int | None = None

    def _pilotmesh(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pilotmesh_operator.cli", *args, f"--kubeconfig={self.kubeconfig}",
                f"--namespace={self.namespace}", "--log-level=debug"]

    def start_injector(self) -> None:
        self.injector_pid = procs.spawn(self._pilotmesh(
            "injector", f"--listen=127.0.0.1:{self.port}", "--metrics-listen=127.0.0.1:0",
            f"--tls-secret={self.namespace}/pilotmesh-injector-tls"), self.logs / "injector.log")

    def start_operator(self) -> None:
        self.operator_pid = procs.spawn(self._pilotmesh(
            "operator", f"--webhook-url={self.webhook_url}", "--no-injector-deployment", "--liveness=",
            f"--metrics-listen=127.0.0.1:{self.operator_metrics_port}"),
            self.logs / "operator.log")

    def start(self) -> "LocalPilotMesh":
        self.logs.mkdir(parents=True, exist_ok=True)
        self.start_injector()
        self.start_operator()
        return self

    def stop_operator(self) -> None:
        if self.operator_pid:   # first: on exit it may still talk to the apiserver
            procs.stop(self.operator_pid, sys.executable, timeout=15)
            self.operator_pid = None

    def stop(self) -> None:
        self.stop_operator()
        if self.injector_pid:
            procs.stop(self.injector_pid, sys.executable, timeout=10)
            self.injector_pid = None

    def wait(self, what: str, check, timeout: float = 60):
        """procs.wait_until, failing with the operator's and injector's log tails."""
        try:
            return procs.wait_until(what, check, timeout, interval=0.25)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.name}\n{procs.tail(p, lines)}" for p in sorted(self.logs.glob("*.log")))


def ensure_crd(api) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api)
    body = yaml.safe_load(CRD.read_text())
    try:
        ext.create_custom_resource_definition(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
    procs.wait_until("PilotMesh CRD Established", lambda: any(
        c.type == "Established" and c.status == "True"
        for c in ext.read_custom_resource_definition(body["metadata"]["name"]).status.conditions or []), 30)


def ensure_namespace(api, name: str, labels: dict | None = None) -> str:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    procs.wait_until(f"ServiceAccount default in {name}",
                     lambda: core.read_namespaced_service_account("default", name), 30)
    return name


def wait_ready(api, mesh: str, timeout: float = 60) -> dict:
    from kubernetes import client

    def ready():
        obj = client.CustomObjectsApi(api).get_cluster_custom_object("pilot.io", "v1alpha1", "pilotmeshes", mesh)
        conds = {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}
        return conds.get("Ready", {}).get("status") == "True" and obj
    result = procs.wait_until(f"PilotMesh {mesh} Ready", ready, timeout, interval=0.25)
    time.sleep(1)   # the apiserver loads a new webhook configuration asynchronously
    return result
