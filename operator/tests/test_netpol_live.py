"""Tier-1: `pilotmesh transport-verdict --pod NAMESPACE/NAME` reads the pod and its policies from a real apiserver."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import uuid

import pytest

pytestmark = pytest.mark.kube
PILOTMESH = pathlib.Path(sys.executable).with_name("pilotmesh")


def verdict(kube, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PILOTMESH), "transport-verdict", f"--kubeconfig={kube.kubeconfig}", *args],
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def locked_pod(kube):
    """A pod in a fresh namespace whose egress allows TCP 443 and DNS only."""
    from kubernetes import client

    api = kube.client()
    core, net = client.CoreV1Api(api), client.NetworkingV1Api(api)
    ns = f"verdict-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": ns}})
    net.create_namespaced_network_policy(ns, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "only-443"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"protocol": "TCP", "port": 443}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}})
    core.create_namespaced_pod(ns, {"metadata": {"name": "app", "labels": {"app": "web"}},
                                    "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
    yield api, ns
    core.delete_namespace(ns)


def test_live_verdict_follows_the_policies_in_the_cluster(kube, locked_pod):
    from kubernetes import client

    api, ns = locked_pod
    r = verdict(kube, "--pod", f"{ns}/app", "-o", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert list(got)[:6] == ["verdict", "transport", "confidence", "reasons", "dns", "inClusterPeers"]
    assert (got["verdict"], got["transport"], got["dns"]) == ("compat-only", "compat", True)
    assert any(f"NetworkPolicy {ns}/only-443" in x for x in got["reasons"])
    assert f"no PilotMesh selects namespace {ns}: default analyzer settings" in got["warnings"]

    client.NetworkingV1Api(api).create_namespaced_network_policy(ns, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "allow-udp"},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                 "egress": [{"ports": [{"protocol": "UDP"}]}]}})
    r = verdict(kube, "--pod", f"{ns}/app")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "udp-ok (transport udp, confidence high)"
    assert any(f"NetworkPolicy {ns}/allow-udp" in ln for ln in lines[1:]), lines


def test_a_missing_pod_or_an_unreachable_cluster_is_a_clear_error(kube, tmp_path):
    r = verdict(kube, "--pod", "default/no-such-pod")
    assert r.returncode == 2 and "pod default/no-such-pod not found" in r.stderr, r.stderr
    bad = tmp_path / "kubeconfig"
    bad.write_text(pathlib.Path(kube.kubeconfig).read_text().replace("https://127.0.0.1:", "https://127.0.0.1:1"))
    r = subprocess.run([str(PILOTMESH), "transport-verdict", f"--kubeconfig={bad}", "--pod", "default/x"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot read the cluster" in r.stderr, r.stderr
    r = verdict(kube, "--pod", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "--kubeconfig needs --pod NAMESPACE/NAME" in r.stderr, r.stderr
