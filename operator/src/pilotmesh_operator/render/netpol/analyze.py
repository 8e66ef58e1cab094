"""`analyze(pod, namespaces, policies, settings) -> Verdict`: which transport a pod's egress allows.

The flows tested (all from the pod; `engine.py` decides each one):
- U, UDP to the internet: every public address of the pod's IP families (or of `peerNetworks`), on the
  UDP peer port, the beacon port and the whole high-port range 1024-65535 (peers behind NAT answer from
  any high port), plus the beacon port on each rendezvous endpoint. `addresses.witnesses()` picks the
  addresses and the policies' own port edges pick the ports, so "all allowed" is exact.
- T, TCP to each rendezvous endpoint (443): to its IPs, to its in-cluster pods, or, for a host name
  without IPs, to every public address (allowed only partly -> low confidence) and only if DNS works.
- D, DNS: UDP and TCP 53 to the cluster DNS pods (or to all of the configured DNS IPs).
- P, in-cluster peers: UDP on the peer port to the configured peer pods, by default pods like this one.

`udp-ok` needs all of U; otherwise `compat-only` needs all of T; otherwise `no-egress`.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Iterable

from . import kinds
from .addresses import FAMILIES, parse_ip, witnesses
from .engine import Decision, Pipeline, TierInfo
from .model import (ExternalDest, Flow, IPAddress, Note, PodDest, PodInfo, Policy, PolicyInputError, Verdict,
                    worst)
from .settings import Endpoint, Settings

DNS_PORT_NAMES = {"dns": ("UDP", 53), "dns-tcp": ("TCP", 53)}  # CoreDNS's containerPort names


class PodInputError(ValueError):
    """The pod itself cannot be read; the message says what is missing."""


def analyze(pod: dict, namespaces: Iterable[dict] | Mapping[str, dict] = (), policies: Iterable[Any] = (),
            settings: Settings | dict | None = None) -> Verdict:
    """The egress verdict for `pod` given the namespace objects and policy objects (any kinds, mixed).

    `namespaces` may also be a mapping of name -> Namespace object (used as is: no per-call index).
    `policies` may hold raw objects or the output of `compile_policies()`; the pod's own namespace is
    used for raw namespaced objects that name none.
    """
    s = settings if isinstance(settings, Settings) else Settings.from_dict(settings)
    ns_objs = namespaces if isinstance(namespaces, Mapping) else {
        (n.get("metadata") or {}).get("name"): n for n in namespaces if isinstance(n, dict)}
    info = pod_info(pod, ns_objs)
    policies = list(policies)
    compiled = [o if isinstance(o, kinds.Compiled) else kinds.compile_object(o, info.namespace) for o in policies]
    tiers = {t.name: t for c in compiled for t in c.tiers}
    selecting, notes = _selecting(info, compiled, tiers)
    warnings: list[str] = []
    if policies and info.namespace not in ns_objs:
        warnings.append(f"Namespace {info.namespace} was not given: assumed to carry only the label "
                        f"kubernetes.io/metadata.name={info.namespace}")
    pod_spec = pod.get("spec")
    if isinstance(pod_spec, dict) and pod_spec.get("hostNetwork"):
        return _finish("udp-ok", [f"Pod {info.ref()} uses hostNetwork: NetworkPolicy does not apply to it."],
                       True, True, notes, warnings)
    if s.enforcement == "none":
        return _finish("udp-ok", ["The settings say the CNI does not enforce NetworkPolicy: all egress is allowed."],
                       True, True, notes, warnings)
    if s.enforcement == "unknown":
        notes.append(Note("low", "Whether the CNI enforces NetworkPolicy is unknown; the verdict assumes it does."))
    return _decide(info, pod, selecting, tiers, s, notes, warnings, ns_objs)


def compile_policies(policies: Iterable[Any], default_namespace: str = "default") -> list[kinds.Compiled]:
    """Compile policy objects once, for many `analyze()` calls (a webhook or the operator's re-decide loop)."""
    return [kinds.compile_object(o, default_namespace) for o in policies]


def pod_info(pod: Any, ns_objs: dict[str, dict], namespace: str | None = None, labels: dict | None = None) -> PodInfo:
    """What policies see of a pod (or of a pod-like destination when `namespace`/`labels` are given)."""
    if namespace is None:
        if not isinstance(pod, dict):
            raise PodInputError(f"the pod must be a mapping, got {type(pod).__name__}")
        meta = pod.get("metadata") if isinstance(pod.get("metadata"), dict) else {}
        namespace = str(meta.get("namespace") or "default")
        raw = meta.get("labels") or {}
        labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        spec = pod.get("spec") if isinstance(pod.get("spec"), dict) else {}
        named = {}
        containers = [c for key in ("containers", "initContainers") if isinstance(spec.get(key), list)
                      for c in spec[key]]
        for c in containers:
            ports = c.get("ports") if isinstance(c, dict) else None
            for p in ports if isinstance(ports, list) else []:
                if isinstance(p, dict) and p.get("name") and isinstance(p.get("containerPort"), int):
                    named[str(p["name"])] = (str(p.get("protocol") or "TCP"), p["containerPort"])
        name = str(meta.get("name") or meta.get("generateName") or "")
        return PodInfo(namespace, labels, _ns_labels(namespace, ns_objs), name,
                       str(spec.get("serviceAccountName") or "default"), named)
    return PodInfo(namespace, dict(labels or {}), _ns_labels(namespace, ns_objs))


def _ns_labels(name: str, ns_objs: dict[str, dict]) -> dict[str, str]:
    raw = ((ns_objs.get(name) or {}).get("metadata") or {}).get("labels") or {}
    labels = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
    labels.setdefault("kubernetes.io/metadata.name", name)  # the apiserver sets it on every namespace
    return labels


def _selecting(info: PodInfo, compiled: list[kinds.Compiled], tiers: dict[str, TierInfo]) -> tuple[list[Policy], list[Note]]:
    selecting: list[Policy] = []
    notes: list[Note] = []
    for c in compiled:
        if c.namespace is None or c.namespace == info.namespace:
            notes += c.notes
        for p in c.policies:
            try:
                chosen = p.selects(info)
            except Exception as e:  # noqa: BLE001 - a broken selector lowers confidence, never crashes
                detail = str(e) if isinstance(e, PolicyInputError) else f"{type(e).__name__}: {e}"
                notes.append(Note("low", f"Cannot tell whether {p.title()} selects the pod ({detail}); left out"))
                continue
            if chosen:
                selecting.append(p)
                notes += p.notes
                if p.tier not in tiers and p.tier not in ("default", "cilium-deny", "adminnetworkpolicy",
                                                          "baselineadminnetworkpolicy"):
                    notes.append(Note("medium", f"{p.title()} is in Calico tier {p.tier}, whose Tier object was "
                                                "not given: its order is unknown (read as last)"))
    by_priority: dict[float, list[Policy]] = {}
    for p in selecting:
        if p.kind == "AdminNetworkPolicy":
            by_priority.setdefault(p.order, []).append(p)
    for prio, same in by_priority.items():
        if len(same) > 1:
            names = ", ".join(p.ref() for p in same)
            notes.append(Note("medium", f"AdminNetworkPolicies {names} share priority {prio:g}: their order is undefined"))
    return selecting, notes


@dataclass
class Check:
    """The decisions for one class of flows."""

    what: str
    flows: list[Flow]
    decisions: list[Decision] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.allowed for d in self.decisions)

    @property
    def some(self) -> bool:
        return any(d.allowed for d in self.decisions)

    def sentence(self) -> str:
        if self.ok:
            allowers = list(dict.fromkeys(d.policy.title() for d in self.decisions if d.policy is not None))
            if allowers:
                return f"{self.what} is allowed by {', '.join(allowers)}."
            return f"{self.what} is allowed: no egress policy isolates or denies it."
        i = next(k for k, d in enumerate(self.decisions) if not d.allowed)
        if self.some:
            return f"{self.what} is only partly allowed: {describe(self.flows[i])} is {self.decisions[i].explain()}."
        return f"{self.what} is {self.decisions[i].explain()} (tested {describe(self.flows[i])})."


def describe(flow: Flow) -> str:
    d = flow.dest
    if isinstance(d, PodDest):
        lb = ",".join(f"{k}={v}" for k, v in sorted(d.pod.labels.items()))
        where = f"pods {d.pod.namespace}/{{{lb}}}"
    else:
        where = f"{sorted(d.names)[0]} at {d.ip}" if d.names else str(d.ip)
    return f"{flow.protocol} {flow.port} to {where}"


def _decide(info: PodInfo, pod: dict, selecting: list[Policy], tiers: dict[str, TierInfo], s: Settings,
            notes: list[Note], warnings: list[str], ns_objs: dict[str, dict]) -> Verdict:
    pipe = Pipeline(info, selecting, tiers)
    fams = _families(pod, s)
    cidrs = [c for p in selecting for c in p.cidrs]
    sensitive = any(p.address_sensitive for p in selecting)
    internet = _witnesses(tuple(fams), tuple(cidrs) if sensitive else (), sensitive, ())
    peers_out = _witnesses(tuple(fams), tuple(cidrs) if sensitive else (), sensitive, s.peer_networks) \
        if s.peer_networks else internet
    lo, hi = s.udp_ports
    edge_ports = {p for pol in selecting for p in pol.port_edges if lo <= p <= hi}
    uports = sorted({lo, hi, s.udp_peer_port, s.beacon_udp_port} | edge_ports)
    # D first: rendezvous host names need it
    dns_check = Check(f"DNS (UDP and TCP 53 to pods {s.dns_namespace}/{_fmt(s.dns_labels)})", [
        Flow(PodDest(_dns_pod(s, ns_objs)), proto, 53) for proto in ("UDP", "TCP")])
    ip_checks = [Check(f"DNS (UDP and TCP 53 to {ip})", [Flow(ExternalDest(parse_ip(ip, "clusterDNS.ips")), proto, 53)
                                                        for proto in ("UDP", "TCP")]) for ip in s.dns_ips]
    rdv = [(ep, _endpoint_dests(ep, internet, ns_objs)) for ep in s.rendezvous]
    where = f"the internet{'' if not s.peer_networks else ' (peerNetworks)'}"
    u = Check(f"UDP to {where} (peer port {s.udp_peer_port}, beacon port {s.beacon_udp_port}, ports {lo}-{hi})",
              list(_external_flows(peers_out, "UDP", tuple(uports)))
              + [Flow(d, "UDP", s.beacon_udp_port) for ep, ds in rdv if ep.host is None or ep.ips
                 or ep.pod_labels is not None for d in ds])
    t_checks = [Check(f"TCP {ep.port} to the rendezvous {ep.describe()}", [Flow(d, "TCP", ep.port) for d in ds])
                for ep, ds in rdv]
    peer_pods = [pod_info(None, ns_objs, ns, lb) for ns, lb in s.peers] or [info]
    p = Check(f"UDP {s.udp_peer_port} to in-cluster peers ({', '.join(describe_pod(x) for x in peer_pods)})",
              [Flow(PodDest(x), "UDP", s.udp_peer_port) for x in peer_pods])
    checks = [u, *t_checks, dns_check, *ip_checks, p]
    for c in checks:
        c.decisions = [pipe.decide(f) for f in c.flows]
        for d in c.decisions:
            if d.rule is not None:
                notes += [n for n in d.rule.notes if not (n.tag == "endPort" and s.end_port_supported)]
    dns = dns_check.ok or bool(ip_checks and all(c.ok for c in ip_checks))
    reasons = [_selection_sentence(info, selecting)]
    reasons.append(u.sentence())
    t_ok = True
    for (ep, _), c in zip(rdv, t_checks):
        sentence = c.sentence()
        if ep.host and not ep.ips and ep.pod_labels is None and c.some:
            if not dns:
                t_ok = False
                reasons.append(sentence[:-1] + f", but {ep.host} cannot be resolved: DNS is blocked.")
                warnings.append(f"The rendezvous {ep.host} is given by name but DNS is blocked: set its IPs in the "
                                "mesh settings or allow DNS")
                continue
            if not c.ok:
                notes.append(Note("low", f"TCP {ep.port} to {ep.host} is allowed only to some addresses; whether "
                                          "the name resolves there is unknown (give its IPs in the settings)"))
        reasons.append(sentence)
        t_ok = t_ok and c.some
    reasons.append(dns_check.sentence() if dns or not ip_checks else ip_checks[0].sentence())
    reasons.append(p.sentence())
    verdict = "udp-ok" if u.ok else "compat-only" if t_ok else "no-egress"
    if verdict == "udp-ok" and not t_ok:
        notes.append(Note("medium", "UDP is allowed but the rendezvous cannot be reached over TCP (see above): "
                                    "the registry is reached over TCP, so the daemon may not register"))
    if verdict == "udp-ok" and not p.ok:
        warnings.append("In-cluster peers cannot reach each other over UDP; their traffic will go through the relay")
    return _finish(verdict, reasons, dns, p.ok, notes, warnings)


@functools.lru_cache(maxsize=1024)
def _external_flows(ips: tuple, protocol: str, ports: tuple) -> tuple[Flow, ...]:
    return tuple(Flow(ExternalDest(ip), protocol, port) for ip in ips for port in ports)


@functools.lru_cache(maxsize=1024)
def _witnesses(fams: tuple, cidrs: tuple, sensitive: bool, within: tuple) -> tuple:
    return tuple(witnesses(fams, cidrs, sensitive, within))


def describe_pod(p: PodInfo) -> str:
    return f"pods {p.namespace}/{_fmt(p.labels)}"


def _fmt(labels: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(labels.items())) + "}"


def _selection_sentence(info: PodInfo, selecting: list[Policy]) -> str:
    if not selecting:
        return f"No policy selects pod {info.ref()} for egress, so all its egress is allowed."
    ordered = sorted(selecting, key=lambda p: (p.title(), p.order))
    isolating = list(dict.fromkeys(p.title() for p in ordered if p.isolates))
    others = [t for t in dict.fromkeys(p.title() for p in ordered if not p.isolates) if t not in isolating]
    parts = []
    if isolating:
        parts.append(f"Egress of pod {info.ref()} is restricted by {', '.join(isolating)}")
    if others:
        parts.append(f"{'also' if isolating else f'Pod {info.ref()} is'} selected by {', '.join(others)}")
    return "; ".join(parts) + "."


def _families(pod: dict, s: Settings) -> list[int]:
    ips = ((pod.get("status") or {}).get("podIPs") or []) if isinstance(pod.get("status"), dict) else []
    fams = set()
    for entry in ips:
        try:
            fams.add(parse_ip(entry.get("ip") if isinstance(entry, dict) else entry, "status.podIPs").version)
        except PolicyInputError:
            continue
    return sorted(fams) or [FAMILIES[f] for f in s.ip_families]


def _dns_pod(s: Settings, ns_objs: dict[str, dict]) -> PodInfo:
    base = pod_info(None, ns_objs, s.dns_namespace, s.dns_labels)
    return PodInfo(base.namespace, base.labels, base.ns_labels, named_ports=DNS_PORT_NAMES)


def _endpoint_dests(ep: Endpoint, internet: list[IPAddress], ns_objs: dict[str, dict]) -> list:
    if ep.pod_labels is not None:
        return [PodDest(pod_info(None, ns_objs, ep.namespace, ep.pod_labels))]
    names = frozenset([ep.host]) if ep.host else frozenset()
    if ep.ips:
        return [ExternalDest(parse_ip(ip, "rendezvous.ips"), names) for ip in ep.ips]
    return [ExternalDest(ip, names) for ip in internet]


def _finish(verdict: str, reasons: list[str], dns: bool, peers: bool, notes: list[Note],
            warnings: list[str]) -> Verdict:
    seen = list(dict.fromkeys(notes))
    lowering = [n for n in seen if n.confidence != "high"]
    warnings = warnings + [n.text for n in seen if n.confidence == "high"]
    transport = "udp" if verdict == "udp-ok" else "compat"
    if verdict == "no-egress":
        warnings.append("Nothing will connect until egress to TCP 443 (the rendezvous) is allowed")
    if not dns:
        warnings.append("DNS is blocked: names (including the rendezvous host) cannot be resolved")
    return Verdict(verdict, transport, worst(*(n.confidence for n in lowering)),
                   reasons + [n.text for n in lowering], dns, peers, list(dict.fromkeys(warnings)))
