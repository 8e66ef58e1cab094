"""The watchdog's pure decisions: which pods lack the daemon or run an old one, and which owners to restart."""
import json

from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.watchdog import RestartBudget, find, plan_restarts, restart_patch

IMAGE = "registry.invalid/pilot-daemon:2"


def _mesh(name="m", created="2026-01-01T00:00:00Z", **spec):
    return {"kind": "PilotMesh", "metadata": {"name": name, "creationTimestamp": created},
            "spec": {"daemon": {"image": IMAGE}, **spec}}


def _ns(name, **labels):
    return {"kind": "Namespace", "metadata": {"name": name, "labels": labels}}


def _pod(name, ns="apps", annotations=None, labels=None, owner="web-rs", created="2026-02-01T10:00:00Z",
         phase="Running", status=None):
    annotations = dict(annotations or {})
    if status:
        annotations["pilot.io/status"] = json.dumps({"mode": "sidecar", **status})
    return {"kind": "Pod", "metadata": {
        "name": name, "namespace": ns, "uid": f"uid-{ns}-{name}", "creationTimestamp": created,
        "annotations": annotations, "labels": dict(labels or {}),
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": owner, "uid": "rs",
                             "controller": True}] if owner else []},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}, "status": {"phase": phase}}


NOT_O = {"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["o"]}]}
SNAP = Snapshot.build([_mesh(namespaceSelector=NOT_O), _mesh("other", "2026-01-02T00:00:00Z",
                                      namespaceSelector={"matchLabels": {"team": "o"}})],
                      [_ns("apps"), _ns("auto", **{"pilot.io/inject": "true"}), _ns("o-ns", team="o")], [])
LABEL = {"pilot.io/inject": "true"}


def test_opted_in_pods_without_the_daemon_and_outdated_daemons_are_found():
    pods = [
        _pod("bare", labels=LABEL),                                            # admitted with the webhook down
        _pod("ns-level", ns="auto"),                                            # namespace opt-in
        _pod("current", labels=LABEL, status={"image": IMAGE}),
        _pod("old", labels=LABEL, status={"image": "registry.invalid/pilot-daemon:1"}),
        _pod("pinned", labels=LABEL, annotations={"pilot.io/image": "registry.invalid/pilot-daemon:1"},
             status={"image": "registry.invalid/pilot-daemon:1"}),
        _pod("opted-out", ns="auto", labels={"pilot.io/inject": "false"}),
        _pod("bad-value", labels={"pilot.io/inject": "true"}, annotations={"pilot.io/inject": "yes"}),
        _pod("done", labels=LABEL, phase="Succeeded"),
        _pod("other-mesh", ns="o-ns", labels=LABEL),
        _pod("system", ns="kube-system", labels=LABEL),
    ]
    found = find(pods + pods[:1], SNAP, "m")     # listed twice (two selectors): counted once
    assert sorted((f.kind, f.pod) for f in found) == [("outdated", "old"), ("uninjected", "bare"),
                                                      ("uninjected", "ns-level")]
    assert "pilot-daemon:1" in next(f.message for f in found if f.kind == "outdated")
    assert [f.pod for f in find(pods, SNAP, "other")] == ["other-mesh"]


def _deploy(name="web", restarted=None):
    annotations = {"kubectl.kubernetes.io/restartedAt": restarted} if restarted else {}
    return {"kind": "Deployment", "metadata": {"name": name, "namespace": "apps", "uid": f"d-{name}"},
            "spec": {"template": {"metadata": {"annotations": annotations}}}}


def test_owners_are_restarted_once_each_and_outdated_only_when_asked():
    found = find([_pod("a", labels=LABEL), _pod("b", labels=LABEL),
                  _pod("c", labels=LABEL, owner="x", status={"image": "old:1"})], SNAP, "m")
    owners = {("apps", "a"): _deploy(), ("apps", "b"): _deploy(), ("apps", "c"): _deploy("api")}
    restarts, _ = plan_restarts(found, owners, restart_outdated=False, injector_ready=True,
                                budget=RestartBudget(5), now=0)
    assert [(r.kind, r.name, r.reason, r.pods) for r in restarts] == [("Deployment", "web", "uninjected", ("a", "b"))]
    restarts, _ = plan_restarts(found, owners, restart_outdated=True, injector_ready=True,
                                budget=RestartBudget(5), now=0)
    assert [(r.name, r.reason) for r in restarts] == [("api", "outdated"), ("web", "uninjected")]


def test_no_restart_while_the_injector_is_down_or_after_a_restart_was_already_asked():
    found = find([_pod("a", labels=LABEL)], SNAP, "m")
    restarts, notes = plan_restarts(found, {("apps", "a"): _deploy()}, restart_outdated=False, injector_ready=False,
                                    budget=RestartBudget(5), now=0)
    assert restarts == [] and "not ready" in notes[0]
    later = {("apps", "a"): _deploy(restarted="2026-02-01T10:00:05Z")}         # pod created 10:00:00
    assert plan_restarts(found, later, restart_outdated=False, injector_ready=True, budget=RestartBudget(5),
                         now=0)[0] == []
    earlier = {("apps", "a"): _deploy(restarted="2026-02-01T11:59:00+02:00")}  # 09:59 UTC: before the pod
    assert len(plan_restarts(found, earlier, restart_outdated=False, injector_ready=True, budget=RestartBudget(5),
                             now=0)[0]) == 1


def test_pods_without_a_restartable_owner_are_reported_not_restarted():
    found = find([_pod("bare", labels=LABEL, owner=None)], SNAP, "m")
    restarts, notes = plan_restarts(found, {("apps", "bare"): None}, restart_outdated=False, injector_ready=True,
                                    budget=RestartBudget(5), now=0)
    assert restarts == [] and "recreate it yourself" in notes[0]


def test_the_restart_budget_is_a_sliding_minute():
    budget = RestartBudget(2)
    assert [budget.take(t) for t in (0, 1, 2, 59.9, 60, 61, 62)] == [True, True, False, False, True, True, False]
    pods = [_pod(f"p{i}", labels=LABEL, owner=f"rs{i}") for i in range(4)]
    owners = {("apps", f"p{i}"): _deploy(f"d{i}") for i in range(4)}
    restarts, notes = plan_restarts(find(pods, SNAP, "m"), owners, restart_outdated=False, injector_ready=True,
                                    budget=RestartBudget(3), now=0)
    assert len(restarts) == 3 and len(notes) == 1 and "postponed" in notes[0]


def test_the_patch_is_kubectl_rollout_restart():
    import datetime as dt
    patch = restart_patch(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone.utc))
    assert patch == {"spec": {"template": {"metadata": {"annotations": {
        "kubectl.kubernetes.io/restartedAt": "2026-03-01T12:00:00Z"}}}}}
