"""redecide(): which injected pods need new transport annotations after policies change (pure)."""
import base64
import json

from test_inject_golden import apply_patch

from pilotmesh_operator.injector.admission import review
from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.redecide import MAX_REASON, event_messages, redecide, same_reason

INJECT = {"pilot.io/inject": "true"}
OWNER = {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "rs-uid", "controller": True}


def _mesh(name="default", **spec):
    return {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
            "metadata": {"name": name, "creationTimestamp": "2026-01-01T00:00:00Z"}, "spec": spec}


def _ns(name, **labels):
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _netpol(ns, name, egress, selector=None):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": ns},
            "spec": {"podSelector": selector or {}, "policyTypes": ["Egress"], "egress": egress}}


ONLY_443 = [{"ports": [{"protocol": "TCP", "port": 443}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]
UDP_ALL = [{"ports": [{"protocol": "UDP"}]}]
NAMESPACES = [_ns("apps"), _ns("locked"), _ns("kube-system")]
LOCKED = [_netpol("locked", "only-443", ONLY_443)]


def _snap(policies, meshes=None):
    return Snapshot.build(meshes or [_mesh()], NAMESPACES, policies, cluster_version=(1, 36))


def _admitted(snapshot, ns="locked", name="web-1-abcde", annotations=INJECT, owner=OWNER, **spec):
    """A pod as the injector admitted it under `snapshot`, then named by the apiserver."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"generateName": "web-1-", "annotations": dict(annotations), "labels": {"app": "web"},
                        "ownerReferences": [owner] if owner else []},
           "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}], **spec}}
    body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "namespace": ns, "operation": "CREATE",
        "object": pod}}).encode()
    resp, outcome = review(body, snapshot)
    assert outcome.result == "injected", outcome
    out = apply_patch(pod, json.loads(base64.b64decode(resp["response"]["patch"])))
    out["metadata"].update(name=name, namespace=ns, uid=f"uid-{name}")
    out["status"] = {"phase": "Running", "podIPs": [{"ip": "10.1.2.3"}]}
    return out


def test_pods_admitted_under_the_same_policies_need_no_change():
    snap = _snap(LOCKED)
    pods = [_admitted(snap), _admitted(snap, ns="apps", name="web-1-fghij"),
            _admitted(snap, name="host", hostNetwork=True)]
    assert [p["metadata"]["annotations"]["pilot.io/transport"] for p in pods] == ["compat", "udp", "udp"]
    assert redecide(pods, snap) == []


def test_a_udp_allow_flips_compat_to_udp_naming_the_new_policy():
    pod = _admitted(_snap(LOCKED))
    [change] = redecide([pod], _snap(LOCKED + [_netpol("locked", "allow-udp", UDP_ALL)]))
    assert (change.namespace, change.name, change.uid) == ("locked", "web-1-abcde", "uid-web-1-abcde")
    assert (change.old_transport, change.new_transport, change.transport_changed) == ("compat", "udp", True)
    assert change.new_reason.startswith("udp-ok (transport udp, confidence high)")
    assert "NetworkPolicy locked/allow-udp" in change.new_reason and "locked/web-1-abcde" in change.new_reason
    assert change.patch() == {"metadata": {"annotations": {"pilot.io/transport": "udp",
                                                           "pilot.io/transport-reason": change.new_reason}}}
    assert change.subject()["kind"] == "ReplicaSet" and change.subject()["uid"] == "rs-uid"
    [(subject, ns, message)] = event_messages([change])
    assert (subject, ns) == (change.subject(), "locked")
    assert message.startswith("transport compat -> udp for pod web-1-abcde: udp-ok") and "allow-udp" in message


def test_removing_the_allow_flips_back_and_applied_changes_settle():
    udp_snap = _snap(LOCKED + [_netpol("locked", "allow-udp", UDP_ALL)])
    pod = _admitted(udp_snap)
    assert pod["metadata"]["annotations"]["pilot.io/transport"] == "udp"
    [change] = redecide([pod], _snap(LOCKED))
    assert (change.old_transport, change.new_transport) == ("udp", "compat")
    assert "locked/only-443" in change.new_reason
    patched = apply_patch(pod, [{"op": "add", "path": "/metadata/annotations/pilot.io~1transport", "value": "compat"},
                                {"op": "add", "path": "/metadata/annotations/pilot.io~1transport-reason",
                                 "value": change.new_reason}])
    assert redecide([patched], _snap(LOCKED)) == []


def test_a_new_policy_with_the_same_outcome_changes_only_the_reason():
    pod = _admitted(_snap(LOCKED))
    renamed = [_netpol("locked", "egress-443", ONLY_443)]
    [change] = redecide([pod], _snap(renamed))
    assert not change.transport_changed and change.new_transport == "compat"
    assert "locked/egress-443" in change.new_reason and "only-443" not in change.new_reason


def test_pods_whose_transport_is_not_auto_are_left_alone():
    snap = _snap(LOCKED)
    pinned = _admitted(snap, annotations={**INJECT, "pilot.io/transport": "compat"})
    mesh_udp = _snap(LOCKED, [_mesh(transport="udp")])
    by_mesh = _admitted(mesh_udp)
    assert json.loads(pinned["metadata"]["annotations"]["pilot.io/status"])["transportPolicy"] == "compat"
    opened = LOCKED + [_netpol("locked", "allow-udp", UDP_ALL)]
    assert redecide([pinned], _snap(opened)) == []
    assert redecide([by_mesh], _snap(opened, [_mesh(transport="udp")])) == []


def test_daemonset_finished_deleting_unmeshed_and_plain_pods_are_skipped():
    snap = _snap(LOCKED)
    ds = _admitted(_snap(LOCKED, [_mesh(mode="daemonset")]))
    done = _admitted(snap)
    done["status"]["phase"] = "Succeeded"
    going = _admitted(snap)
    going["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    broken = _admitted(snap)
    broken["metadata"]["annotations"]["pilot.io/status"] = "{not json"
    plain = {"metadata": {"name": "p", "namespace": "locked"}, "spec": {"containers": []}}
    opened = LOCKED + [_netpol("locked", "allow-udp", UDP_ALL)]
    assert redecide([ds, done, going, broken, plain, "junk"], _snap(opened)) == []
    unmeshed = _snap(opened, [_mesh(namespaceSelector={"matchLabels": {"team": "x"}})])
    assert redecide([_admitted(snap)], unmeshed) == []


def test_cluster_scoped_policies_reach_every_namespace_and_namespaced_ones_only_their_own():
    snap = _snap([])
    pods = [_admitted(snap, ns="apps", name="a"), _admitted(snap, ns="locked", name="b")]
    anp = {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
           "metadata": {"name": "no-udp"}, "spec": {"priority": 10, "subject": {"namespaces": {}}, "egress": [
               {"name": "deny-udp", "action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}],
                "ports": [{"portRange": {"protocol": "UDP", "start": 1, "end": 65535}}]}]}}
    changes = redecide(pods, _snap([anp]))
    assert sorted((c.namespace, c.new_transport) for c in changes) == [("apps", "compat"), ("locked", "compat")]
    assert all("AdminNetworkPolicy no-udp" in c.new_reason for c in changes)
    only_locked = redecide(pods, _snap(LOCKED))
    assert [(c.namespace, c.new_transport) for c in only_locked] == [("locked", "compat")]


def test_a_bare_pod_gets_its_event_on_itself():
    pod = _admitted(_snap(LOCKED), owner=None)
    [change] = redecide([pod], _snap([]))
    assert change.subject() == {"apiVersion": "v1", "kind": "Pod", "name": "web-1-abcde", "uid": "uid-web-1-abcde"}


def test_namespace_labels_that_stop_a_selector_matching_change_the_verdict():
    snap = _snap([_netpol("locked", "only-443", ONLY_443)])
    pod = _admitted(snap)
    by_label = {"apiVersion": "crd.projectcalico.org/v1", "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "open-udp"}, "spec": {
                    "order": 1, "namespaceSelector": "zone == 'open'", "types": ["Egress"],
                    "egress": [{"action": "Allow", "protocol": "UDP"}]}}
    closed = Snapshot.build([_mesh()], NAMESPACES, LOCKED + [by_label], cluster_version=(1, 36))
    assert redecide([pod], closed) == []
    opened = Snapshot.build([_mesh()], [_ns("locked", zone="open"), _ns("kube-system")], LOCKED + [by_label],
                            cluster_version=(1, 36))
    [change] = redecide([pod], opened)
    assert change.new_transport == "udp" and "open-udp" in change.new_reason


def test_same_reason_ignores_the_pod_name_and_the_cap():
    pod = {"metadata": {"namespace": "ns", "name": "web-abc12", "generateName": "web-"}}
    assert same_reason("Egress of pod ns/web- is restricted by X.", "Egress of pod ns/web-abc12 is restricted by X.", pod)
    assert not same_reason("Egress of pod ns/web- is restricted by X.", "Egress of pod ns/web-abc12 by Y.", pod)
    assert not same_reason(None, "anything", pod)
    long_old = ("a" * 20 + " ns/web- " + "b" * 600)[:MAX_REASON - 3] + "..."
    long_new = ("a" * 20 + " ns/web-abc12 " + "b" * 600)[:MAX_REASON - 3] + "..."
    assert same_reason(long_old, long_new, pod)
    assert not same_reason(long_old, long_new.replace("b", "c"), pod)


def test_one_event_per_owner_and_direction_and_none_for_reason_only_changes():
    snap = _snap(LOCKED)
    other = {**OWNER, "name": "api-1", "uid": "rs-2"}
    pods = [_admitted(snap, name=f"web-1-{i}") for i in range(7)] + [_admitted(snap, name="api-1-x", owner=other)]
    changes = redecide(pods, _snap([]))
    assert len(changes) == 8 and all(c.new_transport == "udp" for c in changes)
    events = sorted(event_messages(changes), key=lambda e: e[0]["name"])
    assert [e[0]["name"] for e in events] == ["api-1", "web-1"]
    assert events[0][2].startswith("transport compat -> udp for pod api-1-x: ")
    assert events[1][2].startswith("transport compat -> udp for 7 pods (web-1-0, web-1-1, web-1-2, web-1-3, web-1-4, ...): ")
    assert event_messages(redecide([_admitted(snap)], _snap([_netpol("locked", "egress-443", ONLY_443)]))) == []


def test_replicas_share_one_verdict_yet_each_reason_names_its_own_pod():
    from pilotmesh_operator.redecide import analyzer_view, reason_for
    from pilotmesh_operator.render.netpol import Settings, analyze

    snap = _snap(LOCKED)
    replicas = [_admitted(snap, name=f"web-1-{i}") for i in range(3)]
    replicas[2]["status"]["podIPs"] = [{"ip": "fd00::9"}]          # another family: another view
    assert analyzer_view(replicas[0]) == analyzer_view(replicas[1]) != analyzer_view(replicas[2])
    opened = _snap(LOCKED + [_netpol("locked", "allow-udp", UDP_ALL)])
    changes = redecide(replicas, opened)
    settings = Settings.from_dict(opened.analyzer_settings(opened.mesh_for("locked").settings))
    for pod, change in zip(replicas, changes):
        direct = analyze(pod, opened.namespaces.values(), opened.policies, settings)
        assert change.verdict == direct
        assert change.new_reason == reason_for(direct, pod)
        assert f"locked/{pod['metadata']['name']}" in change.new_reason and "\x00" not in change.new_reason
