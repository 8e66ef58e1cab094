"""The chart without a cluster: `helm lint`, `helm template` structure, values documented and schema'd,
bad values refused with a message that says what to change, hooks, and manifests/ in sync with the chart."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from chart_helpers import CHART, ROOT, hook, one, pod_templates, render, template
from pilotmesh_operator.mesh import MeshSettings, parse_kube_version

pytestmark = pytest.mark.helm
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
EVERYTHING = {"mesh.create": True, "rendezvous.enabled": True, "metrics.serviceMonitor.enabled": True,
              "webhook.url": "https://127.0.0.1:18443/inject"}


@pytest.mark.parametrize("values", [{}, EVERYTHING], ids=["defaults", "everything-on"])
def test_helm_lint_strict_is_clean(helm, values):
    args = [a for k, v in values.items() for a in ("--set", f"{k}={str(v).lower() if v is True else v}")]
    out = subprocess.run([str(helm), "lint", "--strict", str(CHART), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert not re.search(r"\[(WARNING|ERROR|INFO)\]", out.stdout), out.stdout


def test_defaults_render_the_operator_and_rbac_but_never_a_certificate(helm):
    out = template(helm, EVERYTHING).stdout
    for forbidden in ("caBundle", "BEGIN CERTIFICATE", "PRIVATE KEY", "MutatingWebhookConfiguration", "kind: Secret"):
        assert forbidden not in out, f"the chart renders {forbidden!r}: the operator owns certificates and webhooks"
    docs = [d for d in render(helm) if not hook(d)]
    assert sorted(d["kind"] for d in docs) == sorted(
        ["ServiceAccount", "Deployment"] + ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"] * 2)
    dep = one(docs, "Deployment", "-operator")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    [c] = dep["spec"]["template"]["spec"]["containers"]
    assert c["image"] == f"ghcr.io/pilotmesh/operator:{APP_VERSION}"
    assert "--liveness=http://0.0.0.0:8080/healthz" in c["args"]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert {"name": "health", "containerPort": 8080} in c["ports"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["PILOTMESH_INJECTOR_IMAGE"] == c["image"] and env["PILOTMESH_INJECTOR_REPLICAS"] == "2"
    assert "PILOTMESH_WEBHOOK_URL" not in env and "--no-injector-deployment" not in c["args"]


def test_every_pod_the_chart_renders_meets_the_restricted_pod_security_standard(helm):
    pods = list(pod_templates(render(helm, EVERYTHING)))
    assert len(pods) == 4, [name for name, _ in pods]   # operator, rendezvous, uninstall Job, helm test
    for name, spec in pods:
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for c in spec["containers"]:
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert sc["capabilities"]["drop"] == ["ALL"], (name, c["name"])
            assert c.get("resources") or c["name"] == "injector-ready", (name, c["name"])


def test_webhook_url_switch_passes_the_url_and_leaves_the_injector_deployment_on(helm):
    url = "https://127.0.0.1:18443/inject"
    [c] = one(render(helm, {"webhook.url": url}), "Deployment", "-operator")["spec"]["template"]["spec"]["containers"]
    assert {"name": "PILOTMESH_WEBHOOK_URL", "value": url} in c["env"]
    assert "--no-injector-deployment" not in c["args"], "webhook.url alone must not imply --no-injector-deployment"
    docs = render(helm, {"webhook.url": url, "injector.deploy": False})
    [c] = one(docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"]
    assert "--no-injector-deployment" in c["args"]
    test_pod = one(docs, "Pod")
    assert test_pod["spec"]["containers"][0]["command"][-2] == "https://127.0.0.1:18443/readyz"


def test_helm_test_pod_calls_the_injector_service_trusting_only_the_ca_bundle(helm):
    pod = one(render(helm, namespace="pm-ns"), "Pod")
    assert hook(pod) == "test"
    cmd = pod["spec"]["containers"][0]["command"]
    assert cmd[:2] == ["python", "-c"] and cmd[-2:] == ["https://pilotmesh-injector.pm-ns.svc/readyz", "/ca/ca-bundle.crt"]
    [vol] = pod["spec"]["volumes"]
    assert vol["secret"] == {"secretName": "pilotmesh-injector-tls",
                             "items": [{"key": "ca-bundle.crt", "path": "ca-bundle.crt"}]}, "no keys in the test pod"


def test_pre_delete_hook_runs_after_its_rbac_and_targets_the_release(helm):
    docs = render(helm, {"mesh.create": True}, release="pm", namespace="pm-ns")
    hooks = [d for d in docs if hook(d) == "pre-delete"]
    weights = {d["kind"]: int(d["metadata"]["annotations"]["helm.sh/hook-weight"]) for d in hooks}
    assert weights == {"ServiceAccount": -10, "ClusterRole": -10, "ClusterRoleBinding": -10, "Role": -10,
                       "RoleBinding": -10, "Job": 0}
    assert {d["metadata"]["annotations"]["helm.sh/hook-delete-policy"] for d in hooks} == {
        "before-hook-creation,hook-succeeded"}
    job = one(hooks, "Job")
    [c] = job["spec"]["template"]["spec"]["containers"]
    assert c["command"] == ["python", "-m", "pilotmesh_operator.commands.uninstall"]
    operator = one(docs, "Deployment", "-operator")["metadata"]["name"]
    assert f"--operator-deployment={operator}" in c["args"] and "--namespace=pm-ns" in c["args"]
    selector = dict(kv.split("=") for kv in next(a for a in c["args"] if a.startswith("--mesh-selector="))
                    .split("=", 1)[1].split(","))
    mesh = one(docs, "PilotMesh")
    assert selector.items() <= mesh["metadata"]["labels"].items(), "the hook must select the chart's PilotMesh"
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == one(hooks, "ServiceAccount")["metadata"]["name"]


def test_the_charts_pilotmesh_is_one_the_operator_accepts(helm):
    mesh = one(render(helm, {"mesh.create": True, "mesh.transport": "compat", "webhook.failurePolicy": "Ignore",
                             "webhook.timeoutSeconds": 9}), "PilotMesh")
    settings = MeshSettings.from_object(mesh, cluster_version=parse_kube_version("v1.36.3"),
                                        operator_namespace="pilot-system")
    assert settings.image == f"ghcr.io/pilotmesh/pilot-daemon:{APP_VERSION}"
    assert (settings.transport, settings.failure_policy, settings.timeout_seconds) == ("compat", "Ignore", 9)


def values_lines(text: str) -> list[tuple[str, bool]]:
    """(dotted key, documented?) for every key line of a values.yaml, in order: a key is documented when
    a comment stands right above it or above one of its parents (then it is part of a documented default)."""
    stack, out, comment_above, documented_at = [], [], False, []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped:
            comment_above = False
            continue
        if stripped.startswith("#"):
            comment_above = True
            continue
        indent = len(line) - len(line.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        while documented_at and documented_at[-1] >= indent:
            documented_at.pop()
        if stripped.startswith("- "):
            comment_above = False
            continue   # an item of a documented default list
        key = stripped.split(":", 1)[0]
        dotted = ".".join([k for _, k in stack] + [key])
        out.append((dotted, comment_above or bool(documented_at)))
        if comment_above:
            documented_at.append(indent)
        stack.append((indent, key))
        comment_above = False
    return out


def test_the_documentation_check_finds_an_undocumented_key():
    text = "# -- documented\na: 1\nb:\n  # -- documented\n  c: {}\n  d: 2\n# -- a default\ne:\n  f: 1\n"
    assert values_lines(text) == [("a", True), ("b", False), ("b.c", True), ("b.d", False), ("e", True),
                                  ("e.f", True)]


def test_every_value_is_documented_where_it_stands():
    lines = values_lines((CHART / "values.yaml").read_text())
    assert len(lines) > 60
    undocumented = [key for key, ok in lines if not ok]
    assert not undocumented, f"values without a comment above them: {undocumented}"


def test_schema_and_values_describe_the_same_keys():
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node):
        return schema["definitions"][node["$ref"].rsplit("/", 1)[1]] if "$ref" in node else node

    def walk(node, vals, path):
        node = resolve(node)
        assert node.get("additionalProperties") is False or path in {"global"}, f"{path}: schema must be closed"
        props = node.get("properties", {})
        assert set(vals) <= set(props), f"{path}: values without schema: {set(vals) - set(props)}"
        for key, sub in props.items():
            if key == "global":
                continue
            assert key in vals, f"{path}.{key}: in the schema but not in values.yaml"
            if isinstance(vals[key], dict) and vals[key] and resolve(sub).get("properties"):
                walk(sub, vals[key], f"{path}.{key}".lstrip("."))

    walk(schema, values, "")


BAD_VALUES = [
    ({"operator.replicas": 2}, "at '/operator': additional properties 'replicas' not allowed"),
    ({"injector.replicas": "two"}, "at '/injector/replicas': got string, want integer"),
    ({"webhook.failurePolicy": "Never"}, "at '/webhook/failurePolicy': value must be one of 'Fail', 'Ignore'"),
    ({"webhook.timeoutSeconds": 31}, "at '/webhook/timeoutSeconds'"),
    ({"webhook.url": "http://injector:8443/inject"}, "at '/webhook/url'"),
    ({"mesh.transport": "tcp"}, "at '/mesh/transport': value must be one of 'auto', 'udp', 'compat'"),
    ({"images.daemon.repository": "ghcr.io/pilotmesh/pilot-daemon:1.0"},
     'images.daemon.repository "ghcr.io/pilotmesh/pilot-daemon:1.0" carries a tag: give the repository alone '
     "and put the tag in images.daemon.tag"),
    ({"images.operator.tag": "latest"}, 'images.operator.tag is "latest": pin a version'),
    ({"mesh.create": True, "injector.replicas": 0},
     "injector.replicas is 0 while the chart's PilotMesh has webhook.failurePolicy=Fail"),
]


@pytest.mark.parametrize("values,message", BAD_VALUES, ids=[next(iter(v)) for v, _ in BAD_VALUES])
def test_bad_values_are_refused_with_a_message_naming_the_key(helm, values, message):
    out = template(helm, values, check=False)
    assert out.returncode != 0 and message in out.stderr, out.stderr


def test_allowed_edge_values_render(helm):
    docs = render(helm, {"injector.replicas": 0, "webhook.failurePolicy": "Ignore", "mesh.create": True,
                         "images.daemon.repository": "registry.local:5000/pilot-daemon",
                         "images.daemon.digest": "sha256:" + "a" * 64})
    assert one(docs, "PilotMesh")["spec"]["daemon"]["image"] == "registry.local:5000/pilot-daemon@sha256:" + "a" * 64


def test_manifests_are_what_the_chart_renders(helm, tmp_path):
    out = subprocess.run([str(ROOT / "charts" / "gen-manifests.sh"), str(tmp_path)], capture_output=True, text=True,
                         env=dict(os.environ, HELM=str(helm)), timeout=60)
    assert out.returncode == 0, out.stderr
    committed = ROOT / "manifests"
    names = sorted(p.name for p in tmp_path.glob("*.yaml"))
    assert names == sorted(p.name for p in committed.glob("*.yaml"))
    stale = [n for n in names if (tmp_path / n).read_text() != (committed / n).read_text()]
    assert not stale, f"manifests/ drifted from the chart in {stale}: run `make manifests` and commit"


def test_samples_do_what_their_comments_say(tmp_path):
    """The default-deny namespace gives compat and the Job a native sidecar (offline, `pilotmesh inject`)."""
    samples = ROOT / "manifests" / "samples"

    def inject(name, *extra):
        out = subprocess.run([sys.executable, "-m", "pilotmesh_operator.cli", "inject", "-f", str(samples / name), "--mesh",
                              str(samples / "pilotmesh.yaml"), *extra], capture_output=True, text=True, check=True)
        return [d for d in yaml.safe_load_all(out.stdout) if d]

    locked = one(inject("default-deny-namespace.yaml", "--policies", str(samples / "default-deny-namespace.yaml")),
                 "Deployment")
    assert locked["spec"]["template"]["metadata"]["annotations"]["pilot.io/transport"] == "compat"
    job = one(inject("job.yaml"), "Job")["spec"]["template"]["spec"]
    assert [c["name"] for c in job["initContainers"]] == ["pilot"] and job["initContainers"][0]["restartPolicy"] == "Always"
    dep = one(inject("deployment.yaml"), "Deployment")
    assert "pilot.io/status" in dep["spec"]["template"]["metadata"]["annotations"]


def test_kind_script_installs_values_the_chart_accepts(helm):
    """e2e/kind/run.sh is not run in CI; at least its --set values must render, and what it execs must exist."""
    script = (ROOT / "e2e" / "kind" / "run.sh").read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / "e2e" / "kind" / "run.sh")]).returncode == 0
    sets = dict(m.split("=", 1) for m in re.findall(r"--set ([\w.]+=[^\s\\]+)", script))
    values = {k: (True if v == "true" else "dev" if v == '"$TAG"' else v) for k, v in sets.items()}
    docs = render(helm, values)
    assert one(docs, "Deployment", "-operator")["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":dev")
    assert f"deploy/{one(docs, 'Deployment', '-rendezvous')['metadata']['name']}" in script
    mesh = one(docs, "PilotMesh")
    assert mesh["metadata"]["name"] == "default" and "pilotmesh/default" in script
    assert one(docs, "Service", "rendezvous")["metadata"]["name"] == "pilot-rendezvous"


def test_workload_restart_rights_only_when_asked(helm):
    def patchable(values):
        role = one(render(helm, values), "ClusterRole", "-operator")
        return {r for rule in role["rules"] if "patch" in rule["verbs"] for r in rule["resources"]}

    assert patchable({}) == {"pilotmeshes", "pilotmeshes/status", "mutatingwebhookconfigurations", "pods"}
    assert {"deployments", "statefulsets", "daemonsets"} <= patchable({"operator.watchdog.allowRestarts": True})
