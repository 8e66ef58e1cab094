"""Fixtures that run PilotMesh itself (operator + injector as real processes) on the `kube` control plane."""
from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane import procs

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "pilotmesh" / "crds" / "pilotmeshes.pilot.io.yaml"
OPERATOR_NS = "pilot-system"


@dataclasses.dataclass
class Stack:
    kube: object
    api: client.ApiClient
    logs: Path
    webhook_url: str
    operator_pid: int | None = None
    injector_pid: int | None = None

    def start_operator(self) -> None:
        self.operator_pid = procs.spawn([sys.executable, "-m", "pilotmesh_operator.cli", "operator",
                                         f"--kubeconfig={self.kube.kubeconfig}", f"--namespace={OPERATOR_NS}",
                                         f"--webhook-url={self.webhook_url}", "--no-injector-deployment",
                                         "--liveness=", "--log-level=debug"], self.logs / "operator.log")

    def stop_operator(self) -> None:
        if self.operator_pid:
            procs.stop(self.operator_pid, sys.executable, timeout=15)
            self.operator_pid = None

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{procs.tail(p, 40)}" for p in sorted(self.logs.glob("*.log")))


def ensure_crd(api: client.ApiClient) -> None:
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


def ensure_namespace(api: client.ApiClient, name: str, labels: dict | None = None) -> str:
    core = client.CoreV1Api(api)
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    except ApiException as exc:
        if exc.status != 409:
            raise
    procs.wait_until(f"ServiceAccount default in {name}",
                     lambda: core.read_namespaced_service_account("default", name), 30)
    return name


@pytest.fixture(scope="session")
def pilotmesh(kube, tmp_path_factory):
    """The operator and the injector running against the control plane (webhook by URL on 127.0.0.1)."""
    api = kube.client()
    ensure_crd(api)
    ensure_namespace(api, OPERATOR_NS)
    logs = tmp_path_factory.mktemp("pilotmesh-logs")
    port = procs.free_port()
    stack = Stack(kube, api, logs, f"https://127.0.0.1:{port}/inject")
    stack.injector_pid = procs.spawn([sys.executable, "-m", "pilotmesh_operator.cli", "injector",
                                      f"--kubeconfig={kube.kubeconfig}", f"--listen=127.0.0.1:{port}",
                                      "--metrics-listen=127.0.0.1:0", f"--namespace={OPERATOR_NS}",
                                      f"--tls-secret={OPERATOR_NS}/pilotmesh-injector-tls", "--log-level=debug"],
                                     logs / "injector.log")
    stack.start_operator()
    yield stack
    stack.stop_operator()
    procs.stop(stack.injector_pid, sys.executable, timeout=10)
