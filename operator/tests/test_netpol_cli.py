"""`pilotmesh transport-verdict`, run as the installed console script on a golden input."""
from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import yaml

GOLDEN = pathlib.Path(__file__).resolve().parents[1] / "golden" / "netpol"
PILOTMESH = pathlib.Path(sys.executable).with_name("pilotmesh")


def pilotmesh(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(PILOTMESH), "transport-verdict", *args], input=stdin, capture_output=True,
                          text=True, timeout=60)


def split_case(tmp_path: pathlib.Path, name: str) -> tuple[dict, pathlib.Path, pathlib.Path]:
    case = yaml.safe_load((GOLDEN / f"{name}.yaml").read_text())
    pod = tmp_path / "pod.yaml"
    pod.write_text(yaml.safe_dump(case["pod"]))
    rest = tmp_path / "policies.yaml"
    rest.write_text(yaml.safe_dump_all(case["namespaces"] + case["policies"]))
    return case, pod, rest


def test_json_matches_golden_output(tmp_path):
    case, pod, rest = split_case(tmp_path, "readme-443-and-dns")
    r = pilotmesh("-f", str(pod), "-f", str(rest), "-o", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got == case["output"]
    assert list(got)[:6] == ["verdict", "transport", "confidence", "reasons", "dns", "inClusterPeers"]


def test_issue_flags_and_text(tmp_path):
    case, pod, rest = split_case(tmp_path, "readme-443-and-dns")
    r = pilotmesh("--pod", str(pod), "--policies", str(rest))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "compat-only (transport compat, confidence high)"
    assert [ln[4:] for ln in lines[1:]] == case["output"]["reasons"]


def test_list_kind_mesh_and_namespace_labels(tmp_path):
    case, pod, _ = split_case(tmp_path, "namespace-selector-by-team")
    listed = tmp_path / "list.yaml"
    listed.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": case["policies"]}))
    mesh = tmp_path / "mesh.yaml"
    mesh.write_text(yaml.safe_dump({"apiVersion": "pilot.io/v1alpha1", "kind": "PilotMesh", "metadata": {"name": "m"},
                                    "spec": {"daemon": {"udpPort": 4100}}}))
    r = pilotmesh("--pod", str(pod), "--policies", str(listed), "--mesh", str(mesh),
                  "--namespace-labels", "team=shop", "-o", "json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    # the policy allows UDP 4000 only: with the mesh's port 4100, in-cluster peers are blocked
    assert got["inClusterPeers"] is False
    assert any("UDP 4100 to in-cluster peers" in x for x in got["reasons"])


def test_unreadable_input_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [unclosed\n")
    for args in (["-f", str(tmp_path / "missing.yaml")], ["-f", str(bad)], ["-f", "-"]):
        r = pilotmesh(*args, stdin="kind: ConfigMap\n")
        assert r.returncode == 2
        assert r.stderr.startswith("pilotmesh transport-verdict: error: ")
        assert "Traceback" not in r.stderr
