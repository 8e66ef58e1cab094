"""Tier 1: the operator and the injector, as real processes, against the real apiserver.

A PilotMesh goes Ready; annotated workloads' pods come out injected, others don't; a Job's pod gets a
native sidecar; a default-deny namespace gets compat; deleting the mesh removes the webhook first;
restarting the operator changes nothing.
"""
import json
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane.local_pilotmesh import OPERATOR_NS, ensure_namespace

pytestmark = pytest.mark.kube
GROUP, VERSION, PLURAL = "pilot.io", "v1alpha1", "pilotmeshes"


def _mesh(api, name):
    return client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)


def _condition(mesh, ctype):
    return next((c for c in (mesh.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)



def _workload(kind, name, annotations=None):
    labels = {"app": name}
    template = {"metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
    if kind == "Job":
        template["spec"]["restartPolicy"] = "Never"
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": {"template": template}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": template}}


def _pods(api, ns, selector, count=1):
    return lambda: (lambda pods: len(pods) >= count and pods)(
        client.CoreV1Api(api).list_namespaced_pod(ns, label_selector=selector).items)


@pytest.fixture(scope="module")
def mesh(pilotmesh):
    api = pilotmesh.api
    custom = client.CustomObjectsApi(api)
    name = f"mesh-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": name},
        "spec": {"daemon": {"image": "registry.invalid/pilot-daemon:test"}}})
    pilotmesh.wait("PilotMesh Ready", lambda: (_condition(_mesh(api, name), "Ready") or {}).get("status") == "True")
    time.sleep(1)  # the apiserver loads new webhook configurations asynchronously
    yield name
    try:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException:
        pass


def test_pilotmesh_is_ready_with_all_conditions_and_a_webhook_configuration(pilotmesh, mesh):
    obj = _mesh(pilotmesh.api, mesh)
    for ctype in ("Ready", "CertificateReady", "WebhookReady", "InjectorReady"):
        assert _condition(obj, ctype)["status"] == "True", (ctype, obj["status"])
    assert _condition(obj, "Conflict")["status"] == "False"
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert obj["spec"]["transport"] == "auto" and obj["spec"]["mode"] == "sidecar", "CRD defaults applied"
    mwc = client.AdmissionregistrationV1Api(pilotmesh.api).read_mutating_webhook_configuration(f"pilotmesh-{mesh}")
    assert [w.name for w in mwc.webhooks] == ["pods.inject.pilot.io", "namespaces.inject.pilot.io"]
    assert all(w.client_config.url == pilotmesh.webhook_url and w.client_config.ca_bundle for w in mwc.webhooks)
    assert mwc.webhooks[0].reinvocation_policy == "IfNeeded"


def test_annotated_deployment_pods_are_injected_and_others_are_not(pilotmesh, mesh):
    api = pilotmesh.api
    ns = ensure_namespace(api, f"apps-{uuid.uuid4().hex[:6]}")
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _workload("Deployment", "meshed", {"pilot.io/inject": "true"}))
    apps.create_namespaced_deployment(ns, _workload("Deployment", "plain"))
    pod = pilotmesh.wait("meshed pod", _pods(api, ns, "app=meshed"))[0]
    names = [c.name for c in pod.spec.init_containers or []]
    assert names == ["pilot"], names
    daemon = pod.spec.init_containers[0]
    assert daemon.restart_policy == "Always" and "-socket" in daemon.args and "/shared/pilot.sock" in daemon.args
    app = pod.spec.containers[0]
    assert any(e.name == "PILOT_SOCKET" and e.value == "/shared/pilot.sock" for e in app.env)
    assert any(m.mount_path == "/shared" for m in app.volume_mounts)
    assert pod.metadata.annotations["pilot.io/transport"] == "udp"
    assert json.loads(pod.metadata.annotations["pilot.io/status"])["image"] == "registry.invalid/pilot-daemon:test"
    plain = pilotmesh.wait("plain pod", _pods(api, ns, "app=plain"))[0]
    assert not plain.spec.init_containers and "pilot.io/status" not in (plain.metadata.annotations or {})
    pilotmesh.wait("meshed pod Running", lambda: client.CoreV1Api(api).read_namespaced_pod(
        pod.metadata.name, ns).status.phase == "Running")


def test_job_pod_gets_a_native_sidecar(pilotmesh, mesh):
    api = pilotmesh.api
    ns = ensure_namespace(api, f"jobs-{uuid.uuid4().hex[:6]}")
    client.BatchV1Api(api).create_namespaced_job(ns, _workload("Job", "batch", {"pilot.io/inject": "true"}))
    pod = pilotmesh.wait("job pod", _pods(api, ns, "app=batch"))[0]
    assert [(c.name, c.restart_policy) for c in pod.spec.init_containers] == [("pilot", "Always")]


def test_default_deny_namespace_gets_compat_with_the_reason(pilotmesh, mesh):
    api = pilotmesh.api
    ns = ensure_namespace(api, f"locked-{uuid.uuid4().hex[:6]}", labels={"pilot.io/inject": "true"})
    client.NetworkingV1Api(api).create_namespaced_network_policy(ns, {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "egress-443-only"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [
            {"ports": [{"protocol": "TCP", "port": 443}]},
            {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}})
    time.sleep(1.5)  # the injector's policy cache follows a watch
    client.AppsV1Api(api).create_namespaced_deployment(ns, _workload("Deployment", "svc"))  # namespace-level opt-in
    pod = pilotmesh.wait("locked pod", _pods(api, ns, "app=svc"))[0]
    assert pod.metadata.annotations["pilot.io/transport"] == "compat"
    assert f"{ns}/egress-443-only" in pod.metadata.annotations["pilot.io/transport-reason"]
    daemon = pod.spec.init_containers[0]
    assert daemon.args[daemon.args.index("-transport") + 1] == "compat"


def test_invalid_annotation_is_admitted_unchanged_with_a_warning(pilotmesh, mesh):
    api = pilotmesh.api
    ns = ensure_namespace(api, f"bad-{uuid.uuid4().hex[:6]}")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "odd", "annotations": {
        "pilot.io/inject": "yes"}}, "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}
    created, status, headers = client.CoreV1Api(api).create_namespaced_pod_with_http_info(ns, pod)
    assert not created.spec.init_containers
    assert "pilot.io/inject" in headers.get("Warning", ""), headers


def test_restarting_the_operator_changes_nothing(pilotmesh, mesh):
    api = pilotmesh.api
    admission = client.AdmissionregistrationV1Api(api)
    before = admission.read_mutating_webhook_configuration(f"pilotmesh-{mesh}")
    secret_before = client.CoreV1Api(api).read_namespaced_secret("pilotmesh-injector-tls", OPERATOR_NS)
    pilotmesh.stop_operator()
    pilotmesh.start_operator()
    time.sleep(4)  # resume handlers run at start
    after = admission.read_mutating_webhook_configuration(f"pilotmesh-{mesh}")
    assert after.metadata.resource_version == before.metadata.resource_version
    secret_after = client.CoreV1Api(api).read_namespaced_secret("pilotmesh-injector-tls", OPERATOR_NS)
    assert secret_after.metadata.resource_version == secret_before.metadata.resource_version
    assert (_condition(_mesh(api, mesh), "Ready") or {}).get("status") == "True"


def test_a_second_overlapping_mesh_reports_conflict_and_injects_nothing(pilotmesh, mesh):
    api = pilotmesh.api
    custom = client.CustomObjectsApi(api)
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": "zz-newer"}, "spec": {}})
    try:
        obj = pilotmesh.wait("Conflict condition", lambda: (lambda m: (_condition(m, "Conflict") or {}).get(
            "status") == "True" and m)(_mesh(api, "zz-newer")))
        assert mesh in _condition(obj, "Conflict")["message"]
        assert _condition(obj, "Ready")["status"] == "False"
        with pytest.raises(ApiException) as err:
            client.AdmissionregistrationV1Api(api).read_mutating_webhook_configuration("pilotmesh-zz-newer")
        assert err.value.status == 404
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, "zz-newer")


def test_deleting_the_mesh_removes_its_webhook_configuration(pilotmesh, mesh):
    api = pilotmesh.api
    client.CustomObjectsApi(api).delete_cluster_custom_object(GROUP, VERSION, PLURAL, mesh)
    admission = client.AdmissionregistrationV1Api(api)

    def gone():
        try:
            admission.read_mutating_webhook_configuration(f"pilotmesh-{mesh}")
            return False
        except ApiException as exc:
            return exc.status == 404
    pilotmesh.wait("webhook configuration removed", gone)
    pilotmesh.wait("PilotMesh gone (finalizer released)", lambda: not [
        m for m in client.CustomObjectsApi(api).list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
        if m["metadata"]["name"] == mesh])
