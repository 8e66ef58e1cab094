"""`make demo`: PilotMesh on a real local Kubernetes control plane, no Docker needed.

Brings up etcd + kube-apiserver + controller-manager + scheduler + kwok on 127.0.0.1, shows the
cluster working (nodes, a Deployment whose Pods go Running), then tears everything down.
`--keep` leaves the cluster running and prints the KUBECONFIG to use.
"""
from __future__ import annotations

import argparse
import sys
import time

from kubernetes import client

from pilotmesh_controlplane import ControlPlane, Toolset, ToolsMissing, procs
from pilotmesh_controlplane.tools import cache_dir


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def show_cluster(cp: ControlPlane) -> None:
    api = cp_client(cp)
    step(f"Kubernetes {cp.version()} serving at {cp.server}")
    for node in client.CoreV1Api(api).list_node().items:
        ready = next(c.status for c in node.status.conditions if c.type == "Ready")
        print(f"  node {node.metadata.name:14} Ready={ready}  (kwok fake node)")

    step("a Deployment with 2 replicas in namespace 'demo'")
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="demo")))
    procs.wait_until("default ServiceAccount", lambda: client.CoreV1Api(api).read_namespaced_service_account(
        "default", "demo"), 30)
    labels = {"app": "hello"}
    client.AppsV1Api(api).create_namespaced_deployment("demo", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "hello"},
        "spec": {"replicas": 2, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/hello:1"}]}}}})

    def running():
        pods = client.CoreV1Api(api).list_namespaced_pod("demo").items
        return len(pods) == 2 and all(p.status.phase == "Running" for p in pods) and pods
    for pod in procs.wait_until("pods Running", running, 60):
        print(f"  pod {pod.metadata.name:28} {pod.status.phase:8} on {pod.spec.node_name}")


def cp_client(cp: ControlPlane) -> client.ApiClient:
    import kubernetes

    return kubernetes.config.new_client_from_config(config_file=str(cp.kubeconfig))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="leave the cluster running at the end")
    args = ap.parse_args(argv)
    try:
        tools = Toolset.find()
    except ToolsMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workdir = cache_dir() / "clusters" / "demo"
    if (workdir / "state.json").exists():
        ControlPlane.attach(workdir).down(remove=True)
    step("starting a local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok)")
    started = time.monotonic()
    cp = ControlPlane(workdir, tools, nodes=2).up()
    print(f"  up in {time.monotonic() - started:.1f}s")
    try:
        show_cluster(cp)
    finally:
        if args.keep:
            step(f"left running: export KUBECONFIG={cp.kubeconfig}; stop with "
                 f"`pilotmesh-controlplane --name demo down`")
        else:
            step("tearing down")
            cp.down(remove=True)
            print("  every process stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
