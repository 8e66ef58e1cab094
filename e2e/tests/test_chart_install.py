"""Tier 1: `helm install` of charts/pilotmesh into the real control plane, with the `webhook.url` switch.

There is no kubelet, so the chart's pods never run. The operator and the injector run as local processes
instead, started with the args and env of the Deployment Helm installed, and authenticated as the chart's
ServiceAccounts (TokenRequest tokens): what works here works with exactly the chart's RBAC. The helm test
and the pre-delete hook are run the same way: their own command, locally, as their own ServiceAccount.
Tests run in file order: install, Ready, injection, helm test, upgrade, uninstall.
"""
import base64
import json
import os
import subprocess
import sys
import urllib.request
import uuid

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from chart_helpers import CHART, hook, kubectl, serviceaccount_kubeconfig, set_args
from pilotmesh_controlplane.local_pilotmesh import ensure_namespace
from pilotmesh_controlplane import procs

pytestmark = [pytest.mark.kube, pytest.mark.helm]
RELEASE = "pm-chart"
MANAGED = "app.kubernetes.io/managed-by=pilotmesh-operator"
GROUP, VERSION, PLURAL = "pilot.io", "v1alpha1", "pilotmeshes"


class Release:
    def __init__(self, kube, helm, workdir):
        self.kube, self.helm, self.workdir, self.api = kube, helm, workdir, kube.client()
        tag = uuid.uuid4().hex[:6]
        self.ns, self.mesh, self.tag = f"pm-chart-{tag}", f"chart-{tag}", tag
        self.port = procs.free_port()
        self.values = {"webhook.url": f"https://127.0.0.1:{self.port}/inject", "mesh.create": True,
                       "mesh.name": self.mesh, "mesh.namespaceSelector.matchLabels.pilotmesh-chart-test": tag,
                       "images.daemon.repository": "registry.invalid/pilot-daemon"}
        self.pids: dict[str, int] = {}

    def helm_cmd(self, *args, check=True):
        return self.kube.helm(self.helm, *args, "-n", self.ns, check=check)

    def manifest(self) -> str:
        return self.helm_cmd("get", "manifest", RELEASE).stdout

    def hooks(self) -> list[dict]:
        return [d for d in yaml.safe_load_all(self.helm_cmd("get", "hooks", RELEASE).stdout) if d]

    def kubeconfig_for(self, account: str):
        return serviceaccount_kubeconfig(self.api, self.kube.kubeconfig, self.ns, account,
                                         self.workdir / f"{account}.kubeconfig")

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.pids[name] = procs.spawn([sys.executable, "-m", "pilotmesh_operator.cli", *argv],
                                      self.workdir / f"{name}.log", env=env)

    def stop(self, name: str) -> None:
        if name in self.pids:
            procs.stop(self.pids.pop(name), sys.executable, timeout=15)

    def tails(self) -> str:
        return "\n".join(f"--- {p.name}\n{procs.tail(p, 40)}" for p in sorted(self.workdir.glob("*.log")))

    def wait(self, what, check, timeout=45):
        try:
            return procs.wait_until(what, check, timeout, interval=0.25)
        except TimeoutError as exc:
            raise AssertionError(f"{exc}\n{self.tails()}") from None

    def get_mesh(self):
        return client.CustomObjectsApi(self.api).get_cluster_custom_object(GROUP, VERSION, PLURAL, self.mesh)


def condition(mesh, ctype):
    return next((c for c in (mesh.get("status") or {}).get("conditions") or [] if c["type"] == ctype), {})


@pytest.fixture(scope="module")
def release(kube, helm, tmp_path_factory):
    rel = Release(kube, helm, tmp_path_factory.mktemp("chart-install"))
    rel.install = kube.helm(helm, "install", RELEASE, str(CHART), "-n", rel.ns, "--create-namespace",
                            *set_args(rel.values), "--wait", "--timeout", "60s")
    core = client.CoreV1Api(rel.api)
    # The operator names its injector ServiceAccount `pilotmesh-injector`; create it first (the operator
    # adopts it by server-side apply) so the injector can start, with its token, before the operator.
    core.create_namespaced_service_account(rel.ns, client.V1ServiceAccount(metadata=client.V1ObjectMeta(
        name="pilotmesh-injector")))
    rel.spawn("injector", ["injector", f"--kubeconfig={rel.kubeconfig_for('pilotmesh-injector')}",
                           f"--listen=127.0.0.1:{rel.port}", "--metrics-listen=127.0.0.1:0", f"--namespace={rel.ns}",
                           f"--tls-secret={rel.ns}/pilotmesh-injector-tls"])
    # The operator exactly as the chart runs it: the Deployment's args and env, as its ServiceAccount.
    dep = client.AppsV1Api(rel.api).read_namespaced_deployment(f"{RELEASE}-pilotmesh-operator", rel.ns)
    [container] = dep.spec.template.spec.containers
    env = {e.name: e.value for e in container.env if e.value is not None}
    env["POD_NAMESPACE"] = rel.ns   # the Deployment's fieldRef
    rel.liveness = procs.free_port()
    rel.operator_argv = [*container.args, f"--liveness=http://127.0.0.1:{rel.liveness}/healthz",
                         "--metrics-listen=127.0.0.1:0",
                         f"--kubeconfig={rel.kubeconfig_for(dep.spec.template.spec.service_account_name)}"]
    rel.spawn("operator", rel.operator_argv,
              env={**{k: v for k, v in os.environ.items() if k != "KUBECONFIG"}, **env})
    yield rel
    rel.stop("operator")
    rel.stop("injector")
    kube.helm(helm, "uninstall", RELEASE, "-n", rel.ns, "--no-hooks", check=False)
    for ns in (rel.ns, f"{rel.ns}-app"):
        try:
            core.delete_namespace(ns)
        except ApiException:
            pass


def test_install_creates_every_object_of_the_release_and_prints_next_steps(release, kube):
    assert "Next steps" in release.install.stdout
    assert f"kubectl wait pilotmesh/{release.mesh} --for=condition=Ready" in release.install.stdout
    names = kubectl(kube, "get", "-f", "-", "-o", "name", stdin=release.manifest()).stdout.split()
    assert f"pilotmesh.pilot.io/{release.mesh}" in names
    assert f"deployment.apps/{RELEASE}-pilotmesh-operator" in names
    assert sum(n.startswith("clusterrole.rbac") for n in names) == 2 and sum(n.startswith("role.rbac") for n in names) == 2
    crd = client.ApiextensionsV1Api(release.api).read_custom_resource_definition("pilotmeshes.pilot.io")
    assert crd.metadata.name == "pilotmeshes.pilot.io"


def test_the_operator_with_the_charts_rbac_makes_the_mesh_ready(release):
    release.wait("the chart's PilotMesh Ready", lambda: condition(release.get_mesh(), "Ready").get("status") == "True")
    mesh = release.get_mesh()
    for ctype in ("CertificateReady", "WebhookReady", "InjectorReady"):
        assert condition(mesh, ctype)["status"] == "True", mesh["status"]
    mwc = client.AdmissionregistrationV1Api(release.api).read_mutating_webhook_configuration(f"pilotmesh-{release.mesh}")
    assert mwc.metadata.labels["app.kubernetes.io/managed-by"] == "pilotmesh-operator"
    for webhook in mwc.webhooks:
        assert webhook.client_config.url == release.values["webhook.url"] and webhook.client_config.ca_bundle
        assert webhook.failure_policy == "Fail" and webhook.timeout_seconds == 5
    # webhook.url did not turn the injector Deployment off: the operator created it with the chart's values
    apps = client.AppsV1Api(release.api)
    dep = apps.read_namespaced_deployment("pilotmesh-injector", release.ns)
    chart_operator = apps.read_namespaced_deployment(f"{RELEASE}-pilotmesh-operator", release.ns)
    assert dep.spec.replicas == 2
    assert dep.spec.template.spec.containers[0].image == chart_operator.spec.template.spec.containers[0].image
    client.PolicyV1Api(release.api).read_namespaced_pod_disruption_budget("pilotmesh-injector", release.ns)
    with urllib.request.urlopen(f"http://127.0.0.1:{release.liveness}/healthz", timeout=5) as resp:
        assert resp.status == 200, "kopf's liveness endpoint, which the chart's livenessProbe calls"
    logs = release.tails()
    assert "Forbidden" not in logs and " 403" not in logs, f"the chart's RBAC is missing a permission:\n{logs}"


def test_annotated_pods_in_the_meshs_namespaces_are_injected(release):
    app_ns = ensure_namespace(release.api, f"{release.ns}-app", {"pilotmesh-chart-test": release.tag})
    labels = {"app": "chart-demo"}
    client.AppsV1Api(release.api).create_namespaced_deployment(app_ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chart-demo"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels, "annotations": {"pilot.io/inject": "true"}},
            "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}})
    pods = release.wait("the demo pod", lambda: client.CoreV1Api(release.api).list_namespaced_pod(
        app_ns, label_selector="app=chart-demo").items)
    spec = pods[0].spec
    daemon = next(c for c in (spec.init_containers or []) + spec.containers if c.name == "pilot")
    assert daemon.image.startswith("registry.invalid/pilot-daemon:"), "the daemon image from the chart's values"
    assert "pilot.io/status" in pods[0].metadata.annotations


def test_helm_test_command_reaches_the_injector_over_tls(release):
    [pod] = [d for d in release.hooks() if hook(d) == "test"]
    command = pod["spec"]["containers"][0]["command"]
    secret = client.CoreV1Api(release.api).read_namespaced_secret("pilotmesh-injector-tls", release.ns)
    ca = release.workdir / "ca-bundle.crt"
    ca.write_bytes(base64.b64decode(secret.data["ca-bundle.crt"]))
    assert command[0] == "python" and command[-1] == "/ca/ca-bundle.crt"
    out = subprocess.run([sys.executable, *command[1:-1], str(ca)], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and "HTTP 200" in out.stdout, out.stdout + out.stderr


def _state(release, kube) -> dict[str, tuple]:
    """generation (or resourceVersion when an object has none) of every object of the release."""
    objs = json.loads(kubectl(kube, "get", "-f", "-", "-o", "json", stdin=release.manifest()).stdout)["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": (o["metadata"].get("generation") or o["metadata"]["resourceVersion"],
                                                     json.dumps(o.get("spec"), sort_keys=True)) for o in objs}


def test_helm_upgrade_changes_only_what_the_values_changed(release, kube):
    before = _state(release, kube)
    mwc_before = client.AdmissionregistrationV1Api(release.api).read_mutating_webhook_configuration(
        f"pilotmesh-{release.mesh}").metadata.resource_version
    release.helm_cmd("upgrade", RELEASE, str(CHART), *set_args(release.values))
    assert _state(release, kube) == before, "an upgrade with the same values changed objects"
    release.helm_cmd("upgrade", RELEASE, str(CHART), *set_args({**release.values, "injector.replicas": 3}))
    after = _state(release, kube)
    changed = sorted(k for k in after if after[k] != before[k])
    assert changed == [f"Deployment/{RELEASE}-pilotmesh-operator"], changed
    dep = client.AppsV1Api(release.api).read_namespaced_deployment(f"{RELEASE}-pilotmesh-operator", release.ns)
    env = {e.name: e.value for e in dep.spec.template.spec.containers[0].env}
    assert env["PILOTMESH_INJECTOR_REPLICAS"] == "3"
    mwc_after = client.AdmissionregistrationV1Api(release.api).read_mutating_webhook_configuration(
        f"pilotmesh-{release.mesh}").metadata.resource_version
    assert mwc_after == mwc_before, "Helm must never touch the operator's webhook configuration"


def test_uninstall_runs_the_pre_delete_command_and_leaves_no_webhook(release, kube):
    hooks = [d for d in release.hooks() if hook(d) == "pre-delete"]
    rbac = yaml.safe_dump_all([d for d in hooks if d["kind"] != "Job"])
    [job] = [d for d in hooks if d["kind"] == "Job"]
    [container] = job["spec"]["template"]["spec"]["containers"]
    # What Helm does on `helm uninstall`: create the hook's RBAC (weight -10), then run the Job (weight 0).
    kubectl(kube, "apply", "-f", "-", stdin=rbac)
    account = job["spec"]["template"]["spec"]["serviceAccountName"]
    argv = [sys.executable, *container["command"][1:], *container["args"], "--timeout=20",
            f"--kubeconfig={release.kubeconfig_for(account)}"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr + release.tails()
    steps = [line.split(".")[0] for line in out.stdout.splitlines() if line[:1].isdigit()]
    assert steps[:3] == ["1", "2", "3"] and "timed out" not in out.stdout, out.stdout
    assert f"deleting PilotMesh(es) ['{release.mesh}']" in out.stdout
    release.stop("operator")
    release.stop("injector")
    kubectl(kube, "delete", "-f", "-", stdin=rbac)      # hook-delete-policy: hook-succeeded
    manifest = release.manifest()
    release.helm_cmd("uninstall", RELEASE, "--no-hooks", "--wait")

    admission = client.AdmissionregistrationV1Api(release.api)
    assert not admission.list_mutating_webhook_configuration(label_selector=MANAGED).items
    for text in (manifest, rbac):
        left = kubectl(kube, "get", "-f", "-", "-o", "name", stdin=text, check=False)
        assert not left.stdout.strip(), f"left behind: {left.stdout}"
    core, apps = client.CoreV1Api(release.api), client.AppsV1Api(release.api)
    assert not apps.list_namespaced_deployment(release.ns).items
    assert not core.list_namespaced_secret(release.ns, label_selector=MANAGED).items
    assert not core.list_namespaced_service(release.ns).items
    with pytest.raises(ApiException) as gone:
        release.get_mesh()
    assert gone.value.status == 404
    # Helm convention: CRDs in crds/ are installed once and never deleted (documented in values.yaml and NOTES)
    client.ApiextensionsV1Api(release.api).read_custom_resource_definition("pilotmeshes.pilot.io")
