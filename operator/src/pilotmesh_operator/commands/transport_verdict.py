"""`pilotmesh transport-verdict`: the NetworkPolicy transport verdict for pods in YAML files.

Files may be multi-document YAML (or JSON) and `List`s mixing Pods (or workloads: their pod
template is used), Namespaces, policies of any kind and a PilotMesh or plain settings mapping.
Exit 0 with the verdict; exit 2 with a message when the input cannot be read.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Iterable

import yaml

from ..render.netpol import PodInputError, Settings, SettingsError, analyze
from ..render.netpol.from_pilotmesh import settings_from_pilotmesh

WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "ReplicationController"}


class InputError(Exception):
    """Input the command cannot use; the message says which file and what to fix."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "transport-verdict", help="decide udp or compat for pods from their NetworkPolicies",
        description="Print which Pilot transport (udp or compat) the egress policies of each pod allow, and why.")
    p.add_argument("-f", "--filename", action="append", default=[], metavar="FILE",
                   help="YAML/JSON file with pods, namespaces, policies and/or settings ('-' = stdin); repeatable")
    p.add_argument("--pod", action="append", default=[], metavar="FILE|NAMESPACE/NAME",
                   help="file holding the pod(s), or NAMESPACE/NAME of a pod to judge live from the cluster")
    p.add_argument("--policies", nargs="+", action="extend", default=[], metavar="FILE", help="policy files")
    p.add_argument("--namespaces", nargs="+", action="extend", default=[], metavar="FILE", help="Namespace files")
    p.add_argument("--mesh", metavar="FILE", help="a PilotMesh object or a plain settings mapping")
    p.add_argument("--namespace-labels", metavar="K=V,...", default="",
                   help="labels of the pod's namespace (when no Namespace object is given)")
    p.add_argument("-n", "--namespace", default="default", help="namespace of objects that name none")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text")
    p.add_argument("--kubeconfig", metavar="FILE",
                   help="with --pod NAMESPACE/NAME: the cluster to read (default: in-cluster, then ~/.kube/config)")
    p.add_argument("--operator-namespace", default="pilot-system",
                   help="with --pod NAMESPACE/NAME: where the in-cluster rendezvous runs (default pilot-system)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .transport_verdict_live import live_target, run_live

    target = live_target(args)
    if target is not None:
        return run_live(args, *target)
    if args.kubeconfig:
        print("pilotmesh transport-verdict: error: --kubeconfig needs --pod NAMESPACE/NAME (a pod in the cluster)",
              file=sys.stderr)
        return 2
    try:
        pods, namespaces, policies, settings = load(args)
        results = [(pod, analyze(pod, namespaces, policies, settings)) for pod in pods]
    except (InputError, SettingsError, PodInputError) as e:
        print(f"pilotmesh transport-verdict: error: {e}", file=sys.stderr)
        return 2
    print_results(results, args.output)
    return 0


def print_results(results: list[tuple[dict, Any]], output: str) -> None:
    if output == "json":
        # one pod: the verdict object itself; several: a list, each with its "pod"
        out: Any = results[0][1].to_dict() if len(results) == 1 else [
            {"pod": _ref(pod), **v.to_dict()} for pod, v in results]
        print(json.dumps(out, indent=2))
        return
    for pod, v in results:
        prefix = f"{_ref(pod)}: " if len(results) > 1 else ""
        print(prefix + v.summary())
        for line in v.reasons:
            print(f"  - {line}")
        for line in v.warnings:
            print(f"  warning: {line}")


def load(args: argparse.Namespace) -> tuple[list[dict], list[dict], list[Any], Settings]:
    """Read every file and sort the objects into pods, namespaces, policies and settings."""
    pods: list[dict] = []
    namespaces: list[dict] = []
    policies: list[Any] = []
    settings: dict = {}
    if args.mesh:
        docs = list(_objects([args.mesh]))
        if len(docs) != 1 or not isinstance(docs[0], dict):
            raise InputError(f"{args.mesh}: expected one PilotMesh or settings mapping")
        settings = _settings(docs[0])
    for obj in _objects(args.filename + args.pod + args.namespaces + args.policies):
        kind = obj.get("kind") if isinstance(obj, dict) else None
        if kind == "Pod":
            pods.append(_with_namespace(obj, args.namespace))
        elif kind in WORKLOADS or kind == "CronJob":
            pods.append(_template_pod(obj, args.namespace))
        elif kind == "Namespace":
            namespaces.append(obj)
        elif kind == "PilotMesh":
            settings = _settings(obj)
        else:
            policies.append(obj)
    if not pods:
        raise InputError("no Pod (or workload with a pod template) in the input: give one with -f or --pod")
    if args.namespace_labels:
        namespaces += [_labelled_namespace(ns, args.namespace_labels, namespaces)
                       for ns in sorted({p["metadata"]["namespace"] for p in pods})]
    return pods, namespaces, policies, Settings.from_dict(settings)


def _objects(paths: Iterable[str]) -> Iterable[Any]:
    for path in paths:
        try:
            text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
            docs = list(yaml.safe_load_all(text))
        except OSError as e:
            raise InputError(f"cannot read {path}: {e.strerror or e}") from None
        except yaml.YAMLError as e:
            raise InputError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
        for doc in docs:
            if doc is None:
                continue
            if isinstance(doc, dict) and doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
                yield from doc["items"]
            else:
                yield doc


def _settings(obj: dict) -> dict:
    if obj.get("kind") == "PilotMesh":
        return settings_from_pilotmesh(obj.get("spec") or {})
    return obj


def _with_namespace(pod: dict, default_ns: str) -> dict:
    meta = dict(pod.get("metadata") or {})
    meta.setdefault("namespace", default_ns)
    return {**pod, "metadata": meta}


def _template_pod(obj: dict, default_ns: str) -> dict:
    spec = obj.get("spec") or {}
    if obj.get("kind") == "CronJob":
        spec = ((spec.get("jobTemplate") or {}).get("spec")) or {}
    template = spec.get("template") or {}
    meta = dict(template.get("metadata") or {})
    owner = obj.get("metadata") or {}
    meta.setdefault("name", f"{owner.get('name', 'pod')} ({obj.get('kind')})")
    meta["namespace"] = owner.get("namespace") or default_ns
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": template.get("spec") or {}}


def _labelled_namespace(name: str, text: str, given: list[dict]) -> dict:
    labels: dict[str, str] = {}
    for part in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or not key:
            raise InputError(f"--namespace-labels: {part!r} is not KEY=VALUE")
        labels[key] = value
    for ns in given:
        if (ns.get("metadata") or {}).get("name") == name:
            labels = {**((ns.get("metadata") or {}).get("labels") or {}), **labels}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _ref(pod: dict) -> str:
    meta = pod.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name') or meta.get('generateName') or '?'}"
