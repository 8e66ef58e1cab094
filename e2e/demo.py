"""`make demo`: PilotMesh on a real local Kubernetes control plane, no Docker needed.

1. a local control plane: etcd, kube-apiserver, controller-manager, scheduler, kwok fake nodes;
2. the PilotMesh CRD, operator and injector (as local processes; the webhook is reached by URL);
3. a PilotMesh, an annotated Deployment whose pods come out injected, and a pod in a default-deny
   namespace that gets the compat transport with the reason;
4. two Python pilot-daemons registered with a local pilot-rendezvous exchanging pings and a message;
then everything is torn down. `--keep` leaves it running and prints how to use and stop it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import kubernetes
import yaml
from kubernetes import client

from pilotmesh_controlplane import ControlPlane, Toolset, ToolsMissing, procs
from pilotmesh_controlplane.local_pilotmesh import (OPERATOR_NS, LocalPilotMesh, ensure_crd, ensure_namespace,
                                                    wait_ready)
from pilotmesh_controlplane.local_pilots import LocalPilots
from pilotmesh_controlplane.tools import cache_dir
from pilot_daemon.client import Client
from pilot_daemon.proto.addr import Addr

MESH = {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh", "metadata": {"name": "default"}, "spec": {}}
DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "egress-443-only"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"protocol": "TCP", "port": 443}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def deployment(name: str, annotations: dict | None = None) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/hello:1"}]}}}}


def first_pod(api, namespace: str, app: str):
    return procs.wait_until(f"pod of {app}", lambda: (client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"app={app}").items or [None])[0], 60)


def show_cluster(cp: ControlPlane, api) -> None:
    step(f"Kubernetes {cp.version()} serving at {cp.server}")
    for node in client.CoreV1Api(api).list_node().items:
        ready = next(c.status for c in node.status.conditions if c.type == "Ready")
        print(f"  node {node.metadata.name:14} Ready={ready}  (kwok fake node)")


def show_mesh(api, local: LocalPilotMesh) -> None:
    step("PilotMesh CRD, operator and injector (local processes; webhook by URL)")
    ensure_crd(api)
    ensure_namespace(api, OPERATOR_NS)
    local.start()
    print(f"  injector at {local.webhook_url}; logs in {local.logs}")
    step("kubectl apply PilotMesh 'default' (spec: {} -- everything defaulted)")
    client.CustomObjectsApi(api).create_cluster_custom_object("pilot.io", "v1alpha1", "pilotmeshes", MESH)
    mesh = wait_ready(api, "default", 90)
    for c in mesh["status"]["conditions"]:
        print(f"  {c['type']:17} {c['status']:5} {c['message'][:90]}")

    step("an annotated Deployment (pilot.io/inject: \"true\") in namespace 'demo'")
    ensure_namespace(api, "demo")
    client.AppsV1Api(api).create_namespaced_deployment("demo", deployment("hello", {"pilot.io/inject": "true"}))
    pod = first_pod(api, "demo", "hello")
    sidecar = pod.spec.init_containers[0]
    print(f"  pod {pod.metadata.name}: containers {[c.name for c in pod.spec.containers]}, "
          f"native sidecar {sidecar.name!r} (restartPolicy {sidecar.restart_policy})")
    print(f"  daemon args: {' '.join(sidecar.args)}")
    app = pod.spec.containers[0]
    print(f"  app env: {[f'{e.name}={e.value}' for e in app.env]}; mounts: {[m.mount_path for m in app.volume_mounts]}")
    print(f"  pilot.io/transport: {pod.metadata.annotations['pilot.io/transport']}")
    status = json.loads(pod.metadata.annotations["pilot.io/status"])
    print(f"  pilot.io/status: {json.dumps(status)[:140]}")

    step("a default-deny namespace 'locked' (egress: TCP 443 and DNS only; namespace label pilot.io/inject=true)")
    ensure_namespace(api, "locked", {"pilot.io/inject": "true"})
    client.NetworkingV1Api(api).create_namespaced_network_policy("locked", DENY)
    print(yaml.safe_dump(DENY["spec"], default_flow_style=None).rstrip().replace("\n", "\n  ").join(["  ", ""]))
    time.sleep(1)
    client.AppsV1Api(api).create_namespaced_deployment("locked", deployment("api"))
    pod = first_pod(api, "locked", "api")
    print(f"  pod {pod.metadata.name}: pilot.io/transport = {pod.metadata.annotations['pilot.io/transport']}")
    print(f"  reason: {pod.metadata.annotations['pilot.io/transport-reason'][:300]}")


def show_daemons(pilots: LocalPilots) -> None:
    step("pilot-rendezvous and two Python pilot-daemons on 127.0.0.1")
    pilots.start_rendezvous()
    socks = {name: pilots.start_daemon(name) for name in ("demo-a", "demo-b")}
    with Client(str(socks["demo-a"])) as a, Client(str(socks["demo-b"])) as b:
        info_a, info_b = a.info(), b.info()
        for info in (info_a, info_b):
            print(f"  {info['hostname']}: address {info['address']}, node {info['node_id']}, "
                  f"transport {info['transport']}")
        peer = Addr.parse(info_b["address"])
        conn = a.dial(peer, 7)   # the echo service, what `pilotctl ping` uses
        for seq in range(3):
            start = time.perf_counter()
            a.send(conn, f"ping {seq}".encode())
            echoed = a.recv(conn, len(f"ping {seq}"))
            print(f"  ping {info_b['address']} seq={seq}: {echoed.decode()!r} in "
                  f"{(time.perf_counter() - start) * 1000:.2f} ms (encrypted tunnel)")
        a.close(conn)
        b.bind(1000)
        conn = a.dial(peer, 1000)
        a.send(conn, b"hello from demo-a")
        accepted = b.accept()
        print(f"  demo-b accepted a stream from {accepted.remote}:{accepted.remote_port} on port 1000: "
              f"{b.recv(accepted.conn_id, len(b'hello from demo-a')).decode()!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--keep", action="store_true", help="leave the cluster and PilotMesh running at the end")
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
    local = LocalPilotMesh(cp.kubeconfig, workdir / "pilotmesh-logs")
    pilots = LocalPilots(workdir / "pilots")
    try:
        api = kubernetes.config.new_client_from_config(config_file=str(cp.kubeconfig))
        show_cluster(cp, api)
        show_mesh(api, local)
        show_daemons(pilots)
    except Exception:
        print(local.tails(20), file=sys.stderr)
        raise
    finally:
        if args.keep:
            print(f"  pilot-daemon sockets: {pilots.workdir}/demo-a/pilot.sock, {pilots.workdir}/demo-b/pilot.sock")
            step(f"left running: export KUBECONFIG={cp.kubeconfig}; kubectl get pilotmesh; "
                 f"stop the operator (pid {local.operator_pid}) and injector (pid {local.injector_pid}) with kill, "
                 "then `pilotmesh-controlplane --name demo down`")
        else:
            step("tearing down: daemons, rendezvous, operator, injector, then the control plane")
            pilots.stop()
            local.stop()
            cp.down(remove=True)
            print("  every process stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
