"""The injector's AdmissionReview handling as a pure function: meshes, skips, transports, garbage."""
import base64
import json

import pytest

from pilotmesh_operator.injector.admission import Rejected, review
from pilotmesh_operator.injector.snapshot import Snapshot


def _mesh(name="default", created="2026-01-01T00:00:00Z", **spec):
    return {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
            "metadata": {"name": name, "creationTimestamp": created}, "spec": spec}


def _ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _pod(annotations=None, **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "web-", "annotations": annotations or {},
                         "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
                                              "uid": "rs-uid", "controller": True}]},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], **spec}}


def _body(pod, namespace="apps", kind="Pod", operation="CREATE", dry_run=False):
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u-1", "kind": {"group": "", "version": "v1", "kind": kind},
        "resource": {"group": "", "version": "v1", "resource": "pods" if kind == "Pod" else kind.lower() + "s"},
        "namespace": namespace, "operation": operation, "object": pod, "dryRun": dry_run}}).encode()


DENY_UDP = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "only-443", "namespace": "locked"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"ports": [{"protocol": "TCP", "port": 443}]},
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}

SNAP = Snapshot.build([_mesh()], [_ns("apps"), _ns("locked")], [DENY_UDP], cluster_version=(1, 36))
INJECT = {"pilot.io/inject": "true"}


def _patch(resp):
    return json.loads(base64.b64decode(resp["response"]["patch"]))


def test_annotated_pod_is_injected_with_a_json_patch_and_udp_by_default():
    resp, outcome = review(_body(_pod(INJECT)), SNAP)
    assert resp["response"] == {**resp["response"], "uid": "u-1", "allowed": True, "patchType": "JSONPatch"}
    ops = _patch(resp)
    added = [op["value"] for op in ops if op["path"] == "/spec/initContainers"]
    assert added and added[0][0]["name"] == "pilot" and added[0][0]["restartPolicy"] == "Always"
    assert outcome.result == "injected" and outcome.transport == "udp"
    assert outcome.owner["kind"] == "ReplicaSet"


def test_pod_in_a_udp_denying_namespace_gets_compat_with_the_policy_named():
    resp, outcome = review(_body(_pod(INJECT), namespace="locked"), SNAP)
    assert outcome.transport == "compat" and outcome.verdict.verdict == "compat-only"
    ops = {op["path"]: op.get("value") for op in _patch(resp)}
    assert ops["/metadata/annotations/pilot.io~1transport"] == "compat"
    assert "locked/only-443" in ops["/metadata/annotations/pilot.io~1transport-reason"]


def test_unannotated_pod_passes_unchanged_without_warning():
    resp, outcome = review(_body(_pod()), SNAP)
    assert "patch" not in resp["response"] and "warnings" not in resp["response"]
    assert (outcome.result, outcome.reason) == ("skipped", "annotation_absent")


def test_invalid_annotation_value_is_allowed_unchanged_with_a_warning_naming_it():
    resp, outcome = review(_body(_pod({"pilot.io/inject": "true", "pilot.io/transport": "tcp"})), SNAP)
    assert "patch" not in resp["response"]
    assert "pilot.io/transport" in resp["response"]["warnings"][0]
    assert outcome.reason == "invalid_annotation"


def test_no_mesh_means_no_injection():
    resp, outcome = review(_body(_pod(INJECT)), Snapshot.build([], [_ns("apps")], []))
    assert "patch" not in resp["response"] and outcome.reason == "no_mesh"


def test_the_older_of_two_overlapping_meshes_injects():
    old = _mesh("old", "2026-01-01T00:00:00Z", daemon={"image": "registry.invalid/old:1"})
    new = _mesh("new", "2026-02-01T00:00:00Z", daemon={"image": "registry.invalid/new:1"})
    snap = Snapshot.build([new, old], [_ns("apps")], [])
    assert snap.mesh_for("apps").name == "old" and snap.mesh_for("apps").shadowed == ("new",)
    resp, _ = review(_body(_pod(INJECT)), snap)
    assert "registry.invalid/old:1" in json.dumps(_patch(resp))


def test_mesh_namespace_selector_limits_where_it_injects():
    snap = Snapshot.build([_mesh(namespaceSelector={"matchLabels": {"mesh": "on"}})],
                          [_ns("apps"), _ns("meshed", mesh="on")], [])
    assert review(_body(_pod(INJECT)), snap)[1].reason == "no_mesh"
    assert review(_body(_pod(INJECT), namespace="meshed"), snap)[1].result == "injected"


def test_an_invalid_mesh_spec_injects_nothing_and_says_why():
    snap = Snapshot.build([_mesh(transport="carrier-pigeon")], [_ns("apps")], [])
    resp, outcome = review(_body(_pod(INJECT)), snap)
    assert outcome.reason == "invalid_mesh" and "transport" in resp["response"]["warnings"][0]


@pytest.mark.parametrize("kind,operation", [("Service", "CREATE"), ("Pod", "UPDATE"), ("Pod", "DELETE")])
def test_other_kinds_and_operations_are_allowed_untouched(kind, operation):
    resp, outcome = review(_body(_pod(INJECT), kind=kind, operation=operation), SNAP)
    assert resp["response"] == {"uid": "u-1", "allowed": True} and outcome.result == "ignored"


def test_dry_run_is_answered_the_same_and_flagged_for_no_side_effects():
    resp, outcome = review(_body(_pod(INJECT), dry_run=True), SNAP)
    assert resp["response"]["patchType"] == "JSONPatch" and outcome.dry_run


@pytest.mark.parametrize("raw,message", [
    (b"\xff\xfe", "not JSON"), (b"[]", "not an AdmissionReview"), (b'{"kind":"AdmissionReview"}', "apiVersion"),
    (b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{}}', "request.uid"),
    (b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{"uid":"x"}}', "v1beta1"),
])
def test_bodies_that_are_not_admission_reviews_are_rejected_with_a_reason(raw, message):
    with pytest.raises(Rejected, match=message):
        review(raw, SNAP)


@pytest.mark.parametrize("pod", [None, "a string", [], {"metadata": "x", "spec": 5}, {"spec": {"containers": "x"}}])
def test_garbage_pods_get_an_answer_never_an_exception(pod):
    resp, outcome = review(_body(pod), SNAP)
    assert resp["response"]["allowed"] is True and "patch" not in resp["response"]
    assert outcome.result == "skipped"


def test_a_pod_with_thousands_of_containers_is_answered():
    pod = _pod(INJECT)
    pod["spec"]["containers"] = [{"name": f"c{i}", "image": "registry.invalid/c:1"} for i in range(2000)]
    resp, outcome = review(_body(pod), SNAP)
    assert outcome.result == "injected" and len(_patch(resp)) > 0


def test_namespace_mode_label_overrides_the_mesh_mode():
    snap = Snapshot.build([_mesh()], [_ns("apps"), _ns("nodes", **{"pilot.io/mode": "daemonset"}),
                                      _ns("odd", **{"pilot.io/mode": "sidecars"})], [])
    resp, outcome = review(_body(_pod(INJECT), namespace="nodes"), snap)
    paths = [op["path"] for op in _patch(resp)]
    assert outcome.result == "injected" and "/spec/initContainers" not in paths
    volumes = json.dumps([op["value"] for op in _patch(resp) if op["path"].startswith("/spec/volumes")])
    assert '"hostPath": {"path": "/var/run/pilot"' in volumes
    resp, outcome = review(_body(_pod(INJECT), namespace="odd"), snap)
    assert outcome.reason == "invalid_mesh" and "pilot.io/mode" in resp["response"]["warnings"][0]
