"""CiliumNetworkPolicy and CiliumClusterwideNetworkPolicy (cilium.io/v2).

Allow rules (`egress`) join the default tier like NetworkPolicies (their union allows); deny rules
(`egressDeny`) form a tier of their own in front of everything, because Cilium denies win over every
allow. A policy puts the pod in egress default deny when it has egress or egressDeny rules, unless
`enableDefaultDeny.egress` is false; an empty rule (`egress: [{}]`) allows nothing. A rule with
`toPorts` but no destination field allows those ports everywhere. Destinations: `toEndpoints`
(namespaced policies see their own namespace unless the selector names
`io.kubernetes.pod.namespace`), `toEntities` (world, world-ipv4/-ipv6, cluster, all; the others never
match a pod or an internet address), `toCIDR`/`toCIDRSet`, `toFQDNs` (matched against the rendezvous
host name, low confidence: resolved at run time). `toServices`, `toGroups` and `cidrGroupRef` cannot be
evaluated statically: those rules are left out with a low-confidence note.
"""
from __future__ import annotations

from typing import Any

from .addresses import parse_cidr
from .model import ALLOW, DENY, Dest, ExternalDest, Note, PodDest, PodInfo, Policy, PolicyInputError, PortMatch, Rule
from .peers import DestPredicate, any_of, anywhere, ip_block, names, nowhere
from .ports import any_port, edges, port_number
from .selectors import label_selector

NS_KEY = "io.kubernetes.pod.namespace"
NS_LABEL_PREFIX = "io.cilium.k8s.namespace.labels."
ENTITIES_NONE = {"host", "remote-node", "kube-apiserver", "health", "init", "unmanaged", "ingress", "none"}
L3_FIELDS = ("toEndpoints", "toEntities", "toCIDR", "toCIDRSet", "toFQDNs", "toServices", "toGroups",
             "toNodes", "toRequires")


def _key(k: str) -> str:
    for prefix in ("k8s:", "any:"):
        if k.startswith(prefix):
            return k[len(prefix):]
    return k


def endpoint_view(p: PodInfo) -> dict[str, str]:
    """The labels a Cilium endpoint selector sees on a pod."""
    view = {**p.labels, NS_KEY: p.namespace, "io.cilium.k8s.policy.serviceaccount": p.service_account}
    view.update({NS_LABEL_PREFIX + k: v for k, v in p.ns_labels.items()})
    return view


def compile_cilium(obj: dict, namespace: str | None, name: str, kind: str) -> list[Policy]:
    specs: list[tuple[str, Any]] = []
    if obj.get("spec") is not None:
        specs.append((name, obj["spec"]))
    raw_specs = obj.get("specs") or []
    if not isinstance(raw_specs, list):
        raise PolicyInputError("specs: must be a list")
    specs += [(f"{name}[{i}]", s) for i, s in enumerate(raw_specs)]
    if not specs:
        raise PolicyInputError("needs spec or specs")
    out: list[Policy] = []
    for pname, spec in specs:
        out += _compile_spec(spec, namespace, pname, kind)
    return out


def _compile_spec(spec: Any, namespace: str | None, name: str, kind: str) -> list[Policy]:
    if not isinstance(spec, dict):
        raise PolicyInputError("spec: must be a mapping")
    if "endpointSelector" not in spec:
        if "nodeSelector" in spec:
            return []  # a host policy: it selects nodes, not pods
        raise PolicyInputError("spec.endpointSelector: missing")
    sel = label_selector(spec["endpointSelector"], "spec.endpointSelector", key=_key)

    def selects(p: PodInfo) -> bool:
        return (namespace is None or p.namespace == namespace) and sel(endpoint_view(p))

    allow_raw, deny_raw = spec.get("egress") or [], spec.get("egressDeny") or []
    if not isinstance(allow_raw, list) or not isinstance(deny_raw, list):
        raise PolicyInputError("spec.egress and spec.egressDeny must be lists")
    default_deny = spec.get("enableDefaultDeny") or {}
    if not isinstance(default_deny, dict):
        raise PolicyInputError("spec.enableDefaultDeny: must be a mapping")
    isolates = bool(allow_raw or deny_raw) and default_deny.get("egress", True) is not False
    allow = Policy(kind, namespace, name, tier="default", order=1000.0, selects=selects, isolates=isolates)
    out = [allow]
    if deny_raw:
        deny = Policy(kind, namespace, name, tier="cilium-deny", order=0.0, selects=selects, isolates=False)
        deny.rules, deny.notes = _rules(deny_raw, "spec.egressDeny", DENY, namespace, deny)
        out.append(deny)
    allow.rules, allow.notes = _rules(allow_raw, "spec.egress", ALLOW, namespace, allow)
    return out


def _rules(raw: list, field: str, action: str, namespace: str | None, policy: Policy) -> tuple[list[Rule], list[Note]]:
    rules, notes = [], []
    for i, r in enumerate(raw):
        where = f"{field}[{i}]"
        try:
            rules.append(_rule(r, where, action, namespace, policy))
        except PolicyInputError as e:
            notes.append(Note("low", f"{policy.title()}: {e}; that rule is left out"))
    return rules, notes


def _rule(r: Any, where: str, action: str, namespace: str | None, policy: Policy) -> Rule:
    if r is None:
        r = {}
    if not isinstance(r, dict):
        raise PolicyInputError(f"{where}: a rule must be a mapping")
    for key in ("toServices", "toGroups"):
        if r.get(key):
            raise PolicyInputError(f"{where}.{key} cannot be evaluated without the cluster's objects")
    notes: list[Note] = []
    peers = _peers(r, where, namespace, policy, notes)
    to_ports = r.get("toPorts")
    has_l3 = any(r.get(k) is not None for k in L3_FIELDS)
    if to_ports:
        ports = _to_ports(to_ports, f"{where}.toPorts", policy, notes)
    elif r.get("icmps"):
        ports = lambda _flow: False  # noqa: E731 - an ICMP-only rule never matches TCP or UDP
    else:
        ports = lambda _flow: True  # noqa: E731
    if has_l3:
        dest = any_of(peers) if peers else nowhere
    else:
        dest = anywhere if to_ports else nowhere  # L4-only rule, or the empty "default deny" rule
    kind = "egressDeny" if action == DENY else "egress"
    return Rule(action, dest, ports, tuple(notes), label=f"{kind} rule {where.rsplit('[', 1)[1][:-1]}")


def _peers(r: dict, where: str, namespace: str | None, policy: Policy, notes: list[Note]) -> list[DestPredicate]:
    peers: list[DestPredicate] = []
    for j, sel_raw in enumerate(_list(r, "toEndpoints", where)):
        sel = label_selector(sel_raw, f"{where}.toEndpoints[{j}]", key=_key)
        names_ns = _mentions_namespace(sel_raw)
        peers.append(_endpoints(sel, None if names_ns or namespace is None else namespace))
    for j, ent in enumerate(_list(r, "toEntities", where)):
        peers.append(_entity(ent, f"{where}.toEntities[{j}]"))
    cidrs = [(parse_cidr(c, f"{where}.toCIDR[{j}]", bare_ip_ok=True), []) for j, c in enumerate(_list(r, "toCIDR", where))]
    for j, c in enumerate(_list(r, "toCIDRSet", where)):
        if not isinstance(c, dict) or "cidr" not in c:
            raise PolicyInputError(f"{where}.toCIDRSet[{j}]: needs a `cidr` (cidrGroupRef cannot be evaluated)")
        ex = [parse_cidr(e, f"{where}.toCIDRSet[{j}].except") for e in c.get("except") or []]
        cidrs.append((parse_cidr(c["cidr"], f"{where}.toCIDRSet[{j}].cidr", bare_ip_ok=True), ex))
    for net, ex in cidrs:
        peers.append(ip_block(net, ex))
        policy.cidrs += [net, *ex]
        policy.address_sensitive = True
    fqdns = _list(r, "toFQDNs", where)
    if fqdns:
        pats = []
        for j, f in enumerate(fqdns):
            if not isinstance(f, dict) or not (f.get("matchName") or f.get("matchPattern")):
                raise PolicyInputError(f"{where}.toFQDNs[{j}]: needs matchName or matchPattern")
            pats.append(str(f.get("matchName") or f.get("matchPattern")))
        peers.append(names(pats))
        notes.append(Note("low", f"{policy.title()} {where}.toFQDNs allows by DNS name; the addresses are "
                                 "learnt at run time through Cilium's DNS proxy"))
    return peers


def _list(r: dict, key: str, where: str) -> list:
    v = r.get(key) or []
    if not isinstance(v, list):
        raise PolicyInputError(f"{where}.{key}: must be a list")
    return v


def _mentions_namespace(sel: Any) -> bool:
    if not isinstance(sel, dict):
        return False
    keys = {_key(str(k)) for k in (sel.get("matchLabels") or {})}
    keys |= {_key(str(e.get("key"))) for e in sel.get("matchExpressions") or [] if isinstance(e, dict)}
    return NS_KEY in keys


def _endpoints(sel, namespace: str | None) -> DestPredicate:
    def match(d: Dest) -> bool:
        if not isinstance(d, PodDest) or (namespace is not None and d.pod.namespace != namespace):
            return False
        return sel(endpoint_view(d.pod))
    return match


def _entity(ent: Any, where: str) -> DestPredicate:
    if ent == "all":
        return anywhere
    if ent == "world":
        return lambda d: isinstance(d, ExternalDest)
    if ent in ("world-ipv4", "world-ipv6"):
        version = 4 if ent == "world-ipv4" else 6
        return lambda d: isinstance(d, ExternalDest) and d.ip.version == version
    if ent == "cluster":
        return lambda d: isinstance(d, PodDest)
    if ent in ENTITIES_NONE:
        return nowhere
    raise PolicyInputError(f"{where}: unknown entity {ent!r}")


def _to_ports(raw: Any, where: str, policy: Policy, notes: list[Note]):
    if not isinstance(raw, list):
        raise PolicyInputError(f"{where}: must be a list")
    matches: list[PortMatch] = []
    for j, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise PolicyInputError(f"{where}[{j}]: must be a mapping")
        rules = entry.get("rules") or {}
        if isinstance(rules, dict) and any(k != "dns" for k in rules):
            notes.append(Note("medium", f"{policy.title()} {where}[{j}] has L7 rules; only the ports were evaluated"))
        plist = entry.get("ports") or []
        if not plist:
            matches.append(PortMatch(None))
        for k, p in enumerate(plist):
            matches.append(_port(p, f"{where}[{j}].ports[{k}]"))
    policy.port_edges += edges(matches)
    return any_port(matches) if matches else (lambda _flow: True)


def _port(p: Any, where: str) -> PortMatch:
    if not isinstance(p, dict):
        raise PolicyInputError(f"{where}: must be a mapping")
    proto = str(p.get("protocol") or "ANY").upper()
    if proto not in ("TCP", "UDP", "SCTP", "ANY"):
        raise PolicyInputError(f"{where}.protocol: {proto!r} must be TCP, UDP, SCTP or ANY")
    proto_match = None if proto == "ANY" else proto
    port = p.get("port")
    if port is None or str(port) == "0":
        return PortMatch(proto_match)
    if isinstance(port, str) and not port.isdigit():
        return PortMatch(proto_match, name=port)
    start = port_number(port, f"{where}.port")
    end = port_number(p["endPort"], f"{where}.endPort") if p.get("endPort") else start
    if end < start:
        raise PolicyInputError(f"{where}.endPort: {end} is below port {start}")
    return PortMatch(proto_match, start, end)


