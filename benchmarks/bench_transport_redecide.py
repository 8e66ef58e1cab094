"""Transport re-decision after one policy change, in a cluster of 1,000 namespaces x 10 policies x 20 pods.

Run on demand:  .venv/bin/python benchmarks/bench_transport_redecide.py [--namespaces 1000] [--repeat 5]

A faithful in-memory index stands in for the apiserver: the operator's own Tracker, CompileCache and
Snapshot are fed the same objects kopf's indexes would hold, and the injected pods of a scope come from a
dict by namespace (what the labelled, paginated pod list returns). The pods start settled: their
annotations are what the verdict says, as the injector wrote them. Then:
  namespaced   a NetworkPolicy allowing UDP egress appears in one namespace: observe -> snapshot (10,001
               policies, one compiled) -> that namespace's pods -> redecide -> 20 new annotations
  clusterwide  an AdminNetworkPolicy denying UDP everywhere appears: every pod is re-decided (20,000)
  analyzer     analyze() per pod, divided by the policies in its namespace (the pod x policy pair);
               redecide calls it once per distinct pod view (replicas share one), the figure is per call
Goals (issue 8): <= 1 s of analyzer work from a change to every affected pod's new annotation;
<= 50 us per pod x policy pair. Prints each figure and its ratio to the goal (< 1 = within).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.redecide import group_policies, redecide
from pilotmesh_operator.render.netpol import Settings, analyze
from pilotmesh_operator.transport_state import POLICY, CompileCache, Tracker

PODS, APPS = 20, 5
MESH = {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
        "metadata": {"name": "default", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": {}}


def _np(ns: str, name: str, spec: dict, rv: int) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv), "uid": f"{ns}-{name}"},
            "spec": spec}


def namespace_policies(ns: str, rv: int) -> list[dict]:
    """Ten policies a locked-down namespace typically has: default denies, DNS, 443 out, app ingress rules."""
    dns = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
           "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}
    specs = {
        "default-deny-ingress": {"podSelector": {}, "policyTypes": ["Ingress"]},
        "default-deny-egress": {"podSelector": {}, "policyTypes": ["Egress"]},
        "allow-dns": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [dns], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]},
        "allow-https-out": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]}}],
             "ports": [{"protocol": "TCP", "port": 443}]}]},
        "allow-same-namespace": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                                 "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]},
        "monitoring-scrape": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                    "values": ["svc-0", "svc-1", "svc-2"]}]},
                              "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "monitoring"}}}],
                                           "ports": [{"port": "metrics"}]}]},
    }
    for j in range(4):
        specs[f"svc-{j}-ingress"] = {"podSelector": {"matchLabels": {"app": f"svc-{j}"}},
                                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": f"svc-{j + 1}"}}}],
                                                  "ports": [{"protocol": "TCP", "port": 8080 + j}]}]}
    return [_np(ns, name, spec, rv + i) for i, (name, spec) in enumerate(specs.items())]


def pod(ns: str, i: int) -> dict:
    app = f"svc-{i % APPS}"
    status = {"mode": "sidecar", "transportPolicy": "auto", "transport": "compat", "version": "0.1.0"}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{app}-7d9c8-{i:05d}", "generateName": f"{app}-7d9c8-", "namespace": ns,
                         "uid": f"{ns}-{i}", "labels": {"app": app, "pod-template-hash": "7d9c8",
                                                        "pilot.io/injected": "sidecar"},
                         "annotations": {"pilot.io/status": json.dumps(status)},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": f"{app}-7d9c8",
                                              "uid": f"{ns}-{app}", "controller": True}]},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1",
                                     "ports": [{"name": "metrics", "containerPort": 9090}]}]},
            "status": {"phase": "Running", "podIPs": [{"ip": f"10.{i % 250}.{i // 250}.7"}]}}


class Cluster:
    """The objects kopf's indexes would hold, and the injected pods by namespace."""

    def __init__(self, n: int) -> None:
        self.names = [f"ns-{i:04d}" for i in range(n)]
        self.namespaces = [{"apiVersion": "v1", "kind": "Namespace",
                            "metadata": {"name": ns, "labels": {"team": f"t{i % 13}", "kubernetes.io/metadata.name": ns}}}
                           for i, ns in enumerate(self.names + ["kube-system"])]
        self.policies = {f"{p['metadata']['namespace']}/{p['metadata']['name']}": p
                         for k, ns in enumerate(self.names) for p in namespace_policies(ns, 10 * k)}
        self.pods = {ns: [pod(ns, i) for i in range(PODS)] for ns in self.names}
        self.tracker, self.cache = Tracker(), CompileCache()
        for p in self.policies.values():
            self.tracker.observe(POLICY, p)

    def snapshot(self) -> Snapshot:
        return Snapshot(meshes=[MESH], namespaces={n["metadata"]["name"]: n for n in self.namespaces},
                        policies=self.cache.compile(self.policies.values()), cluster_version=(1, 36))

    def settle(self) -> int:
        """Write every pod's annotations as the verdict says (what the injector did at admission)."""
        changes = redecide([p for pods in self.pods.values() for p in pods], self.snapshot())
        by_uid = {c.uid: c for c in changes}
        for pods in self.pods.values():
            for p in pods:
                if p["metadata"]["uid"] in by_uid:
                    p["metadata"]["annotations"].update(by_uid[p["metadata"]["uid"]].patch()["metadata"]["annotations"])
        return len(changes)

    def change(self, obj: dict) -> tuple[float, int, dict[str, float]]:
        """One watch event to every affected pod's new annotation computed: (seconds, changes, phases)."""
        phases = {}
        t0 = time.perf_counter()
        key = f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
        self.policies[key] = obj
        scope = self.tracker.observe(POLICY, obj)
        t1 = time.perf_counter()
        snap = self.snapshot()
        t2 = time.perf_counter()
        pods = [p for ns in (self.names if scope.everything else sorted(scope.namespaces)) for p in self.pods[ns]]
        changes = redecide(pods, snap)
        t3 = time.perf_counter()
        phases.update(observe=t1 - t0, snapshot=t2 - t1, redecide=t3 - t2)
        del self.policies[key]       # undo, so the next round starts from the same state
        self.tracker.observe(POLICY, obj, deleted=True)
        return t3 - t0, len(changes), phases


def allow_udp(ns: str, rv: int) -> dict:
    return _np(ns, "allow-udp", {"podSelector": {}, "policyTypes": ["Egress"],
                                 "egress": [{"ports": [{"protocol": "UDP"}]}]}, rv)


def deny_udp_everywhere(rv: int) -> dict:
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": "no-udp", "resourceVersion": str(rv)},
            "spec": {"priority": 10, "subject": {"namespaces": {}}, "egress": [
                {"name": "deny-udp", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}],
                 "ports": [{"portRange": {"protocol": "UDP", "start": 1, "end": 65535}}]}]}}


def analyzer_pair_us(cluster: Cluster, namespaces: int) -> tuple[float, int]:
    """analyze() time per pod divided by the policies in its namespace, over `namespaces` namespaces."""
    snap = cluster.snapshot()
    by_ns = group_policies(snap.policies)
    settings = Settings.from_dict(snap.analyzer_settings(snap.mesh_for(cluster.names[0]).settings))
    ns_objs = snap.namespaces          # name -> Namespace, as the injector's snapshot holds them
    pairs, start = 0, time.perf_counter()
    for ns in cluster.names[:namespaces]:
        policies = by_ns[None] + by_ns.get(ns, [])
        for p in cluster.pods[ns]:
            analyze(p, ns_objs, policies, settings)
            pairs += len(policies)
    return (time.perf_counter() - start) / pairs * 1e6, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--namespaces", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="cProfile the clusterwide change, top 25 by own time")
    args = ap.parse_args()
    t = time.perf_counter()
    cluster = Cluster(args.namespaces)
    settled = cluster.settle()
    print(f"{args.namespaces} namespaces x {len(cluster.policies) // args.namespaces} policies x {PODS} injected "
          f"pods = {len(cluster.policies)} policies, {args.namespaces * PODS} pods "
          f"(built and settled in {time.perf_counter() - t:.1f} s, {settled} annotations written)")
    runs = [cluster.change(allow_udp(cluster.names[args.namespaces // 2], 10**6 + i)) for i in range(args.repeat)]
    ns_s = statistics.median(r[0] for r in runs)
    phases = {k: statistics.median(r[2][k] for r in runs) * 1000 for k in runs[0][2]}
    print(f"namespaced change:  {ns_s * 1000:8.1f} ms to {runs[0][1]} new annotations  "
          f"(observe {phases['observe']:.2f} ms, snapshot {phases['snapshot']:.1f} ms, "
          f"redecide {phases['redecide']:.1f} ms)  goal 1000 ms, ratio {ns_s:.3f}")
    if args.profile:
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
    cw = cluster.change(deny_udp_everywhere(2 * 10**6))
    if args.profile:
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    print(f"clusterwide change: {cw[0] * 1000:8.1f} ms to {cw[1]} new annotations  "
          f"({cw[0] / max(cw[1], 1) * 1e6:.0f} us per pod)  goal 1000 ms, ratio {cw[0]:.2f}")
    pairs = [analyzer_pair_us(cluster, min(50, args.namespaces)) for _ in range(args.repeat)]
    pair, best, n = statistics.median(p for p, _ in pairs), min(p for p, _ in pairs), pairs[0][1]
    print(f"analyzer:           {pair:8.1f} us per pod x policy pair (median of {args.repeat} x {n} pairs, best "
          f"{best:.1f})  goal 50 us, ratio {pair / 50:.2f}")


if __name__ == "__main__":
    main()
