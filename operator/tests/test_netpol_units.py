"""Focused checks of the analyzer's parts: addresses, ports, policyTypes defaulting, tiers."""
from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from pilotmesh_operator.render.netpol import analyze
from pilotmesh_operator.render.netpol.addresses import _RANGES, in_block, is_internet, witnesses
from pilotmesh_operator.render.netpol.core import compile_networkpolicy
from pilotmesh_operator.render.netpol.engine import Pipeline, TierInfo
from pilotmesh_operator.render.netpol.model import ALLOW, DENY, PASS, ExternalDest, Flow, PodDest, PodInfo, Policy, PortMatch, Rule
from pilotmesh_operator.render.netpol.peers import anywhere
from pilotmesh_operator.render.netpol.ports import core_port

POD = PodInfo("shop", {"app": "web"}, {"kubernetes.io/metadata.name": "shop"}, "p",
              named_ports={"pilot-udp": ("UDP", 4000)})
EXT = ExternalDest(ipaddress.ip_address("8.8.8.8"))


def test_policy_types_defaulting():
    assert not compile_networkpolicy({"spec": {"podSelector": {}, "egress": []}}, "shop", "a").isolates
    assert compile_networkpolicy({"spec": {"podSelector": {}, "egress": [{}]}}, "shop", "a").isolates
    p = compile_networkpolicy({"spec": {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]}}, "shop", "a")
    assert not p.isolates and not p.rules and "do nothing" in p.notes[0].text
    assert compile_networkpolicy({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}}, "shop", "a").isolates


def test_port_defaults_and_named_ports():
    tcp = core_port({"port": 4000}, "p")
    assert tcp.protocol == "TCP" and not tcp.matches(Flow(EXT, "UDP", 4000)) and tcp.matches(Flow(EXT, "TCP", 4000))
    named = core_port({"port": "pilot-udp", "protocol": "UDP"}, "p")
    assert not named.matches(Flow(EXT, "UDP", 4000))  # an address has no container ports
    assert named.matches(Flow(PodDest(POD), "UDP", 4000)) and not named.matches(Flow(PodDest(POD), "UDP", 4001))
    rng = core_port({"port": 1024, "endPort": 2048, "protocol": "UDP"}, "p")
    assert rng.uses_end_port and rng.matches(Flow(EXT, "UDP", 2048)) and not rng.matches(Flow(EXT, "UDP", 2049))
    assert PortMatch("UDP").matches(Flow(EXT, "UDP", 1))


def test_ip_block_except_and_families():
    net, ex = ipaddress.ip_network("0.0.0.0/0"), [ipaddress.ip_network("34.0.0.0/8")]
    assert in_block(ipaddress.ip_address("35.0.0.1"), net, ex)
    assert not in_block(ipaddress.ip_address("34.1.2.3"), net, ex)
    assert not in_block(ipaddress.ip_address("2001:db8::1"), net, ex)  # IPv4 blocks never match IPv6


def test_witnesses_are_public_and_cover_except_edges():
    ws = witnesses([4, 6], [ipaddress.ip_network("34.0.0.0/8")], sensitive=True)
    assert all(is_internet(w) for w in ws)
    assert ipaddress.ip_address("34.0.0.0") in ws and ipaddress.ip_address("35.0.0.0") in ws
    assert {w.version for w in ws} == {4, 6}
    assert len(witnesses([4], [], sensitive=False)) == 1


def _covered(blocks, fam=4) -> bool:
    """Exact: is every public address of `fam` inside some block (cidr minus excepts)? Interval arithmetic."""
    allowed = []
    for cidr, excepts in blocks:
        parts = [cidr]
        for e in excepts:
            parts = [q for p in parts for q in ([p] if not p.overlaps(e) else
                                                 ([] if p.subnet_of(e) else list(p.address_exclude(e))))]
        allowed += [(int(p.network_address), int(p.broadcast_address)) for p in parts]
    allowed.sort()
    gaps, pos = [], 0
    for lo, hi in allowed:
        if lo > pos:
            gaps.append((pos, lo - 1))
        pos = max(pos, hi + 1)
    gaps.append((pos, 2**32 - 1)) if pos <= 2**32 - 1 else None
    private = _RANGES[fam]
    for lo, hi in gaps:  # a gap is harmless only if it is made of non-public ranges
        n = lo
        while n <= hi:
            cover = next(((a, b) for a, b in private if a <= n <= b), None)
            if cover is None:
                return False
            n = cover[1] + 1
    return True


cidr4 = st.builds(lambda a, p: ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{p}", strict=False),
                  st.integers(0, 2**32 - 1), st.integers(0, 12))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(cidr4, st.lists(cidr4.map(lambda n: n), max_size=2)), min_size=1, max_size=4))
def test_witnesses_decide_coverage_exactly(blocks):
    excepts_in = [(c, [e for e in ex if e.subnet_of(c)]) for c, ex in blocks]
    ws = witnesses([4], [n for c, ex in excepts_in for n in [c, *ex]], sensitive=True)
    by_witness = all(any(in_block(w, c, ex) for c, ex in excepts_in) for w in ws)
    assert by_witness == _covered(excepts_in)


def _policy(tier, order, action, isolates=True, name="p"):
    return Policy("X", "shop", name, tier, order, lambda p: True, isolates,
                  [Rule(action, anywhere, lambda f: f.protocol == "UDP", label="r")])


def test_pipeline_pass_deny_and_tier_default():
    flow_udp, flow_tcp = Flow(EXT, "UDP", 4000), Flow(EXT, "TCP", 443)
    tiers = {"sec": TierInfo("sec", 10)}
    pipe = Pipeline(POD, [_policy("sec", 1, PASS), _policy("default", 1000, DENY, name="d")], tiers)
    assert not pipe.decide(flow_udp).allowed and pipe.decide(flow_udp).policy.name == "d"
    assert not pipe.decide(flow_tcp).allowed and pipe.decide(flow_tcp).tier.info.name == "sec"  # tier default deny
    pass_tier = {"sec": TierInfo("sec", 10, PASS)}
    pipe = Pipeline(POD, [_policy("sec", 1, DENY, name="s"), _policy("default", 1000, ALLOW, isolates=False)], pass_tier)
    assert pipe.decide(flow_tcp).allowed and pipe.decide(flow_tcp).policy is None
    assert pipe.decide(flow_udp).policy.name == "s"


def test_end_port_note_dropped_when_supported():
    pol = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "r", "namespace": "shop"},
           "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                    "egress": [{"ports": [{"protocol": "UDP", "port": 1024, "endPort": 65535}, {"port": 443}]}]}}
    pod = {"metadata": {"name": "p", "namespace": "shop"}}
    rdv = {"rendezvous": [{"ips": ["34.71.57.205"]}]}
    assert analyze(pod, [], [pol], rdv).confidence == "low"
    assert analyze(pod, [], [pol], {**rdv, "endPortSupported": True}).confidence == "high"


def test_settings_errors_are_typed():
    from pilotmesh_operator.render.netpol import SettingsError
    import pytest
    for bad in ({"udpPeerPort": 0}, {"nope": 1}, {"ipFamilies": ["IPv5"]}, {"rendezvous": [{}]}):
        with pytest.raises(SettingsError):
            analyze({"metadata": {}}, [], [], bad)
