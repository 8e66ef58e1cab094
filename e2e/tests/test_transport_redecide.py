"""Tier 1: the operator re-decides an injected pod's transport when NetworkPolicies change.

A default-deny-egress namespace that allows TCP 443 and DNS gives compat; adding a UDP allow flips the
running pod's `pilot.io/transport` to udp within seconds, with a `TransportChanged` Event on its
ReplicaSet; removing the allow flips it back. Uses the mesh that selects its namespace, or creates one
that selects only this namespace (and deletes it after), so it runs in any order with other modules.
"""
import json
import time
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane.local_pilotmesh import ensure_namespace
from pilotmesh_controlplane import procs
from pilotmesh_operator.injector.snapshot import Snapshot

pytestmark = pytest.mark.kube
GROUP, VERSION, PLURAL = "pilot.io", "v1alpha1", "pilotmeshes"
LABEL = "pilotmesh-test/redecide"
FLIP_SECONDS = 10


def _wait(stack, what, check, timeout=60):
    try:
        return procs.wait_until(what, check, timeout, interval=0.1)
    except TimeoutError as exc:
        raise AssertionError(f"{exc}\n{stack.tails()}") from None


def _ready(api, name):
    mesh = client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (mesh.get("status") or {}).get("conditions") or [])


@pytest.fixture(scope="module")
def meshed_namespace(pilotmesh):
    api = pilotmesh.api
    tag = uuid.uuid4().hex[:6]
    ns = ensure_namespace(api, f"redecide-{tag}", labels={LABEL: tag})
    custom = client.CustomObjectsApi(api)
    meshes = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    ns_obj = client.CoreV1Api(api).read_namespace(ns).to_dict()
    choice = Snapshot.build(meshes, [{"metadata": ns_obj["metadata"]}], []).mesh_for(ns)
    created = None
    if choice is None:
        created = f"redecide-{tag}"
        custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": created},
            "spec": {"namespaceSelector": {"matchLabels": {LABEL: tag}},
                     "daemon": {"image": "registry.invalid/pilot-daemon:test"}}})
        _wait(pilotmesh, f"PilotMesh {created} Ready", lambda: _ready(api, created))
        time.sleep(1)  # the apiserver loads new webhook configurations asynchronously
    elif choice.settings is None or (choice.settings.mode, choice.settings.transport) != ("sidecar", "auto"):
        pytest.skip(f"PilotMesh {choice.name} selects every namespace and is not sidecar/auto")
    yield api, ns
    if created:   # gone before the next module's mesh appears, or that one would see a conflict
        try:
            custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, created)
        except ApiException:
            pass
        _wait(pilotmesh, f"PilotMesh {created} deleted", lambda: created not in [
            m["metadata"]["name"] for m in custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]], 30)
    client.CoreV1Api(api).delete_namespace(ns)


def _policy(name, egress, types=("Egress",)):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": {"podSelector": {}, "policyTypes": list(types), "egress": egress}}


def _annotations(api, ns, name):
    return client.CoreV1Api(api).read_namespaced_pod(name, ns).metadata.annotations or {}


def _events(api, ns, owner):
    return [e for e in client.CoreV1Api(api).list_namespaced_event(ns).items
            if e.reason == "TransportChanged" and e.involved_object.name == owner]


def test_policy_changes_flip_a_running_pods_transport_and_post_an_event(pilotmesh, meshed_namespace):
    api, ns = meshed_namespace
    net = client.NetworkingV1Api(api)
    net.create_namespaced_network_policy(ns, _policy("only-443-and-dns", [
        {"ports": [{"protocol": "TCP", "port": 443}]},
        {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]))
    time.sleep(1.5)  # the injector's policy cache follows a watch
    labels = {"app": "flip"}
    client.AppsV1Api(api).create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "flip"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels, "annotations": {"pilot.io/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
    pod = _wait(pilotmesh, "injected pod", lambda: (lambda items: items and items[0])(
        client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=flip").items))
    name, owner = pod.metadata.name, pod.metadata.owner_references[0].name
    assert pod.metadata.annotations["pilot.io/transport"] == "compat"
    status = pod.metadata.annotations["pilot.io/status"]
    assert json.loads(status)["transportPolicy"] == "auto"

    net.create_namespaced_network_policy(ns, _policy("allow-udp", [{"ports": [{"protocol": "UDP"}]}]))
    started = time.monotonic()
    _wait(pilotmesh, "transport udp", lambda: _annotations(api, ns, name).get("pilot.io/transport") == "udp",
          FLIP_SECONDS)
    to_udp = time.monotonic() - started
    annotations = _annotations(api, ns, name)
    assert annotations["pilot.io/transport-reason"].startswith("udp-ok (transport udp, confidence high)")
    assert f"NetworkPolicy {ns}/allow-udp" in annotations["pilot.io/transport-reason"]
    assert annotations["pilot.io/status"] == status, "the injection record is not rewritten"
    [event] = _wait(pilotmesh, "TransportChanged event", lambda: _events(api, ns, owner), FLIP_SECONDS)
    assert event.involved_object.kind == "ReplicaSet" and event.type == "Normal"
    assert event.message.startswith(f"transport compat -> udp for pod {name}: ")

    net.delete_namespaced_network_policy("allow-udp", ns)
    started = time.monotonic()
    _wait(pilotmesh, "transport compat", lambda: _annotations(api, ns, name).get("pilot.io/transport") == "compat",
          FLIP_SECONDS)
    to_compat = time.monotonic() - started
    assert f"{ns}/only-443-and-dns" in _annotations(api, ns, name)["pilot.io/transport-reason"]
    events = _wait(pilotmesh, "second TransportChanged event", lambda: (lambda e: len(e) == 2 and e)(
        _events(api, ns, owner)), FLIP_SECONDS)
    assert any(e.message.startswith(f"transport udp -> compat for pod {name}: ") for e in events)
    print(f"\nflip to udp after {to_udp:.2f}s, back to compat after {to_compat:.2f}s")
