"""AdminNetworkPolicy and BaselineAdminNetworkPolicy (policy.networking.k8s.io/v1alpha1).

ANPs run before NetworkPolicy, lowest `priority` first (equal priorities have no defined order: the
analyzer says so), rules in order: Allow and Deny are final, Pass hands the flow to NetworkPolicy.
The BANP runs after NetworkPolicy, and only for pods no NetworkPolicy isolates. Neither isolates by
itself. Peers: `namespaces`, `pods`, `networks` (CIDRs; never a pod here), `nodes` (never matches a
pod or an internet address), `domainNames` (matched against the rendezvous host name, low confidence).
Ports: `portNumber`, `portRange` (protocol defaults to TCP) and `namedPort`.
"""
from __future__ import annotations

from typing import Any

from .addresses import parse_cidr
from .model import ALLOW, DENY, PASS, Note, PodInfo, Policy, PolicyInputError, PortMatch, Rule
from .peers import DestPredicate, any_of, ip_block, names, nowhere, pods
from .ports import PROTOCOLS, any_port, edges, port_number
from .selectors import label_selector


def compile_anp(obj: dict, _namespace: str | None, name: str, kind: str) -> list[Policy]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise PolicyInputError("spec: missing or not a mapping")
    baseline = kind == "BaselineAdminNetworkPolicy"
    if baseline:
        order = 0.0
    else:
        prio = spec.get("priority")
        if isinstance(prio, bool) or not isinstance(prio, int) or not 0 <= prio <= 1000:
            raise PolicyInputError(f"spec.priority: {prio!r} must be an integer 0-1000")
        order = float(prio)
    selects = _subject(spec.get("subject"))
    policy = Policy(kind, None, name, tier="baselineadminnetworkpolicy" if baseline else "adminnetworkpolicy",
                    order=order, selects=selects, isolates=False)
    actions = (ALLOW, DENY) if baseline else (ALLOW, DENY, PASS)
    egress = spec.get("egress") or []
    if not isinstance(egress, list):
        raise PolicyInputError("spec.egress: must be a list")
    for i, raw in enumerate(egress):
        where = f"spec.egress[{i}]"
        try:
            policy.rules.append(_rule(raw, where, actions, policy))
        except PolicyInputError as e:
            policy.notes.append(Note("low", f"{policy.title()}: {e}; that rule is left out"))
    return [policy]


def _subject(raw: Any):
    if not isinstance(raw, dict) or len(raw) != 1 or not set(raw) <= {"namespaces", "pods"}:
        raise PolicyInputError("spec.subject: needs exactly one of namespaces or pods")
    if "namespaces" in raw:
        ns_sel = label_selector(raw["namespaces"], "spec.subject.namespaces")
        return lambda p: ns_sel(p.ns_labels)
    pod_raw = raw["pods"]
    if not isinstance(pod_raw, dict):
        raise PolicyInputError("spec.subject.pods: must be a mapping")
    ns_sel = label_selector(pod_raw.get("namespaceSelector"), "spec.subject.pods.namespaceSelector")
    pod_sel = label_selector(pod_raw.get("podSelector"), "spec.subject.pods.podSelector")

    def selects(p: PodInfo) -> bool:
        return ns_sel(p.ns_labels) and pod_sel(p.labels)
    return selects


def _rule(raw: Any, where: str, actions: tuple[str, ...], policy: Policy) -> Rule:
    if not isinstance(raw, dict):
        raise PolicyInputError(f"{where}: a rule must be a mapping")
    action = raw.get("action")
    if action not in actions:
        raise PolicyInputError(f"{where}.action: {action!r} must be one of {', '.join(actions)}")
    to = raw.get("to")
    if not isinstance(to, list) or not to:
        raise PolicyInputError(f"{where}.to: needs at least one peer")
    notes: list[Note] = []
    peers = [_peer(p, f"{where}.to[{j}]", policy, notes) for j, p in enumerate(to)]
    plist = raw.get("ports") or []
    if not isinstance(plist, list):
        raise PolicyInputError(f"{where}.ports: must be a list")
    matches = [_port(p, f"{where}.ports[{j}]") for j, p in enumerate(plist)]
    policy.port_edges += edges(matches)
    label = f"egress rule {raw.get('name') or where[len('spec.egress['):-1]}"
    return Rule(action, any_of(peers), any_port(matches), tuple(notes), label=label)


def _peer(raw: Any, where: str, policy: Policy, notes: list[Note]) -> DestPredicate:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise PolicyInputError(f"{where}: needs exactly one of namespaces, pods, nodes, networks, domainNames")
    (key, val), = raw.items()
    if key == "namespaces":
        return pods(None, label_selector(val, f"{where}.namespaces"), None)
    if key == "pods":
        if not isinstance(val, dict):
            raise PolicyInputError(f"{where}.pods: must be a mapping")
        return pods(None, label_selector(val.get("namespaceSelector"), f"{where}.pods.namespaceSelector"),
                    label_selector(val.get("podSelector"), f"{where}.pods.podSelector"))
    if key == "nodes":
        label_selector(val, f"{where}.nodes")
        return nowhere
    if key == "networks":
        if not isinstance(val, list) or not val:
            raise PolicyInputError(f"{where}.networks: needs a list of CIDRs")
        nets = [parse_cidr(c, f"{where}.networks[{k}]") for k, c in enumerate(val)]
        policy.cidrs += nets
        policy.address_sensitive = True
        return any_of([ip_block(n) for n in nets])
    if key == "domainNames":
        if not isinstance(val, list) or not val:
            raise PolicyInputError(f"{where}.domainNames: needs a list of names")
        notes.append(Note("low", f"{policy.title()} {where}.domainNames allows by DNS name, resolved at run time"))
        return names([str(v) for v in val])
    raise PolicyInputError(f"{where}: unknown peer type {key!r}")


def _port(raw: Any, where: str) -> PortMatch:
    if not isinstance(raw, dict) or len(raw) != 1:
        raise PolicyInputError(f"{where}: needs exactly one of portNumber, portRange, namedPort")
    (key, val), = raw.items()
    if key == "namedPort":
        return PortMatch(None, name=str(val))
    if not isinstance(val, dict):
        raise PolicyInputError(f"{where}.{key}: must be a mapping")
    proto = val.get("protocol") or "TCP"
    if proto not in PROTOCOLS:
        raise PolicyInputError(f"{where}.{key}.protocol: {proto!r} is not TCP, UDP or SCTP")
    if key == "portNumber":
        n = port_number(val.get("port"), f"{where}.portNumber.port")
        return PortMatch(proto, n, n)
    if key == "portRange":
        lo = port_number(val.get("start"), f"{where}.portRange.start")
        hi = port_number(val.get("end"), f"{where}.portRange.end")
        if hi < lo:
            raise PolicyInputError(f"{where}.portRange: end {hi} is below start {lo}")
        return PortMatch(proto, lo, hi)
    raise PolicyInputError(f"{where}: unknown port type {key!r}")
