"""Would the apiserver call the operator's own webhooks for a pod? Evaluated on the configuration desired.py writes."""
from pilotmesh_operator import desired
from pilotmesh_operator.mesh import MeshSettings
from pilotmesh_operator.webhookmatch import webhook_match

SETTINGS = desired.OperatorSettings(namespace="pilot-system", webhook_url="https://127.0.0.1:8443/inject")


def _hooks(**spec):
    return desired.webhook_configuration("m", MeshSettings.from_spec(spec), b"ca", SETTINGS)["webhooks"]


def _pod(annotations=None, labels=None):
    return {"metadata": {"namespace": "apps", "annotations": annotations or {}, "labels": labels or {}}}


def _called(hooks, pod, ns_labels):
    return [m.name for m in (webhook_match(w, pod, ns_labels) for w in hooks) if m.called]


def test_an_annotated_pod_reaches_the_per_pod_webhook_only():
    hooks = _hooks()
    ns = {"kubernetes.io/metadata.name": "apps"}
    assert _called(hooks, _pod({"pilot.io/inject": "true"}), ns) == ["pods.inject.pilot.io"]
    plain = [webhook_match(w, _pod(), ns) for w in hooks]
    assert not any(m.called for m in plain)
    assert "matchCondition opted-in is false" in plain[0].reason
    assert "namespaceSelector does not select" in plain[1].reason


def test_a_labelled_namespace_sends_every_pod_to_the_namespace_webhook():
    ns = {"kubernetes.io/metadata.name": "apps", "pilot.io/inject": "true"}
    assert _called(_hooks(), _pod(), ns) == ["namespaces.inject.pilot.io"]


def test_system_namespaces_and_the_meshs_own_selector_keep_pods_away():
    hooks = _hooks(namespaceSelector={"matchLabels": {"team": "a"}})
    opted = _pod({"pilot.io/inject": "true"})
    assert _called(hooks, opted, {"kubernetes.io/metadata.name": "apps", "team": "a"}) == ["pods.inject.pilot.io"]
    assert _called(hooks, opted, {"kubernetes.io/metadata.name": "apps", "team": "b"}) == []
    assert _called(hooks, opted, {"kubernetes.io/metadata.name": "kube-system", "team": "a"}) == []
    assert _called(hooks, opted, {"kubernetes.io/metadata.name": "pilot-system", "team": "a"}) == []


def test_rules_object_selector_and_unknown_cel_are_reported():
    hook = {**_hooks()[0], "objectSelector": {"matchLabels": {"tier": "web"}}}
    ns = {"kubernetes.io/metadata.name": "apps"}
    assert "objectSelector" in webhook_match(hook, _pod({"pilot.io/inject": "true"}), ns).reason
    assert "rules do not cover" in webhook_match({**hook, "rules": []}, _pod(), ns).reason
    odd = {**_hooks()[0], "matchConditions": [{"name": "x", "expression": "object.metadata.name.startsWith('a')"}]}
    m = webhook_match(odd, _pod({"pilot.io/inject": "true"}), ns)
    assert m.called is None and "apiserver decides" in m.reason
    err = {**_hooks()[0], "failurePolicy": "Ignore", "matchConditions": [{"name": "y", "expression": "object.spec.x"}]}
    m = webhook_match(err, _pod(), ns)
    assert m.called is False and "the webhook is skipped" in m.reason
