"""`pilotmesh why`: is this pod injected (or would it be), with which transport, and why (not).

  pilotmesh why NAMESPACE/NAME            a pod in the cluster (or: why NAME -n NAMESPACE)
  pilotmesh why -f pod.yaml [--mesh MESH.yaml] [--namespace-labels K=V,...] [--policies FILE...]

Live, every step of the injection path is checked: the PilotMesh that selects the namespace (conflicts,
invalid specs), the pod's opt-in, the injector's own decision, whether the apiserver calls the webhook for
this pod (namespaceSelector, matchConditions), the caBundle against the Secret, the injector's readiness,
the daemon's image, and the NetworkPolicies behind the transport. Offline, the decision and the transport.
Exit 0 with the explanation; exit 2 with a one-line error.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .transport_verdict_live import POD_REF

PROG = "pilotmesh why"


class WhyError(Exception):
    """Input or cluster problem; the message says what to do."""


def register(sub) -> None:
    p = sub.add_parser("why", help="explain whether a pod is injected, with which transport, and why",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pod", nargs="?", metavar="NAMESPACE/NAME|NAME", help="a pod in the cluster")
    p.add_argument("-n", "--namespace", help="the pod's namespace (live), or of documents that name none (-f; "
                   "default: default)")
    p.add_argument("-f", "--filename", metavar="FILE", help="pods or workloads to judge offline ('-' = stdin)")
    p.add_argument("--mesh", metavar="MESH.yaml", help="offline: the PilotMesh (default: spec {} with defaults)")
    p.add_argument("--namespace-labels", metavar="K=V,...", default="", help="offline: the namespace's labels")
    p.add_argument("--policies", nargs="+", default=[], metavar="FILE", help="offline: policies and Namespaces")
    p.add_argument("--kubeconfig", help="live: the cluster (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--operator-namespace", default="pilot-system",
                   help="where the injector runs (default pilot-system)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..why import render_text

    try:
        if args.filename:
            if args.pod:
                raise WhyError("give either a pod in the cluster or -f FILE, not both")
            explanations = _offline(args)
        elif args.pod:
            explanations = [_live(args)]
        else:
            raise WhyError("name a pod (NAMESPACE/NAME, or NAME -n NAMESPACE) or give -f FILE")
    except WhyError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    out: Any = [e.to_dict() for e in explanations]
    try:
        sys.stdout.write(json.dumps(out[0] if len(out) == 1 else out, indent=2) + "\n" if args.output == "json"
                         else render_text(explanations))
        sys.stdout.flush()
    except BrokenPipeError:   # `| head`: the reader has what it wanted
        sys.stderr.close()
    return 0


def _target(args: argparse.Namespace) -> tuple[str, str]:
    m = POD_REF.match(args.pod)
    if m:
        if args.namespace and args.namespace != m.group(1):
            raise WhyError(f"{args.pod} names namespace {m.group(1)} but -n says {args.namespace}")
        return m.group(1), m.group(3)
    if "/" in args.pod or not args.pod:
        raise WhyError(f"{args.pod!r} is not NAMESPACE/NAME or NAME")
    return args.namespace or "default", args.pod


def _live(args: argparse.Namespace):
    from kubernetes.client.rest import ApiException

    from .. import clusterfacts, k8s
    from ..why import explain

    namespace, name = _target(args)
    try:
        api = k8s.api_client(args.kubeconfig)
        pod = k8s.get(api, f"/api/v1/namespaces/{namespace}/pods/{name}")
        if pod is None:
            raise WhyError(f"pod {namespace}/{name} not found (kubectl get pods -n {namespace})")
        snap = clusterfacts.snapshot(api, args.operator_namespace)
        choice = snap.mesh_for(namespace)
        facts = clusterfacts.webhook_facts(api, choice.name, args.operator_namespace) if choice else None
    except WhyError:
        raise
    except ApiException as exc:
        raise WhyError(f"the API server answered {exc.status} {exc.reason}: check --kubeconfig and that you may read "
                       "pods, namespaces, network policies, PilotMeshes, webhook configurations and the injector "
                       "Secret") from None
    except Exception as exc:  # noqa: BLE001 - no configuration, connection refused, TLS errors
        raise WhyError(f"cannot read the cluster ({type(exc).__name__}: {exc}); give --kubeconfig") from None
    return explain(pod, namespace, snap, facts, live=True)


def _offline(args: argparse.Namespace):
    from ..injector.snapshot import Snapshot
    from ..why import explain
    from .transport_verdict import InputError, _labelled_namespace, _objects, _template_pod, _with_namespace

    if args.kubeconfig:
        raise WhyError("--kubeconfig is for a pod in the cluster; offline (-f) reads only files")
    namespace = args.namespace or "default"
    try:
        docs = [d for d in _objects([args.filename, *args.policies]) if isinstance(d, dict)]
        mesh_docs = [d for d in _objects([args.mesh]) if isinstance(d, dict)] if args.mesh else []
    except InputError as exc:
        raise WhyError(str(exc)) from None
    if args.mesh and len(mesh_docs) != 1:
        raise WhyError(f"{args.mesh}: expected one PilotMesh, found {len(mesh_docs)} documents")
    meshes = [_as_mesh(d) for d in mesh_docs + [d for d in docs if d.get("kind") == "PilotMesh"]]
    meshes = meshes or [{"kind": "PilotMesh", "metadata": {"name": "default"}, "spec": {}}]
    pods = [_with_namespace(d, namespace) if d.get("kind") == "Pod" else _template_pod(d, namespace)
            for d in docs if d.get("kind") in _WORKLOADS]
    if not pods:
        raise WhyError(f"{args.filename}: no Pod or workload with a pod template")
    namespaces = [d for d in docs if d.get("kind") == "Namespace"]
    policies = [d for d in docs if d.get("kind") not in (*_WORKLOADS, "Namespace", "PilotMesh")]
    try:
        namespaces += [_labelled_namespace(ns, args.namespace_labels, namespaces)
                       for ns in sorted({p["metadata"]["namespace"] for p in pods})]
        snap = Snapshot.build(meshes, namespaces, policies, operator_namespace=args.operator_namespace)
    except (InputError, ValueError) as exc:
        raise WhyError(str(exc)) from None
    return [explain(p, p["metadata"]["namespace"], snap) for p in pods]


_WORKLOADS = ("Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController", "CronJob")


def _as_mesh(doc: dict) -> dict:
    if doc.get("kind") == "PilotMesh":
        return {**doc, "metadata": {"name": "default", **(doc.get("metadata") or {})}}
    if "kind" in doc:
        raise WhyError(f"--mesh: expected a PilotMesh, got {doc.get('kind')}")
    return {"kind": "PilotMesh", "metadata": {"name": "default"}, "spec": doc.get("spec", doc)}
