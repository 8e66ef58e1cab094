"""transport_state: which namespaces a watched change can affect, pending scopes, the compile cache."""
from pilotmesh_operator.handlers_transport import collection
from pilotmesh_operator.injector.server import POLICY_PATHS
from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.transport_state import (ALL, MESH, NAMESPACE, POLICY, CompileCache, Pending, Tracker,
                                                read_namespaces)


def _np(ns, name, rv="1", port=443, **meta):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, **meta},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"ports": [{"port": port}]}]}}


def _ccnp(name, rv="1"):
    return {"apiVersion": "cilium.io/v2", "kind": "CiliumClusterwideNetworkPolicy",
            "metadata": {"name": name, "resourceVersion": rv},
            "spec": {"endpointSelector": {}, "egressDeny": [{"toPorts": [{"ports": [{"port": "0", "protocol": "UDP"}]}]}]}}


def _ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels, "resourceVersion": "1"}}


def _mesh(**spec):
    return {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
            "metadata": {"name": "m", "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}


def test_a_namespaced_policy_affects_its_namespace_only_when_its_rules_change():
    t = Tracker()
    assert t.observe(POLICY, _np("a", "p")) == Pending({"a"})
    assert not t.observe(POLICY, _np("a", "p", rv="2", annotations={"x": "y"})), "metadata churn is no change"
    assert t.observe(POLICY, _np("a", "p", rv="3", port=80)) == Pending({"a"})
    assert t.observe(POLICY, _np("a", "p", rv="3", port=80), deleted=True) == Pending({"a"})
    assert not t.observe(POLICY, _np("a", "p"), deleted=True), "deleting what was never seen changes nothing"


def test_cluster_scoped_policies_and_mesh_specs_affect_everything_mesh_status_nothing():
    t = Tracker()
    assert t.observe(POLICY, _ccnp("deny-udp")) == ALL
    assert t.observe(MESH, _mesh()) == ALL
    assert not t.observe(MESH, {**_mesh(), "status": {"udpPods": 3}})
    assert t.observe(MESH, _mesh(transport="compat")) == ALL


def test_namespace_labels_affect_that_namespace_or_all_when_meshes_read_it():
    t = Tracker()
    assert t.observe(NAMESPACE, _ns("apps")) == Pending({"apps"})
    assert not t.observe(NAMESPACE, {**_ns("apps"), "status": {"phase": "Active"}})
    assert t.observe(NAMESPACE, _ns("apps", team="x")) == Pending({"apps"})
    t.read_by_meshes = read_namespaces(Snapshot.build([_mesh()], [], []))
    assert "kube-system" in t.read_by_meshes
    t.observe(NAMESPACE, _ns("kube-system"))
    assert t.observe(NAMESPACE, _ns("kube-system", dns="yes")).everything
    assert not t.observe(NAMESPACE, _ns("apps", team="x"), deleted=True)


def test_in_cluster_rendezvous_namespace_is_read_by_meshes():
    snap = Snapshot.build([_mesh(rendezvous={"inCluster": True})], [], [], operator_namespace="pilot-ops")
    assert {"kube-system", "pilot-ops"} <= read_namespaces(snap)
    assert read_namespaces(Snapshot.build([_mesh(mode="nonsense")], [], [])) == frozenset()


def test_replace_notices_objects_gone_from_a_collection():
    t = Tracker()
    key = ("cilium.io/v2", "CiliumClusterwideNetworkPolicy")
    assert t.replace(POLICY, [_ccnp("a"), _ccnp("b")], key) == ALL
    assert not t.replace(POLICY, [_ccnp("a", rv="5"), _ccnp("b", rv="6")], key)
    assert t.replace(POLICY, [_ccnp("a")], key) == ALL
    t.observe(POLICY, _np("x", "p"))
    assert not t.replace(POLICY, [_ccnp("a")], key), "other collections are not touched"


def test_pending_accumulates_and_take_empties_it():
    p = Pending()
    p.add(Pending({"a"}))
    p.add(Pending({"b"}))
    assert p.describe() == "a, b"
    taken = p.take()
    assert taken.namespaces == {"a", "b"} and not p
    p.add(Pending({f"n{i}" for i in range(8)}))
    assert p.describe().endswith("and 3 more")
    p.add(ALL)
    assert p.describe() == "all namespaces"


def test_compile_cache_reuses_unchanged_objects_and_drops_deleted_ones():
    cache = CompileCache()
    first = cache.compile([_np("a", "p"), _np("b", "q")])
    assert len(first) == 2 and len(cache) == 2
    again = cache.compile([_np("a", "p"), _np("b", "q", rv="2", port=80)])
    assert again[0] is first[0] and again[1] is not first[1]
    assert again[1].policies[0].namespace == "b"
    assert len(cache.compile([_np("a", "p")])) == 1 and len(cache) == 1


def test_every_optional_policy_path_maps_to_its_kind():
    got = {collection(path) for path, optional in POLICY_PATHS if optional}
    assert ("cilium.io/v2", "CiliumClusterwideNetworkPolicy") in got
    assert ("crd.projectcalico.org/v1", "GlobalNetworkPolicy") in got
    assert ("policy.networking.k8s.io/v1alpha1", "BaselineAdminNetworkPolicy") in got
    assert len(got) == sum(1 for _, optional in POLICY_PATHS if optional)
