"""Calico NetworkPolicy and GlobalNetworkPolicy (projectcalico.org/v3 and crd.projectcalico.org/v1).

Policies live in tiers (Tier objects: `order`, `defaultAction` Deny or Pass; the default tier is at
1,000,000) and run by `order` (missing = last), rules in order: the first Allow or Deny decides,
Pass skips to the next tier, Log goes on. Kubernetes NetworkPolicies sit in the default tier at 1000.
Selectors are Calico expressions over the pod's labels plus `projectcalico.org/namespace`,
`projectcalico.org/orchestrator` and `projectcalico.org/serviceaccount`; namespace selectors see the
namespace labels plus `projectcalico.org/name`. Destination `nets`/`notNets`/`selector`/`notSelector`/
`namespaceSelector`/`ports`/`notPorts`, `protocol`/`notProtocol` and `ipVersion` are evaluated;
`domains` match the rendezvous host name (low confidence); `services`, `serviceAccounts` and `http`
cannot be evaluated statically, so those rules are left out with a low-confidence note.
"""
from __future__ import annotations

from typing import Any, Callable

from .addresses import parse_cidr
from .engine import TierInfo
from .model import (ALLOW, DENY, LOG, PASS, Dest, ExternalDest, Flow, Note, PodDest, PodInfo, Policy,
                    PolicyInputError, PortMatch, Rule)
from .peers import DestPredicate, ip_block, names
from .ports import any_port, edges, port_number
from .selectors import calico_selector

PROTO_NUMBERS = {6: "TCP", 17: "UDP", 132: "SCTP", 1: "ICMP", 58: "ICMPv6", 136: "UDPLite"}
UNEVALUABLE = ("services", "serviceAccounts")


def pod_view(p: PodInfo) -> dict[str, str]:
    """The labels Calico selectors see on a pod."""
    return {**p.labels, "projectcalico.org/namespace": p.namespace, "projectcalico.org/orchestrator": "k8s",
            "projectcalico.org/serviceaccount": p.service_account}


def ns_view(p: PodInfo) -> dict[str, str]:
    return {**p.ns_labels, "projectcalico.org/name": p.namespace}


def tier_info(obj: dict, name: str) -> TierInfo:
    spec = obj.get("spec") or {}
    if not isinstance(spec, dict):
        raise PolicyInputError("spec: must be a mapping")
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
        raise PolicyInputError(f"spec.order: {order!r} is not a number")
    action = spec.get("defaultAction") or DENY
    if action not in (DENY, PASS):
        raise PolicyInputError(f"spec.defaultAction: {action!r} must be Deny or Pass")
    return TierInfo(name, None if order is None else float(order), action)


def compile_calico(obj: dict, namespace: str | None, name: str, kind: str) -> list[Policy]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise PolicyInputError("spec: missing or not a mapping")
    order = spec.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, (int, float))):
        raise PolicyInputError(f"spec.order: {order!r} is not a number")
    sel = calico_selector(spec.get("selector"), "spec.selector")
    ns_sel = calico_selector(spec.get("namespaceSelector"), "spec.namespaceSelector") if namespace is None else None
    egress = spec.get("egress") or []
    if not isinstance(egress, list):
        raise PolicyInputError("spec.egress: must be a list")
    types = spec.get("types")
    if types is None:
        types = (["Ingress"] if spec.get("ingress") or not egress else []) + (["Egress"] if egress else [])
    if not isinstance(types, list) or any(t not in ("Ingress", "Egress") for t in types):
        raise PolicyInputError(f"spec.types: {types!r} must list Ingress and/or Egress")

    def selects(p: PodInfo) -> bool:
        if namespace is not None and p.namespace != namespace:
            return False
        return (ns_sel is None or ns_sel(ns_view(p))) and sel(pod_view(p))

    title = f"Calico {kind}"
    policy = Policy(title, namespace, name, tier=str(spec.get("tier") or "default"),
                    order=float("inf") if order is None else float(order), selects=selects,
                    isolates="Egress" in types)
    if spec.get("serviceAccountSelector"):
        policy.notes.append(Note("low", f"{policy.title()} uses serviceAccountSelector, which is not evaluated"))
    if not policy.isolates:
        return [policy]
    for i, raw in enumerate(egress):
        where = f"spec.egress[{i}]"
        try:
            rule = _rule(raw, where, namespace, policy)
        except PolicyInputError as e:
            policy.notes.append(Note("low", f"{policy.title()}: {e}; that rule is left out"))
            continue
        if rule is not None:
            policy.rules.append(rule)
    return [policy]


def _rule(raw: Any, where: str, namespace: str | None, policy: Policy) -> Rule | None:
    if not isinstance(raw, dict):
        raise PolicyInputError(f"{where}: a rule must be a mapping")
    action = raw.get("action")
    if action not in (ALLOW, DENY, PASS, LOG):
        raise PolicyInputError(f"{where}.action: {action!r} must be Allow, Deny, Pass or Log")
    if action == LOG:
        return None  # logs and goes on to the next rule
    dst = raw.get("destination") or {}
    src = raw.get("source") or {}
    if not isinstance(dst, dict) or not isinstance(src, dict):
        raise PolicyInputError(f"{where}: source and destination must be mappings")
    for key in UNEVALUABLE:
        if dst.get(key):
            raise PolicyInputError(f"{where}.destination.{key} cannot be evaluated without the cluster's objects")
    if raw.get("http"):
        raise PolicyInputError(f"{where}.http (an L7 match) cannot be evaluated")
    proto = _protocol(raw.get("protocol"), f"{where}.protocol")
    not_proto = _protocol(raw.get("notProtocol"), f"{where}.notProtocol")
    version = raw.get("ipVersion")
    if version not in (None, 4, 6):
        raise PolicyInputError(f"{where}.ipVersion: {version!r} must be 4 or 6")
    port_ok = _ports(dst.get("ports"), proto, f"{where}.destination.ports", policy)
    not_port = _ports(dst.get("notPorts"), proto, f"{where}.destination.notPorts", policy)
    dest, notes = _destination(dst, f"{where}.destination", namespace, policy)

    def ports(flow: Flow) -> bool:
        if proto is not None and flow.protocol != proto:
            return False
        if not_proto is not None and flow.protocol == not_proto:
            return False
        if version is not None and isinstance(flow.dest, ExternalDest) and flow.dest.ip.version != version:
            return False
        return (port_ok is None or port_ok(flow)) and (not_port is None or not not_port(flow))

    source = _source(src, f"{where}.source", namespace) if src else None
    return Rule(action, dest, ports, notes, label=f"egress rule {where[len('spec.egress['):-1]}", source=source)


def _protocol(value: Any, where: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value not in PROTO_NUMBERS:
            return f"#{value}"  # some other IP protocol: never TCP or UDP
        return PROTO_NUMBERS[value]
    if isinstance(value, str) and value.upper() in {v.upper() for v in PROTO_NUMBERS.values()}:
        return {v.upper(): v for v in PROTO_NUMBERS.values()}[value.upper()]
    raise PolicyInputError(f"{where}: {value!r} is not a protocol Calico knows")


def _ports(raw: Any, proto: str | None, where: str, policy: Policy) -> Callable[[Flow], bool] | None:
    if raw is None or raw == []:
        return None
    if not isinstance(raw, list):
        raise PolicyInputError(f"{where}: must be a list")
    if proto not in ("TCP", "UDP", "SCTP", "UDPLite"):
        raise PolicyInputError(f"{where}: ports need protocol TCP, UDP or SCTP on the rule")
    matches = []
    for j, p in enumerate(raw):
        if isinstance(p, str) and ":" in p:
            lo, hi = (port_number(x, f"{where}[{j}]") for x in p.split(":", 1))
            matches.append(PortMatch(None, lo, hi))
        elif isinstance(p, str) and not p.isdigit():
            matches.append(PortMatch(None, name=p))
        else:
            n = port_number(p, f"{where}[{j}]")
            matches.append(PortMatch(None, n, n))
    policy.port_edges += edges(matches)
    return any_port(matches)


def _destination(dst: dict, where: str, namespace: str | None, policy: Policy) -> tuple[DestPredicate, tuple[Note, ...]]:
    checks: list[DestPredicate] = []
    notes: tuple[Note, ...] = ()
    nets = [parse_cidr(n, f"{where}.nets[{k}]", bare_ip_ok=True) for k, n in enumerate(dst.get("nets") or [])]
    not_nets = [parse_cidr(n, f"{where}.notNets[{k}]", bare_ip_ok=True) for k, n in enumerate(dst.get("notNets") or [])]
    if nets:
        blocks = [ip_block(n) for n in nets]
        checks.append(lambda d: any(b(d) for b in blocks))
    if not_nets:
        blocks_not = [ip_block(n) for n in not_nets]
        checks.append(lambda d: not any(b(d) for b in blocks_not))
    if nets or not_nets:
        policy.cidrs += nets + not_nets
        policy.address_sensitive = True
    if "selector" in dst or "namespaceSelector" in dst:
        sel = calico_selector(dst.get("selector"), f"{where}.selector")
        if "namespaceSelector" in dst:
            checks.append(_pods_in(calico_selector(dst["namespaceSelector"], f"{where}.namespaceSelector"), sel))
        else:  # a namespaced policy's selector means pods of its own namespace
            checks.append(_pods_in(None, sel, namespace))
    if "notSelector" in dst:
        not_sel = calico_selector(dst.get("notSelector"), f"{where}.notSelector")
        checks.append(lambda d: not (isinstance(d, PodDest) and not_sel(pod_view(d.pod))))
    if dst.get("domains"):
        domains = [str(x) for x in dst["domains"]]
        checks.append(names(domains))
        notes = (Note("low", f"{policy.title()} {where}.domains allows by DNS name, resolved at run time"),)
    return (lambda d: all(c(d) for c in checks)), notes


def _pods_in(ns_sel: Callable[[dict], bool] | None, sel: Callable[[dict], bool],
             namespace: str | None = None) -> DestPredicate:
    def match(d: Dest) -> bool:
        if not isinstance(d, PodDest) or (namespace is not None and d.pod.namespace != namespace):
            return False
        return (ns_sel is None or ns_sel(ns_view(d.pod))) and sel(pod_view(d.pod))
    return match


def _source(src: dict, where: str, namespace: str | None) -> Callable[[PodInfo], bool]:
    unknown = set(src) - {"selector", "notSelector", "namespaceSelector"}
    if unknown:
        raise PolicyInputError(f"{where}: {', '.join(sorted(unknown))} on the sending side cannot be evaluated")
    sel = calico_selector(src.get("selector"), f"{where}.selector")
    not_sel = calico_selector(src["notSelector"], f"{where}.notSelector") if "notSelector" in src else None
    ns_sel = calico_selector(src["namespaceSelector"], f"{where}.namespaceSelector") if "namespaceSelector" in src else None
    return lambda p: (sel(pod_view(p)) and (not_sel is None or not not_sel(pod_view(p)))
                      and (ns_sel is None or ns_sel(ns_view(p))))
