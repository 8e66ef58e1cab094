"""MeshSettings.from_spec: the CRD's defaults and validation applied offline, and the same verdicts as the apiserver."""
from __future__ import annotations

import time

import pytest

from pilot_daemon import contract
from pilotmesh_operator import __version__, openapi
from pilotmesh_operator.mesh import (CEL_TWINS, MeshSettings, MeshSpecError, crd, hostname_template_ok, image_ok,
                                     parse_kube_version, spec_schema)

# (spec, a phrase the error must contain): each is rejected by the Python twin and, in the kube test, the apiserver.
BAD_SPECS = [
    ({"transport": "tcp"}, "spec.transport: 'tcp' is not one of auto, udp, compat"),
    ({"mode": "node"}, "spec.mode"),
    ({"trasport": "udp"}, "spec.trasport: unknown field"),
    ({"daemon": {"image": "pilot-daemon"}}, "tag or a digest"),
    ({"daemon": {"image": "registry:5000/pilot-daemon"}}, "tag or a digest"),
    ({"daemon": {"udpPort": 70000}}, "above the maximum 65535"),
    ({"daemon": {"udpPort": "4000"}}, "must be a integer"),
    ({"daemon": {"nativeSidecar": "yes"}}, "spec.daemon.nativeSidecar"),
    ({"daemon": {"hostnameTemplate": "{{pod}}.{{cluster}}"}}, "spec.daemon.hostnameTemplate"),
    ({"daemon": {"resources": {"limits": {"cpu": "lots"}}}}, "quantity"),
    ({"rendezvous": {"inCluster": True, "registry": "r.example:9000"}}, "remove registry, beacon and compatURL"),
    ({"rendezvous": {"registry": "r.example"}}, "HOST:PORT"),
    ({"rendezvous": {"compatURL": "https://b.example/v1/compat"}}, "spec.rendezvous.compatURL"),
    ({"proxy": {"noProxy": ".svc"}}, "noProxy needs httpsProxy or secretRef"),
    ({"proxy": {"secretRef": {"key": "url"}}}, "spec.proxy.secretRef.name: required"),
    ({"webhook": {"failurePolicy": "Retry"}}, "spec.webhook.failurePolicy"),
    ({"webhook": {"timeoutSeconds": 31}}, "above the maximum 30"),
    ({"watchdog": {"restart": "yes"}}, "must be a boolean"),
    ({"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "In"}]}}, "In and NotIn need values"),
]


def test_empty_spec_is_a_complete_mesh() -> None:
    mesh = MeshSettings.from_spec({})
    assert (mesh.mode, mesh.transport, mesh.native_sidecar) == ("sidecar", "auto", "auto")
    assert mesh.udp_port == contract.UDP_PEER_PORT
    assert set(mesh.resources) == {"requests", "limits"}
    assert set(mesh.resources["requests"]) == set(mesh.resources["limits"]) == {"cpu", "memory"}
    assert mesh.registry is mesh.beacon is mesh.compat_url is None   # the daemon's built-in public service
    assert mesh.failure_policy == "Fail" and 1 <= mesh.timeout_seconds <= 10 and mesh.watchdog_restart is False
    assert image_ok(mesh.image) and hostname_template_ok(mesh.hostname_template)


def test_default_image_tag_is_this_release() -> None:
    assert MeshSettings.from_spec({}).image.endswith(f":{__version__}"), \
        "bump spec.daemon.image's default in the CRD with the package version"


def test_partial_and_null_fields_are_defaulted_like_the_apiserver() -> None:
    full = MeshSettings.from_spec({}).spec
    mesh = MeshSettings.from_spec({"daemon": {"udpPort": 5000}, "proxy": None, "webhook": {"timeoutSeconds": None}})
    assert mesh.udp_port == 5000 and mesh.image == full["daemon"]["image"]
    assert mesh.spec["proxy"] == full["proxy"] and mesh.timeout_seconds == full["webhook"]["timeoutSeconds"]
    # a map given by the user replaces the default map as a whole (the apiserver does not merge into it)
    assert MeshSettings.from_spec({"daemon": {"resources": {"limits": {"memory": "1Gi"}}}}).resources == {
        "requests": full["daemon"]["resources"]["requests"], "limits": {"memory": "1Gi"}}


def test_defaulting_does_not_touch_the_input() -> None:
    spec = {"daemon": {"udpPort": 5000}}
    MeshSettings.from_spec(spec)
    assert spec == {"daemon": {"udpPort": 5000}}


@pytest.mark.parametrize(("spec", "phrase"), BAD_SPECS, ids=[p for _, p in BAD_SPECS])
def test_bad_spec_is_rejected_with_a_clear_message(spec: dict, phrase: str) -> None:
    with pytest.raises(MeshSpecError) as exc:
        MeshSettings.from_spec(spec)
    assert phrase in str(exc.value)
    assert isinstance(exc.value, ValueError) and exc.value.errors


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(MeshSpecError) as exc:
        MeshSettings.from_spec({"transport": "tcp", "daemon": {"udpPort": 0}, "bogus": 1})
    assert len(exc.value.errors) == 3


def test_every_cel_rule_has_a_python_twin() -> None:
    assert openapi.cel_rules(spec_schema()) == set(CEL_TWINS)


def test_in_cluster_rendezvous_lives_in_the_operator_namespace() -> None:
    mesh = MeshSettings.from_spec({"rendezvous": {"inCluster": True}}, operator_namespace="mesh-ops")
    assert mesh.registry == f"pilot-rendezvous.mesh-ops.svc:{contract.REGISTRY_PORT}"
    assert mesh.beacon == f"pilot-rendezvous.mesh-ops.svc:{contract.BEACON_PORT}"
    assert mesh.compat_url.startswith("wss://pilot-rendezvous.mesh-ops.svc")
    assert "mesh-ops" in mesh.excluded_namespaces and "kube-system" in mesh.excluded_namespaces


def test_proxy_secret_and_from_object() -> None:
    mesh = MeshSettings.from_object({"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
                                     "spec": {"proxy": {"secretRef": {"name": "corp-proxy"}}}})
    assert mesh.proxy_secret == ("corp-proxy", "url")
    with pytest.raises(MeshSpecError, match="expected PilotMesh"):
        MeshSettings.from_object({"kind": "Deployment", "spec": {}})


@pytest.mark.parametrize(("text", "want"), [("v1.30.2", (1, 30)), ("1.29", (1, 29)), ("1.28+", (1, 28)),
                                            ("v1.33.0-gke.100", (1, 33))])
def test_parse_kube_version(text: str, want: tuple[int, int]) -> None:
    assert parse_kube_version(text) == want


def test_native_sidecar_support_follows_the_cluster_version() -> None:
    assert not MeshSettings.from_spec({}, cluster_version=(1, 28)).native_sidecars_supported
    assert MeshSettings.from_spec({}, cluster_version=(1, 29)).native_sidecars_supported
    assert MeshSettings.from_spec({}).native_sidecars_supported   # unknown (offline): assume a maintained release
    with pytest.raises(ValueError, match="MAJOR.MINOR"):
        parse_kube_version("latest")


def test_crd_shape() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == "pilotmeshes.pilot.io" and doc["spec"]["scope"] == "Cluster"
    version = doc["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "READY", "MODE", "INJECTED", "OUTDATED", "UDP", "COMPAT", "AGE"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for field in ("conditions", "observedGeneration", "injectedPods", "outdatedPods", "udpPods", "compatPods"):
        assert field in status


# --- tier-1: the real apiserver defaults and rejects exactly like the Python twin --------------------------------

@pytest.mark.kube
def test_apiserver_agrees_with_from_spec(kube) -> None:
    import kubernetes

    api = kube.client()
    ext = kubernetes.client.ApiextensionsV1Api(api)
    try:
        ext.create_custom_resource_definition(crd())
    except kubernetes.client.ApiException as exc:
        if exc.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conds = ext.read_custom_resource_definition("pilotmeshes.pilot.io").status.conditions or []
        if any(c.type == "Established" and c.status == "True" for c in conds):
            break
        time.sleep(0.2)
    objs = kubernetes.client.CustomObjectsApi(api)
    args = ("pilot.io", "v1alpha1", "pilotmeshes")
    created = objs.create_cluster_custom_object(*args, {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
                                                        "metadata": {"name": "defaults-check"}, "spec": {}})
    try:
        assert created["spec"] == MeshSettings.from_spec({}).spec
        for spec, _ in BAD_SPECS:   # Strict: unknown fields fail as with kubectl's default, not just pruned
            with pytest.raises(kubernetes.client.ApiException) as exc:
                objs.create_cluster_custom_object(*args, {"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh",
                                                          "metadata": {"name": "bad"}, "spec": spec},
                                                  field_validation="Strict")
            assert exc.value.status in (400, 422), (spec, exc.value.body)   # 400: strict decoding
    finally:
        objs.delete_cluster_custom_object(*args, "defaults-check")
