"""`pilotmesh why` as a pure function: one pod per reason, each named with its code and a useful message."""
import json

import pytest

from pilotmesh_operator import desired
from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.mesh import MeshSettings
from pilotmesh_operator.why import WebhookFacts, explain, render_text

IMAGE = "registry.invalid/pilot-daemon:2"
URL = desired.OperatorSettings(webhook_url="https://127.0.0.1:8443/inject")


def _mesh(name="m", created="2026-01-01T00:00:00Z", **spec):
    return {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
            "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"daemon": {"image": IMAGE}, **spec}}


def _ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _pod(annotations=None, labels=None, name="web", **spec):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "annotations": dict(annotations or {}), "labels": dict(labels or {})},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], **spec}}


INJECT = {"pilot.io/inject": "true"}
NAMESPACES = [_ns("apps"), _ns("auto", **{"pilot.io/inject": "true"}), _ns("locked")]
DENY_UDP = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "only-443", "namespace": "locked"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
                {"ports": [{"protocol": "TCP", "port": 443}]},
                {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}}
SNAP = Snapshot.build([_mesh()], NAMESPACES, [DENY_UDP], cluster_version=(1, 36))
BUNDLE = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"


def _facts(ca=BUNDLE, secret=BUNDLE, ready=(True, "injector answers /readyz"), mwc="default", **spec):
    conf = desired.webhook_configuration("m", MeshSettings.from_spec({"daemon": {"image": IMAGE}, **spec}), ca, URL)
    return WebhookFacts(conf if mwc else None, secret, ready)


def _codes(e):
    return {c.reason for c in e.checks if c.status in ("fail", "warn")}


def _injected(pod, image=IMAGE, policy="udp"):
    status = {"version": "0.1.0", "mode": "sidecar", "image": image, "transport": "udp", "transportPolicy": policy}
    meta = pod["metadata"]
    meta["annotations"].update({"pilot.io/status": json.dumps(status), "pilot.io/transport": "udp",
                                "pilot.io/transport-reason": "PilotMesh spec.transport=udp"})
    meta["labels"]["pilot.io/injected"] = "sidecar"
    return pod


def test_an_annotated_pod_would_be_injected_with_every_check_passing():
    e = explain(_pod(INJECT), "apps", SNAP, _facts())
    assert e.state == "would-inject" and e.injected and e.mesh == "m" and e.transport == "udp"
    assert all(c.status in ("ok", "info") for c in e.checks), e.checks
    assert {c.topic for c in e.checks} >= {"mesh", "opt-in", "webhook", "certificate", "injector", "transport"}


def test_policies_behind_a_compat_verdict_are_listed():
    e = explain(_pod(INJECT), "locked", SNAP)
    assert e.transport == "compat" and e.verdict["verdict"] in ("compat-only", "no-egress")
    assert any("locked/only-443" in r for r in e.verdict["reasons"])
    text = render_text([e])
    assert "policy: " in text and "locked/only-443" in text


@pytest.mark.parametrize("pod,namespace,snap,code", [
    (_pod(), "apps", SNAP, "annotation_absent"),
    (_pod({"pilot.io/inject": "yes"}), "apps", SNAP, "invalid_annotation"),
    (_pod({"pilot.io/inject": "false"}), "auto", SNAP, "injection_disabled"),
    (_pod(INJECT), "kube-system", Snapshot.build([_mesh()], [_ns("kube-system")], []), "namespace_excluded"),
    (_pod(INJECT), "apps", Snapshot.build([_mesh(namespaceSelector={"matchLabels": {"x": "y"}})], NAMESPACES, []),
     "no_mesh"),
    (_pod(INJECT), "apps", Snapshot.build([_mesh(transport="carrier-pigeon")], NAMESPACES, []), "invalid_mesh"),
    (_pod(INJECT, containers=[{"name": "pilot", "image": "x:1"}]), "apps", SNAP, "no_containers"),
])
def test_each_reason_not_to_inject_is_named(pod, namespace, snap, code):
    e = explain(pod, namespace, snap)
    assert e.state == "would-not-inject" and not e.injected
    assert code in _codes(e), e.checks
    assert "NOT be injected" in e.headline()


def test_a_mesh_in_conflict_elsewhere_injects_nothing():
    meshes = [_mesh("old", "2025-01-01T00:00:00Z", namespaceSelector={"matchLabels": {"team": "b"}}),
              _mesh("new", "2026-01-01T00:00:00Z")]
    snap = Snapshot.build(meshes, [_ns("apps"), _ns("b-ns", team="b")], [])
    e = explain(_pod(INJECT), "apps", snap)
    assert e.mesh == "new" and "mesh_conflict" in _codes(e) and e.state == "would-not-inject"
    shadow = explain(_pod(INJECT), "b-ns", snap)
    assert shadow.mesh == "old" and "mesh_shadowed" in _codes(shadow)


def test_host_network_pods_are_injected_and_the_note_says_policies_do_not_apply():
    e = explain(_pod(INJECT, hostNetwork=True), "locked", SNAP)
    assert e.state == "would-inject" and e.transport == "udp"
    assert any(c.reason == "host_network" for c in e.checks)


def test_webhook_path_problems_each_fail_with_their_code():
    pod = _pod(INJECT)
    assert "webhook_missing" in _codes(explain(pod, "apps", SNAP, _facts(mwc=None)))
    assert "ca_bundle_mismatch" in _codes(explain(pod, "apps", SNAP, _facts(secret=b"other")))
    assert "certificate_missing" in _codes(explain(pod, "apps", SNAP, _facts(secret=None)))
    down = explain(pod, "apps", SNAP, _facts(ready=(False, "connection refused")))
    assert "injector_unreachable" in _codes(down) and down.state == "would-not-inject"
    assert any("failurePolicy" in c.message for c in down.checks if c.reason == "injector_unreachable")
    # a configuration whose selector no longer covers the namespace (e.g. edited by hand)
    stale = _facts(namespaceSelector={"matchLabels": {"x": "y"}})
    assert "selector_mismatch" in _codes(explain(pod, "apps", SNAP, stale))


def test_running_pods_injected_current_outdated_or_without_the_daemon():
    current = explain(_injected(_pod(INJECT)), "apps", SNAP, _facts(), live=True)
    assert current.state == "injected" and current.transport == "udp" and not _codes(current)
    old = explain(_injected(_pod(INJECT), image="registry.invalid/pilot-daemon:1"), "apps", SNAP, _facts(), live=True)
    assert old.state == "outdated" and "outdated" in _codes(old) and "pilot-daemon:1" in old.headline() + str(old.checks)
    pinned = _injected(_pod({**INJECT, "pilot.io/image": "registry.invalid/pilot-daemon:1"}),
                       image="registry.invalid/pilot-daemon:1")
    assert explain(pinned, "apps", SNAP, _facts(), live=True).state == "injected"
    bare = explain(_pod(INJECT), "apps", SNAP, _facts(), live=True)
    assert bare.state == "not-injected" and "uninjected" in _codes(bare)


def test_a_running_auto_pod_whose_policies_changed_is_flagged():
    pod = _injected(_pod(INJECT), policy="auto")
    e = explain(pod, "locked", SNAP, live=True)
    assert "transport_stale" in _codes(e) and e.verdict["transport"] == "compat"


def test_json_form_carries_state_checks_and_verdict():
    d = explain(_pod(INJECT), "locked", SNAP).to_dict()
    assert d["state"] == "would-inject" and d["injected"] and d["transport"] == "compat"
    assert json.loads(json.dumps(d))["checks"][0]["topic"] == "mesh"
