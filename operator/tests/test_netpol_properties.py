"""Properties of the analyzer over random core NetworkPolicy sets and random garbage input."""
from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilotmesh_operator.render.netpol import analyze

POD = {"metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}}}
NAMESPACES = [{"metadata": {"name": "shop", "labels": {"team": "shop"}}}]
RANK = {"no-egress": 0, "compat-only": 1, "udp-ok": 2}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ports = st.lists(st.one_of(
    st.fixed_dictionaries({"protocol": st.sampled_from(["TCP", "UDP"]), "port": st.sampled_from([53, 443, 4000, 9001])}),
    st.fixed_dictionaries({"protocol": st.just("UDP"), "port": st.sampled_from([1024, 4000, 30000]),
                           "endPort": st.sampled_from([4000, 40000, 65535])}),
    st.fixed_dictionaries({"protocol": st.sampled_from(["TCP", "UDP"])}),
), max_size=3)
peers = st.lists(st.one_of(
    st.builds(lambda c: {"ipBlock": {"cidr": c}}, st.sampled_from(["0.0.0.0/0", "8.0.0.0/7", "34.64.0.0/10", "::/0"])),
    st.builds(lambda c, e: {"ipBlock": {"cidr": c, "except": [e]}}, st.just("0.0.0.0/0"),
              st.sampled_from(["10.0.0.0/8", "34.0.0.0/8", "128.0.0.0/1"])),
    st.just({"namespaceSelector": {}}),
    st.just({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
             "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}),
    st.just({"podSelector": {"matchLabels": {"app": "web"}}}),
), max_size=2)
rules = st.lists(st.fixed_dictionaries({"to": peers, "ports": ports}), max_size=3)
selectors = st.sampled_from([{}, {"matchLabels": {"app": "web"}}, {"matchLabels": {"app": "api"}}])


@st.composite
def netpols(draw, min_size=0):
    out = []
    for i in range(draw(st.integers(min_size, 4))):
        spec = {"podSelector": draw(selectors), "egress": draw(rules)}
        if draw(st.booleans()):
            spec["policyTypes"] = ["Egress"]
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"name": f"np-{i}", "namespace": "shop"}, "spec": spec})
    return out


DENY = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "deny", "namespace": "shop"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"]}}
ALLOW_ALL = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "zz-allow-all", "namespace": "shop"},
             "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{}]}}


def verdict(policies):
    return analyze(POD, NAMESPACES, policies, {"endPortSupported": True, "ipFamilies": ["IPv4", "IPv6"]})


@FAST
@given(netpols())
def test_allow_all_egress_gives_udp_ok(policies):
    v = verdict(policies + [ALLOW_ALL])
    assert (v.verdict, v.transport, v.dns, v.in_cluster_peers) == ("udp-ok", "udp", True, True)


@FAST
@given(netpols(), netpols(min_size=1))
def test_union_never_reduces_access_once_isolated(base, extra):
    before = verdict([DENY] + base)
    after = verdict([DENY] + base + extra)
    assert RANK[after.verdict] >= RANK[before.verdict]
    assert after.dns >= before.dns and after.in_cluster_peers >= before.in_cluster_peers


@FAST
@given(netpols(min_size=2), st.randoms(use_true_random=False))
def test_input_order_does_not_matter(policies, rnd: random.Random):
    shuffled = list(policies)
    rnd.shuffle(shuffled)
    a, b = verdict(policies).to_dict(), verdict(shuffled).to_dict()
    a["reasons"].sort(), b["reasons"].sort()
    assert a == b


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 70000), st.text(max_size=12),
                                     st.sampled_from(["0.0.0.0/0", "10.0.0.0/33", "UDP", "Egress", "Deny", "all()"])),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["podSelector", "egress", "egressDeny", "to", "ports", "port",
                                                        "protocol", "ipBlock", "cidr", "except", "policyTypes",
                                                        "endpointSelector", "toEntities", "toPorts", "action",
                                                        "destination", "selector", "subject", "priority", "matchLabels",
                                                        "namespaces", "networks", "types", "order", "endPort"]),
                                                       inner, max_size=4)), max_leaves=12)
kinds = st.sampled_from([("networking.k8s.io/v1", "NetworkPolicy"), ("projectcalico.org/v3", "GlobalNetworkPolicy"),
                         ("projectcalico.org/v3", "NetworkPolicy"), ("cilium.io/v2", "CiliumNetworkPolicy"),
                         ("cilium.io/v2", "CiliumClusterwideNetworkPolicy"),
                         ("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy"),
                         ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy")])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(kinds, json_values), max_size=3))
def test_garbage_never_crashes(objs):
    policies = [{"apiVersion": api, "kind": kind, "metadata": {"name": f"g{i}", "namespace": "shop"}, "spec": spec}
                for i, ((api, kind), spec) in enumerate(objs)]
    v = verdict(policies)
    assert v.verdict in RANK and v.confidence in ("high", "medium", "low")
