"""`pilotmesh why -f` offline and the one-line errors of `why` and `status` on bad input."""
import json

import pytest

from pilotmesh_operator.cli import main

PODS = """
apiVersion: v1
kind: Pod
metadata: {name: web, annotations: {pilot.io/inject: "true"}}
spec: {containers: [{name: app, image: nginx:1}]}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec: {containers: [{name: app, image: nginx:1}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-443}
spec: {podSelector: {}, policyTypes: [Egress], egress: [{ports: [{protocol: TCP, port: 443}]}]}
"""


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_offline_why_explains_each_pod_and_the_policies(tmp_path, capsys):
    f = tmp_path / "pods.yaml"
    f.write_text(PODS)
    code, out, err = _run(capsys, "why", "-f", str(f), "-o", "json")
    web, api = json.loads(out)
    assert code == 0 and web["state"] == "would-inject" and web["transport"] == "compat"
    assert any("default/only-443" in r for r in web["verdict"]["reasons"])
    assert api["state"] == "would-not-inject" and api["checks"][1]["reason"] == "annotation_absent"
    code, out, _ = _run(capsys, "why", "-f", str(f), "--namespace-labels", "pilot.io/inject=true")
    assert code == 0 and "default/api (Deployment): would be injected" in out


def test_offline_why_with_a_mesh_that_does_not_select_the_namespace(tmp_path, capsys):
    f, mesh = tmp_path / "pods.yaml", tmp_path / "mesh.yaml"
    f.write_text(PODS)
    mesh.write_text("kind: PilotMesh\nmetadata: {name: teams}\nspec: {namespaceSelector: {matchLabels: {team: a}}}\n")
    code, out, _ = _run(capsys, "why", "-f", str(f), "--mesh", str(mesh), "-n", "apps")
    assert code == 0 and "no PilotMesh selects namespace apps" in out and "(no_mesh)" in out
    code, out, _ = _run(capsys, "why", "-f", str(f), "--mesh", str(mesh), "-n", "apps", "--namespace-labels", "team=a")
    assert "apps/web: would be injected by PilotMesh teams" in out


@pytest.mark.parametrize("argv,needle", [
    (["why"], "name a pod"),
    (["why", "a/b/c"], "is not NAMESPACE/NAME"),
    (["why", "-f", "/nonexistent.yaml"], "cannot read /nonexistent.yaml"),
    (["why", "x/y", "-f", "-"], "not both"),
    (["why", "x/y", "-n", "z"], "but -n says z"),
    (["why", "-f", "{bad}"], ""),
    (["why", "web", "--kubeconfig", "/nonexistent"], "cannot read the cluster"),
    (["status", "--kubeconfig", "/nonexistent"], "cannot read the cluster"),
])
def test_bad_input_is_one_line_and_exit_2(argv, needle, tmp_path, capsys, monkeypatch):
    if argv[-1] == "{bad}":
        bad = tmp_path / "bad.yaml"
        bad.write_text("kind: Pod\nmetadata: [unclosed\n")
        argv = ["why", "-f", str(bad)]
        needle = "not valid YAML"
    code, out, err = _run(capsys, *argv)
    assert code == 2 and out == "" and needle in err and len(err.strip().splitlines()) == 1, err
