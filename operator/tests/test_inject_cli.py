"""`pilotmesh inject -f`, run as the installed console script."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

PILOTMESH = Path(sys.executable).parent / "pilotmesh"
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inject"

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "nginx:1.27"}]
"""
SERVICE = "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\nspec: {ports: [{port: 80}]}\n"


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if not PILOTMESH.exists():
        pytest.skip(f"{PILOTMESH} missing: pip install -e . in this venv")
    return subprocess.run([str(PILOTMESH), "inject", *args], input=stdin, capture_output=True, text=True,
                          timeout=60)


def _status(doc: dict) -> dict:
    return json.loads(doc["spec"]["template"]["metadata"]["annotations"]["pilot.io/status"])


def test_multi_document_stdin_injects_workloads_and_passes_the_rest(tmp_path: Path) -> None:
    out = run("-f", "-", stdin=SERVICE + "---\n" + DEPLOYMENT)
    assert out.returncode == 0, out.stderr
    service, deployment = list(yaml.safe_load_all(out.stdout))
    assert service == yaml.safe_load(SERVICE)
    assert _status(deployment)["initContainers"] == ["pilot"]   # injected without the annotation: you asked


def test_list_in_list_out_and_file_input(tmp_path: Path) -> None:
    items = [yaml.safe_load(SERVICE), yaml.safe_load(DEPLOYMENT)]
    path = tmp_path / "list.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    out = run("-f", str(path))
    assert out.returncode == 0, out.stderr
    (doc,) = yaml.safe_load_all(out.stdout)
    assert doc["kind"] == "List" and doc["items"][0] == items[0] and "pilot.io/status" in json.dumps(doc["items"][1])


def test_mesh_file_transport_and_kube_version(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("apiVersion: pilot.io/v1alpha1\nkind: PilotMesh\nmetadata: {name: default}\n"
                    "spec: {daemon: {image: 'example/pilot-daemon:2'}}\n")
    out = run("-f", "-", "--mesh", str(mesh), "--transport", "compat", "--kube-version", "v1.28.3", stdin=DEPLOYMENT)
    assert out.returncode == 0, out.stderr
    (doc,) = yaml.safe_load_all(out.stdout)
    pod = doc["spec"]["template"]
    assert pod["metadata"]["annotations"]["pilot.io/transport"] == "compat"
    assert pod["spec"]["containers"][-1]["image"] == "example/pilot-daemon:2"   # 1.28: a regular container, last
    assert _status(doc)["nativeSidecar"] is False


def test_injecting_cli_output_again_is_a_no_op() -> None:
    first = run("-f", "-", stdin=DEPLOYMENT)
    second = run("-f", "-", stdin=first.stdout)
    assert first.returncode == second.returncode == 0
    assert second.stdout == first.stdout
    assert "not injected" in second.stderr and "already_injected" in second.stderr


def test_skips_and_warnings_go_to_stderr() -> None:
    out = run("-f", str(GOLDEN / "annotation-false.yaml"))
    assert out.returncode == 0
    assert yaml.safe_load(out.stdout) == yaml.safe_load((GOLDEN / "annotation-false.yaml").read_text())
    assert out.stderr.startswith("# Pod shop/web: not injected:") and "injection_disabled" in out.stderr
    warned = run("-f", str(GOLDEN / "user-pilot-socket.yaml"))
    assert "warning: container web sets PILOT_SOCKET itself" in warned.stderr


@pytest.mark.parametrize(("args", "stdin", "message"), [
    (("-f", "/nonexistent/x.yaml"), None, "can't read /nonexistent/x.yaml"),
    (("-f", "-"), "a: [1,\n", "not valid YAML"),
    (("-f", "-", "--kube-version", "latest"), DEPLOYMENT, "not a Kubernetes version"),
])
def test_errors_are_one_line_and_exit_2(args: tuple[str, ...], stdin: str | None, message: str) -> None:
    out = run(*args, stdin=stdin)
    assert out.returncode == 2 and out.stdout == ""
    assert message in out.stderr and len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_bad_mesh_file_names_the_field(tmp_path: Path) -> None:
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text("transport: tcp\ndaemon: {udpPort: 0}\n")   # a bare spec is accepted too
    out = run("-f", "-", "--mesh", str(mesh), stdin=DEPLOYMENT)
    assert out.returncode == 2
    assert "spec.transport: 'tcp' is not one of" in out.stderr and "spec.daemon.udpPort" in out.stderr


def test_policies_decide_auto_transport(tmp_path: Path) -> None:
    policy = tmp_path / "policies.yaml"
    policy.write_text("""\
apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {kubernetes.io/metadata.name: shop}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-443, namespace: shop}
spec:
  podSelector: {}
  policyTypes: [Egress]
  egress:
  - ports: [{port: 443, protocol: TCP}]
  - to: [{namespaceSelector: {}, podSelector: {matchLabels: {k8s-app: kube-dns}}}]
    ports: [{port: 53, protocol: UDP}, {port: 53, protocol: TCP}]
""")
    out = run("-f", "-", "--policies", str(policy), stdin=DEPLOYMENT)
    assert out.returncode == 0, out.stderr
    (doc,) = yaml.safe_load_all(out.stdout)
    annotations = doc["spec"]["template"]["metadata"]["annotations"]
    assert annotations["pilot.io/transport"] == "compat"
    assert "shop/only-443" in annotations["pilot.io/transport-reason"]
    assert _status(doc)["transportPolicy"] == "auto"
    assert len(annotations["pilot.io/transport-reason"]) <= 512
