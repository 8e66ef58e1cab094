"""What the operator creates, as pure functions: injector objects and the webhook configuration."""
import pytest

from pilotmesh_operator import desired
from pilotmesh_operator.mesh import MeshSettings


def _kinds(objs):
    return [o["kind"] for o in objs]


def test_injector_defaults_spread_replicas_and_protect_them_with_a_pdb():
    objs = desired.injector_objects(desired.OperatorSettings())
    assert _kinds(objs) == ["ServiceAccount", "Deployment", "Service", "PodDisruptionBudget"]
    spec = objs[1]["spec"]["template"]["spec"]
    assert "preferredDuringSchedulingIgnoredDuringExecution" in spec["affinity"]["podAntiAffinity"]
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}


@pytest.mark.parametrize("mode,key", [("hard", "requiredDuringSchedulingIgnoredDuringExecution"), ("none", None)])
def test_anti_affinity_modes(mode, key):
    spec = desired.injector_objects(desired.OperatorSettings(injector_anti_affinity=mode))[1]["spec"]["template"]["spec"]
    assert (key in spec["affinity"]["podAntiAffinity"]) if key else "affinity" not in spec


def test_resources_and_pdb_follow_the_settings():
    res = {"requests": {"cpu": "10m"}, "limits": {"memory": "64Mi"}}
    objs = desired.injector_objects(desired.OperatorSettings(injector_resources=res, injector_pdb=False))
    assert _kinds(objs) == ["ServiceAccount", "Deployment", "Service"]
    assert objs[1]["spec"]["template"]["spec"]["containers"][0]["resources"] == res
    assert "PodDisruptionBudget" not in _kinds(desired.injector_objects(desired.OperatorSettings(injector_replicas=1)))


def test_webhook_configuration_filters_on_the_server_side():
    mesh = MeshSettings.from_spec({"namespaceSelector": {"matchLabels": {"team": "a"}}})
    mwc = desired.webhook_configuration("m", mesh, b"CA", desired.OperatorSettings())
    pods, namespaces = mwc["webhooks"]
    assert pods["matchConditions"][0]["name"] == "opted-in" and "matchConditions" not in namespaces
    for hook, op in ((pods, "NotIn"), (namespaces, "In")):
        sel = hook["namespaceSelector"]
        assert sel["matchLabels"] == {"team": "a"}
        exprs = {e["key"]: e for e in sel["matchExpressions"]}
        assert "kube-system" in exprs["kubernetes.io/metadata.name"]["values"]
        assert "pilot-system" in exprs["kubernetes.io/metadata.name"]["values"]
        assert exprs["pilot.io/inject"]["operator"] == op
        assert hook["clientConfig"]["service"]["name"] == "pilotmesh-injector"
        assert hook["sideEffects"] == "NoneOnDryRun" and hook["reinvocationPolicy"] == "IfNeeded"


def test_url_mode_puts_the_url_host_in_the_certificate_names():
    settings = desired.OperatorSettings(webhook_url="https://127.0.0.1:9443/inject")
    assert settings.cert_names[0] == "127.0.0.1"
    mwc = desired.webhook_configuration("m", MeshSettings.from_spec({}), b"CA", settings)
    assert mwc["webhooks"][0]["clientConfig"]["url"] == "https://127.0.0.1:9443/inject"
