"""Tier 1: proof that the `kube` fixture is a real Kubernetes control plane.

CRDs with structural schemas, Deployments whose Pods go Running through kwok, a mutating webhook
reached by URL with a caBundle, and Helm 3 installing a chart -- all against the real apiserver.
"""
import base64
import json
import ssl
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from pilotmesh_controlplane import ControlPlane, pki, procs
from pilotmesh_controlplane.tools import K8S_VERSION

pytestmark = pytest.mark.kube
TINY_CHART = Path(__file__).parent / "charts" / "tiny"


def _wait(what, check, timeout=60):
    return procs.wait_until(what, check, timeout, interval=0.2)


def _namespace(api: client.ApiClient, labels=None) -> str:
    name = f"t-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=labels)))
    _wait("default ServiceAccount", lambda: client.CoreV1Api(api).read_namespaced_service_account("default", name))
    return name


def _deployment(name: str, replicas: int = 2) -> dict:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}


def test_apiserver_reports_the_version_it_was_built_as(kube):
    assert kube.version == f"v{K8S_VERSION}"
    info = client.VersionApi(kube.client()).get_code()
    assert (info.major, info.minor) == ("1", K8S_VERSION.split(".")[1])


def test_crd_with_structural_schema_is_established_and_rejects_invalid_objects(kube):
    api = kube.client()
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.test.pilot.io"},
        "spec": {"group": "test.pilot.io", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {
                                   "type": "object", "properties": {
                                       "replicas": {"type": "integer", "minimum": 0, "default": 1}}}}}}}]},
    }
    ext = client.ApiextensionsV1Api(api)
    ext.create_custom_resource_definition(crd)
    _wait("CRD Established", lambda: any(c.type == "Established" and c.status == "True"
                                         for c in ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []))
    custom = client.CustomObjectsApi(api)
    body = {"apiVersion": "test.pilot.io/v1", "kind": "Widget", "metadata": {"name": "ok"}, "spec": {}}
    created = custom.create_namespaced_custom_object("test.pilot.io", "v1", "default", "widgets", body)
    assert created["spec"]["replicas"] == 1, "the structural schema's default was applied"
    bad = dict(body, metadata={"name": "bad"}, spec={"replicas": -1})
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object("test.pilot.io", "v1", "default", "widgets", bad)
    assert err.value.status == 422
    assert "should be greater than or equal to 0" in err.value.body


def test_deployment_pods_reach_running_on_kwok_nodes(kube):
    api = kube.client()
    ns = _namespace(api)
    client.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("web", replicas=3))

    def running():
        pods = client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=web").items
        return len(pods) == 3 and all(p.status.phase == "Running" and p.spec.node_name for p in pods) and pods
    pods = _wait("3 Running pods", running)
    assert {p.spec.node_name for p in pods} <= {"kwok-node-0", "kwok-node-1"}
    _wait("deployment available", lambda: client.AppsV1Api(api).read_namespaced_deployment("web", ns)
          .status.available_replicas == 3)


class _LabelingWebhook(BaseHTTPRequestHandler):
    """Answers AdmissionReview v1 with a JSON patch adding a label, and records what it saw."""

    seen: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        type(self).seen.append(request)
        patch = [{"op": "add", "path": "/metadata/labels/webhook-saw", "value": "yes"}]
        body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {
            "uid": request["uid"], "allowed": True, "patchType": "JSONPatch",
            "patch": base64.b64encode(json.dumps(patch).encode()).decode()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def labeling_webhook(tmp_path):
    ca = pki.CertificateAuthority("webhook-test-ca")
    crt, key = ca.issue("webhook", ips=("127.0.0.1",), server=True).write(tmp_path, "webhook")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LabelingWebhook)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _LabelingWebhook.seen = []
    yield f"https://127.0.0.1:{server.server_address[1]}/mutate", ca.cert_pem
    server.shutdown()
    server.server_close()


def test_mutating_webhook_by_url_is_called_for_deployment_pods(kube, labeling_webhook):
    url, ca_pem = labeling_webhook
    api = kube.client()
    ns = _namespace(api, labels={"webhook-test": "on"})
    admission = client.AdmissionregistrationV1Api(api)
    name = f"label-{ns}"
    admission.create_mutating_webhook_configuration({
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{"name": "label.test.pilot.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
                      "failurePolicy": "Fail", "timeoutSeconds": 5,
                      "clientConfig": {"url": url, "caBundle": base64.b64encode(ca_pem).decode()},
                      "namespaceSelector": {"matchLabels": {"webhook-test": "on"}},
                      "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                                 "resources": ["pods"]}]}]})
    try:
        time.sleep(1)  # the apiserver picks up new webhook configurations asynchronously
        client.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("hooked", replicas=1))
        pods = _wait("webhook-patched pod", lambda: client.CoreV1Api(api).list_namespaced_pod(
            ns, label_selector="app=hooked").items)
        assert pods[0].metadata.labels["webhook-saw"] == "yes"
        seen = [r for r in _LabelingWebhook.seen if r["namespace"] == ns]
        assert seen and seen[0]["operation"] == "CREATE" and seen[0]["kind"]["kind"] == "Pod"
        assert seen[0]["userInfo"]["username"] == "system:serviceaccount:kube-system:replicaset-controller"
    finally:
        admission.delete_mutating_webhook_configuration(name)


@pytest.mark.helm
def test_helm3_installs_and_uninstalls_a_chart(kube, helm):
    api = kube.client()
    ns = _namespace(api)
    kube.helm(helm, "install", "tiny", str(TINY_CHART), "-n", ns, "--set", "replicas=2", "--wait", "--timeout", "60s")
    cm = client.CoreV1Api(api).read_namespaced_config_map("tiny-config", ns)
    assert cm.data["kubeVersion"] == f"v{K8S_VERSION}", "Helm saw the real apiserver version"
    assert client.AppsV1Api(api).read_namespaced_deployment("tiny-web", ns).status.ready_replicas == 2
    listed = json.loads(kube.helm(helm, "list", "-n", ns, "-o", "json").stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("tiny", "deployed")]
    kube.helm(helm, "uninstall", "tiny", "-n", ns, "--wait")
    with pytest.raises(ApiException) as err:
        client.AppsV1Api(api).read_namespaced_deployment("tiny-web", ns)
    assert err.value.status == 404


def test_helm_refuses_a_cluster_older_than_the_chart_allows(kube, helm, tmp_path):
    chart = tmp_path / "future"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: future\nversion: 0.1.0\nkubeVersion: '>=9.0.0-0'\n")
    out = kube.helm(helm, "install", "future", str(chart), "--dry-run=server", check=False)
    assert out.returncode != 0 and "kubeVersion" in out.stderr


def test_down_stops_every_process_and_frees_every_port(kube_tools, tmp_path):
    import socket
    cp = ControlPlane(tmp_path / "second", kube_tools, nodes=1).up()
    pids = [(p.pid, p.binary) for p in cp.procs]
    ports = [cp.ports["etcd"], cp.ports["apiserver"]]
    assert all(procs.alive(pid, binary) for pid, binary in pids)
    assert cp.down(timeout=10) == [], "every process stopped on SIGTERM"
    assert not any(procs.alive(pid) for pid, _ in pids)
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still listening"
