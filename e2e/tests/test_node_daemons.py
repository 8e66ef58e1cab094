"""Tier 1: DaemonSet mode -- one daemon per node, pods get only the node's socket directory and the env."""
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane.local_pilotmesh import OPERATOR_NS, ensure_namespace

pytestmark = pytest.mark.kube
GROUP, VERSION, PLURAL = "pilot.io", "v1alpha1", "pilotmeshes"



@pytest.fixture
def node_mesh(pilotmesh):
    custom = client.CustomObjectsApi(pilotmesh.api)
    name = f"nodes-{uuid.uuid4().hex[:6]}"
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": name},
        "spec": {"mode": "daemonset", "namespaceSelector": {"matchLabels": {"pilot-mode": name}},
                 "daemon": {"image": "registry.invalid/pilot-daemon:node"}}})
    yield name
    try:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
    except ApiException:
        pass


def test_daemonset_mode_runs_a_daemon_per_node_and_pods_get_only_the_socket(pilotmesh, node_mesh):
    api = pilotmesh.api
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    ds_name = f"pilot-node-{node_mesh}"
    nodes = len(core.list_node().items)
    ds = pilotmesh.wait("node DaemonSet fully ready", lambda: (lambda d: d.status.number_ready == nodes and d)(
        apps.read_namespaced_daemon_set(ds_name, OPERATOR_NS)), 90)
    container = ds.spec.template.spec.containers[0]
    assert container.name == "pilot" and container.image == "registry.invalid/pilot-daemon:node"
    assert container.args[container.args.index("-socket") + 1] == "/var/run/pilot/pilot.sock"
    assert ds.spec.template.metadata.annotations["pilot.io/transport"] == "udp"
    pods = core.list_namespaced_pod(OPERATOR_NS, label_selector=f"pilot.io/mesh={node_mesh}").items
    assert sorted(p.spec.node_name for p in pods) == sorted(n.metadata.name for n in core.list_node().items)

    ns = ensure_namespace(api, f"node-apps-{uuid.uuid4().hex[:6]}", labels={"pilot-mode": node_mesh})
    pod = core.create_namespaced_pod(ns, {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": {"pilot.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
    assert not pod.spec.init_containers and [c.name for c in pod.spec.containers] == ["app"]
    shared = next(v for v in pod.spec.volumes if v.name == "pilot-shared")
    assert shared.host_path.path == "/var/run/pilot"
    mount = next(m for m in pod.spec.containers[0].volume_mounts if m.mount_path == "/shared")
    assert mount.read_only
    assert any(e.name == "PILOT_SOCKET" and e.value == "/shared/pilot.sock" for e in pod.spec.containers[0].env)

    mesh = client.CustomObjectsApi(api).get_cluster_custom_object(GROUP, VERSION, PLURAL, node_mesh)
    cond = {c["type"]: c for c in mesh["status"]["conditions"]}
    assert "NodeDaemonsReady" in cond


def test_switching_back_to_sidecar_mode_removes_the_node_daemons(pilotmesh, node_mesh):
    api = pilotmesh.api
    apps = client.AppsV1Api(api)
    ds_name = f"pilot-node-{node_mesh}"
    pilotmesh.wait("node DaemonSet", lambda: apps.read_namespaced_daemon_set(ds_name, OPERATOR_NS))
    client.CustomObjectsApi(api).patch_cluster_custom_object(GROUP, VERSION, PLURAL, node_mesh,
                                                            {"spec": {"mode": "sidecar"}})

    def gone():
        try:
            apps.read_namespaced_daemon_set(ds_name, OPERATOR_NS)
            return False
        except ApiException as exc:
            return exc.status == 404
    pilotmesh.wait("node DaemonSet removed", gone)


def test_a_namespace_label_switches_a_sidecar_mesh_namespace_to_node_daemons(pilotmesh):
    api = pilotmesh.api
    custom, core, apps = client.CustomObjectsApi(api), client.CoreV1Api(api), client.AppsV1Api(api)
    name = f"mixed-{uuid.uuid4().hex[:6]}"
    ns = ensure_namespace(api, f"node-ns-{uuid.uuid4().hex[:6]}", labels={"pilot-mode": name, "pilot.io/mode": "daemonset"})
    custom.create_cluster_custom_object(GROUP, VERSION, PLURAL, {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "PilotMesh", "metadata": {"name": name},
        "spec": {"namespaceSelector": {"matchLabels": {"pilot-mode": name}}}})
    try:
        pilotmesh.wait("node DaemonSet for the labelled namespace",
                       lambda: apps.read_namespaced_daemon_set(f"pilot-node-{name}", OPERATOR_NS))
        mesh = custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name)
        assert mesh["spec"]["mode"] == "sidecar"
        pilotmesh.wait("mesh Ready", lambda: any(c["type"] == "Ready" and c["status"] == "True" for c in (
            custom.get_cluster_custom_object(GROUP, VERSION, PLURAL, name).get("status") or {}).get("conditions", [])))
        pod = core.create_namespaced_pod(ns, {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": {"pilot.io/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}})
        assert not pod.spec.init_containers and [c.name for c in pod.spec.containers] == ["app"]
        assert next(v for v in pod.spec.volumes if v.name == "pilot-shared").host_path.path == "/var/run/pilot"
    finally:
        custom.delete_cluster_custom_object(GROUP, VERSION, PLURAL, name)
