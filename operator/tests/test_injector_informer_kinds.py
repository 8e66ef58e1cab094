"""Tier-1: policies the injector's informer *lists* (not only those it sees in watch events) are understood."""
import uuid

import pytest

from pilotmesh_operator.injector.informer import Informer, wait_synced
from pilotmesh_operator.render.netpol import compile_policies

pytestmark = pytest.mark.kube


def test_listed_networkpolicies_keep_their_kind_and_compile(kube):
    from kubernetes import client

    api = kube.client()
    ns = f"informer-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
    try:
        client.NetworkingV1Api(api).create_namespaced_network_policy(ns, {
            "metadata": {"name": "deny-egress"}, "spec": {"podSelector": {}, "policyTypes": ["Egress"]}})
        informer = Informer(api, f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies").start()
        assert wait_synced([informer], 30)
        informer.stop()
        [obj] = informer.values()
        assert (obj["apiVersion"], obj["kind"]) == ("networking.k8s.io/v1", "NetworkPolicy")
        [compiled] = compile_policies([obj])
        assert [p.title() for p in compiled.policies] == [f"NetworkPolicy {ns}/deny-egress"] and not compiled.notes
    finally:
        client.CoreV1Api(api).delete_namespace(ns)
