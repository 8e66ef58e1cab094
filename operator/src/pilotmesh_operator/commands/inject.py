"""`pilotmesh inject -f FILE`: print manifests with the Pilot daemon injected (like `istioctl kube-inject`).

Pods and workloads with a pod template are injected whether or not they carry `pilot.io/inject` (you asked), except
when it says "false"; other documents pass through unchanged. Multi-document YAML and `List` in, the same out.
With `--policies`, pods whose transport policy is auto get the NetworkPolicy verdict (`render.netpol.analyze`)
for their namespace and labels, as the webhook would. Skips and warnings go to stderr as `# ...` lines; errors are
one line on stderr and exit code 2.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import yaml

from ..mesh import MeshSettings, parse_kube_version
from ..render.inject import TEMPLATE_PATHS, TransportDecision, inject, pod_template
from ..render.netpol.analyze import analyze, compile_policies


class InjectInputError(Exception):
    """The input or the mesh file can't be read; the message says which and why."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("inject", help="print manifests with the Pilot daemon injected",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-f", "--filename", required=True, metavar="FILE", help="manifests to inject, - for stdin")
    p.add_argument("--mesh", metavar="MESH.yaml", help="a PilotMesh (or its spec) to take settings from; "
                   "default: spec {} with the CRD's defaults")
    p.add_argument("--transport", choices=("udp", "compat"),
                   help="the transport for pods whose policy is auto (default: the daemon decides at start)")
    p.add_argument("--kube-version", metavar="MAJOR.MINOR",
                   help="the cluster's Kubernetes version, for nativeSidecar: auto (default: assume >= 1.29)")
    p.add_argument("--policies", nargs="+", default=[], metavar="FILE",
                   help="NetworkPolicies (any supported kind) and Namespaces to decide auto transports from")
    p.add_argument("-n", "--namespace", help="namespace of documents that name none (checks the system exclusions)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        mesh = _mesh(args.mesh, args.kube_version)
        docs = _load(args.filename)
        decide = _decider(args.transport, [d for path in args.policies for d in _load(path)], args.namespace)
        out = [_inject_doc(doc, mesh, decide, args.namespace, sys.stderr) for doc in docs]
    except (InjectInputError, ValueError) as exc:   # MeshSpecError and the analyzer's input errors are ValueErrors
        print(f"pilotmesh inject: {exc}", file=sys.stderr)
        return 2
    try:
        sys.stdout.write(dump_yaml(out))
        sys.stdout.flush()
    except BrokenPipeError:   # `| head`: the reader has what it wanted
        sys.stderr.close()
    return 0


class _Dumper(yaml.SafeDumper):
    """Never writes anchors/aliases (kubectl handles them, humans reviewing a diff don't)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_yaml(docs: list[Any]) -> str:
    """Documents as multi-document YAML, keys in their input order."""
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


def _mesh(path: str | None, kube_version: str | None) -> MeshSettings:
    version = parse_kube_version(kube_version) if kube_version else None
    if path is None:
        return MeshSettings.from_spec({}, cluster_version=version)
    docs = [d for d in _load(path) if d is not None]
    if len(docs) != 1 or not isinstance(docs[0], dict):
        raise InjectInputError(f"{path}: expected one PilotMesh (or its spec), found {len(docs)} documents")
    doc = docs[0]
    if "kind" in doc or "spec" in doc:
        return MeshSettings.from_object(doc, cluster_version=version)
    return MeshSettings.from_spec(doc, cluster_version=version)


def _load(path: str) -> list[Any]:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    except OSError as exc:
        raise InjectInputError(f"can't read {path}: {exc.strerror}") from None
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InjectInputError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None


Decider = Callable[[dict[str, Any]], "TransportDecision | None"]


def _decider(transport: str | None, policy_docs: list[Any], namespace: str | None) -> Decider:
    """The transport decision for one document: --transport, else the policies' verdict, else none (auto)."""
    if transport:
        return lambda doc: TransportDecision(transport, "pilotmesh inject --transport")
    if not policy_docs:
        return lambda doc: None
    namespaces = [d for d in policy_docs if isinstance(d, dict) and d.get("kind") == "Namespace"]
    compiled = compile_policies([d for d in policy_docs if d not in namespaces], namespace or "default")

    def decide(doc: dict[str, Any]) -> TransportDecision:
        meta = doc.get("metadata") or {}
        template = pod_template(doc) or {}
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {
            "name": meta.get("name") or meta.get("generateName") or "pod",
            "namespace": meta.get("namespace") or namespace or "default",
            "labels": (template.get("metadata") or {}).get("labels") or {}}, "spec": template.get("spec") or {}}
        return TransportDecision.from_verdict(analyze(pod, namespaces, compiled))
    return decide


def _inject_doc(doc: Any, mesh: MeshSettings, decide: Decider, namespace: str | None, err: TextIO) -> Any:
    if not isinstance(doc, dict):
        return doc
    if doc.get("kind") == "List" and isinstance(doc.get("items"), list):
        return dict(doc, items=[_inject_doc(item, mesh, decide, namespace, err) for item in doc["items"]])
    if doc.get("kind") not in TEMPLATE_PATHS:
        return doc
    result = inject(doc, mesh, decide(doc), namespace=namespace, require_opt_in=False)
    for line in _notes(doc, result.skip, result.message, result.warnings):
        print(line, file=err)
    return result.obj


def _notes(doc: dict[str, Any], skip: str | None, message: str, warnings: tuple[str, ...]) -> Iterator[str]:
    meta = doc.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "?"
    ref = f"{doc.get('kind')} {meta['namespace']}/{name}" if meta.get("namespace") else f"{doc.get('kind')} {name}"
    if skip:
        yield f"# {ref}: not injected: {message} ({skip})"
    for warning in warnings:
        yield f"# {ref}: warning: {warning}"
