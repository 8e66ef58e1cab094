"""networking.k8s.io/v1 NetworkPolicy, with the exact core semantics.

- `policyTypes` missing (raw YAML not defaulted by an apiserver): `[Ingress]`, plus `Egress` only when
  `egress` is a non-empty list; so `egress: []` alone does not isolate egress.
- A pod's egress is isolated iff some selecting policy has `Egress`; allowed traffic is the union of
  all egress rules of all selecting policies (the engine's default tier, order 1000, as Calico does).
- A rule matches when its `to` matches (missing/empty = everywhere) and its `ports` match
  (missing/empty = all ports and protocols); protocol defaults to TCP; `endPort` is an inclusive range;
  a named port only matches a destination pod's containerPort of that name, never an address.
- Peers: `podSelector` alone = pods of the policy's namespace; `namespaceSelector` alone = all pods of
  matching namespaces (`{}` = every pod in the cluster, not the internet); both in one element = AND;
  `ipBlock` = the CIDR minus `except`, IPv4 or IPv6, and never matches pods.
"""
from __future__ import annotations

from typing import Any

from . import ports as portlib
from .addresses import parse_cidr
from .model import ALLOW, Note, Policy, PolicyInputError, Rule
from .peers import DestPredicate, any_of, anywhere, ip_block, pods
from .selectors import label_selector

KIND = "NetworkPolicy"


def compile_networkpolicy(obj: dict[str, Any], namespace: str, name: str) -> Policy:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise PolicyInputError("spec: missing or not a mapping")
    ref = f"{KIND} {namespace}/{name}"
    notes: list[Note] = []
    if "podSelector" not in spec:
        notes.append(Note("low", f"{ref} has no spec.podSelector (the apiserver requires one); read as {{}}"))
    pod_sel = label_selector(spec.get("podSelector"), "spec.podSelector")
    egress = spec.get("egress")
    if egress is not None and not isinstance(egress, list):
        raise PolicyInputError("spec.egress: must be a list")
    egress = egress or []
    types = spec.get("policyTypes")
    if types is None:
        types = ["Ingress"] + (["Egress"] if egress else [])
    elif not isinstance(types, list) or any(t not in ("Ingress", "Egress") for t in types):
        raise PolicyInputError(f"spec.policyTypes: {types!r} must list Ingress and/or Egress")
    isolates = "Egress" in types
    policy = Policy(KIND, namespace, name, tier="default", order=1000.0,
                    selects=lambda p: p.namespace == namespace and pod_sel(p.labels),
                    isolates=isolates, notes=notes)
    if not isolates:
        if egress:
            notes.append(Note("high", f"{ref} has egress rules but policyTypes {types} lacks Egress: they do nothing"))
        return policy
    for i, raw in enumerate(egress):
        where = f"spec.egress[{i}]"
        try:
            policy.rules.append(_rule(raw, where, namespace, policy))
        except PolicyInputError as e:
            notes.append(Note("low", f"{ref}: {e}; that rule is ignored"))
    return policy


def _rule(raw: Any, where: str, namespace: str, policy: Policy) -> Rule:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise PolicyInputError(f"{where}: an egress rule must be a mapping")
    to, plist = raw.get("to") or [], raw.get("ports") or []
    if not isinstance(to, list) or not isinstance(plist, list):
        raise PolicyInputError(f"{where}: `to` and `ports` must be lists")
    matches = [portlib.core_port(p, f"{where}.ports[{j}]") for j, p in enumerate(plist)]
    peers = [_peer(p, f"{where}.to[{j}]", namespace, policy) for j, p in enumerate(to)]
    notes = ()
    if any(m.uses_end_port for m in matches):
        notes = (Note("low", f"{KIND} {policy.ref()} {where} uses endPort, which CNIs older than "
                             "Kubernetes 1.25 support ignore", tag="endPort"),)
    policy.port_edges += portlib.edges(matches)
    return Rule(ALLOW, any_of(peers) if peers else anywhere, portlib.any_port(matches), notes,
                label=f"egress rule {where[len('spec.egress['):-1]}")


def _peer(raw: Any, where: str, namespace: str, policy: Policy) -> DestPredicate:
    if not isinstance(raw, dict) or not raw:
        raise PolicyInputError(f"{where}: a peer needs podSelector, namespaceSelector or ipBlock")
    unknown = set(raw) - {"podSelector", "namespaceSelector", "ipBlock"}
    if unknown:
        raise PolicyInputError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    if "ipBlock" in raw:
        if len(raw) > 1:
            raise PolicyInputError(f"{where}: ipBlock cannot be combined with selectors in one peer")
        block = raw["ipBlock"]
        if not isinstance(block, dict) or "cidr" not in block:
            raise PolicyInputError(f"{where}.ipBlock: needs a `cidr`")
        cidr = parse_cidr(block["cidr"], f"{where}.ipBlock.cidr")
        excepts = block.get("except") or []
        if not isinstance(excepts, list):
            raise PolicyInputError(f"{where}.ipBlock.except: must be a list")
        ex = [parse_cidr(e, f"{where}.ipBlock.except[{k}]") for k, e in enumerate(excepts)]
        policy.cidrs += [cidr, *ex]
        policy.address_sensitive = True
        return ip_block(cidr, ex)
    ns_raw = raw.get("namespaceSelector")
    ns_sel = None if ns_raw is None else label_selector(ns_raw, f"{where}.namespaceSelector")
    pod_raw = raw.get("podSelector")
    pod_sel = None if pod_raw is None else label_selector(pod_raw, f"{where}.podSelector")
    # podSelector alone: the policy's own namespace; with namespaceSelector: the matching namespaces
    return pods(namespace if ns_sel is None else None, ns_sel, pod_sel)
