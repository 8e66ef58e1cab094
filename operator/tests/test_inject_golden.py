"""Golden files for the injector: operator/golden/inject/<case>.yaml -> <case>.injected.yaml.

After an intended change, regenerate every golden file with one command and review the diff:

    REFRESH_GOLDEN=1 .venv/bin/python -m pytest operator/tests/test_inject_golden.py -q

Each input is injected with the settings in CASES (default: the webhook's view, the CRD defaults with a pinned
image). The expected file holds `# skip/warning/transport` comment lines, then the resulting object. Besides the
comparison, every case checks that the returned JSON Patch turns the input into the returned object, and that
injecting the result again changes nothing.
"""
from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from pilotmesh_operator import __version__
from pilotmesh_operator.commands.inject import dump_yaml
from pilotmesh_operator.mesh import MeshSettings
from pilotmesh_operator.render.inject import SKIP_REASONS, InjectResult, TransportDecision, _pointer, inject

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "inject"
REFRESH = os.environ.get("REFRESH_GOLDEN", "").lower() in ("1", "true", "yes")
PINNED_IMAGE = "registry.example/pilot-daemon:golden"
VERDICT = TransportDecision("compat", "NetworkPolicy locked/default-deny allows egress only to TCP 443 (0.0.0.0/0)")

# Per-case settings; every other input file runs with the defaults.
CASES: dict[str, dict[str, Any]] = {
    "pod-admission": {"namespace": "shop"},
    "job-native": {"cluster_version": (1, 30)},
    "job-legacy": {"cluster_version": (1, 27)},
    "native-mesh-always-old-cluster": {"mesh": {"daemon": {"nativeSidecar": "always"}}, "cluster_version": (1, 27)},
    "native-auto-old-cluster": {"cluster_version": (1, 28)},
    "proxy": {"mesh": {"transport": "compat", "proxy": {
        "httpsProxy": "http://proxy.corp.example:3128", "noProxy": ".svc,.cluster.local,10.0.0.0/8"}}},
    "proxy-secret": {"mesh": {"transport": "compat", "proxy": {
        "secretRef": {"name": "pilot-proxy"}, "noProxy": ".svc,.cluster.local"}}},
    "compat-custom-rendezvous": {"mesh": {"transport": "compat", "rendezvous": {
        "registry": "rendezvous.corp.example:9000", "beacon": "rendezvous.corp.example:9001",
        "compatURL": "wss://rendezvous.corp.example/v1/compat"}}},
    "in-cluster-rendezvous": {"mesh": {"transport": "udp", "rendezvous": {"inCluster": True}}},
    "transport-verdict": {"decision": VERDICT},
    "transport-annotation-wins": {"decision": VERDICT},
    "daemonset-mode": {"mesh": {"mode": "daemonset"}},
    "namespace-not-selected": {"namespace": "shop", "namespace_labels": {"team": "web"},
                               "mesh": {"namespaceSelector": {"matchLabels": {"team": "payments"}}}},
    "namespace-label-default": {"namespace": "shop", "namespace_labels": {"pilot.io/inject": "true"}},
    "odd-no-template-metadata": {"cli": True},
}


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else copy.deepcopy(value)
    return out


def _inputs() -> list[str]:
    return sorted(p.name[:-len(".yaml")] for p in GOLDEN.glob("*.yaml") if not p.name.endswith(".injected.yaml"))


def _run(case: str, obj: dict[str, Any] | None = None) -> tuple[dict[str, Any], InjectResult]:
    conf = CASES.get(case, {})
    mesh = MeshSettings.from_spec(_deep_merge({"daemon": {"image": PINNED_IMAGE}}, conf.get("mesh", {})),
                                  cluster_version=conf.get("cluster_version"))
    if obj is None:
        obj = yaml.safe_load((GOLDEN / f"{case}.yaml").read_text())
    result = inject(obj, mesh, conf.get("decision"), namespace=conf.get("namespace"),
                    namespace_labels=conf.get("namespace_labels"), require_opt_in=not conf.get("cli"))
    return obj, result


def _render(result: InjectResult) -> str:
    lines = []
    if result.skip:
        lines.append(f"# skip: {result.skip}: {result.message}")
    lines += [f"# warning: {w}" for w in result.warnings]
    if result.transport:
        lines.append(f"# transport: {result.transport} ({result.transport_reason})")
    text = dump_yaml([result.obj]).replace(f'"version":"{__version__}"', '"version":"VERSION"')
    return "\n".join(lines + [text])


@pytest.mark.parametrize("case", _inputs())
def test_golden(case: str) -> None:
    _, result = _run(case)
    got = _render(result)
    path = GOLDEN / f"{case}.injected.yaml"
    if REFRESH:
        path.write_text(got)
    assert path.exists(), f"no golden file for {case}; run with REFRESH_GOLDEN=1 and review it"
    assert got == path.read_text(), f"{path.name} differs; if intended, regenerate with REFRESH_GOLDEN=1"


def test_no_stale_goldens() -> None:
    inputs = set(_inputs())
    stale = [p.name for p in GOLDEN.glob("*.injected.yaml") if p.name[:-len(".injected.yaml")] not in inputs]
    assert not stale, f"stale golden files found: {stale}"
    assert set(CASES) <= inputs, f"CASES without an input file: {sorted(set(CASES) - inputs)}"


def test_goldens_cover_every_skip_reason() -> None:
    seen = {_run(case)[1].skip for case in _inputs()}
    assert seen - {None} == set(SKIP_REASONS), f"no golden case for {sorted(set(SKIP_REASONS) - seen)}"


# --- the JSON Patch must say exactly what the returned object says --------------------------------------------

def _unpointer(pointer: str) -> list[str]:
    assert pointer.startswith("/"), pointer
    return [p.replace("~1", "/").replace("~0", "~") for p in pointer[1:].split("/")]


def apply_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """A small RFC 6902 applier (add, remove, replace) written from the RFC, strict about missing parents."""
    doc = copy.deepcopy(doc)
    for op in ops:
        *parents, last = _unpointer(op["path"])
        target = doc
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] == "remove":
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            assert op["op"] == "add", op
            index = len(target) if last == "-" else int(last)
            assert 0 <= index <= len(target), f"{op['path']}: index out of range"
            target.insert(index, copy.deepcopy(op["value"]))
        else:
            assert op["op"] in ("add", "replace") and isinstance(target, dict), op
            target[last] = copy.deepcopy(op["value"])
    return doc


@pytest.mark.parametrize("case", _inputs())
def test_patch_turns_input_into_result(case: str) -> None:
    obj, result = _run(case)
    assert apply_patch(obj, result.patch) == result.obj
    assert json.loads(json.dumps(result.patch)) == result.patch  # plain JSON, ready for an AdmissionResponse


@pytest.mark.parametrize("case", _inputs())
def test_injecting_twice_changes_nothing(case: str) -> None:
    _, first = _run(case)
    _, second = _run(case, copy.deepcopy(first.obj))
    assert second.obj == first.obj and second.patch == []
    if first.injected:
        assert second.skip == "already_injected"


def test_pointer_escapes_tilde_before_slash() -> None:
    assert _pointer(["metadata", "annotations", "a~b/c~1"]) == "/metadata/annotations/a~0b~1c~01"
    assert _unpointer(_pointer(["x", "a~b/c~1"])) == ["x", "a~b/c~1"]


def test_patch_adds_missing_arrays_whole() -> None:
    obj, result = _run("odd-null-fields")
    null_arrays = ["/spec/template/spec/volumes", "/spec/template/spec/initContainers",
                   "/spec/template/spec/containers/0/env", "/spec/template/spec/containers/0/volumeMounts"]
    for array in null_arrays:
        first = next(op for op in result.patch if op["path"].startswith(array))
        assert first["path"] == array and isinstance(first["value"], list), f"{array}: {first}"


# --- random pod specs: the patch always matches, injection is idempotent, nothing raises -----------------------

_names = st.sampled_from(["app", "web", "pilot", "side-car", "a/b~c"])
_env = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["PILOT_SOCKET", "X", "HOME"]),
                                       "value": st.sampled_from(["/shared/pilot.sock", "/tmp/s", "1"])}), max_size=3)
_mounts = st.lists(st.fixed_dictionaries({"name": st.sampled_from(["pilot-shared", "data", "cfg"]),
                                          "mountPath": st.sampled_from(["/shared", "/data", "/etc/x"])}), max_size=2)
_container = st.fixed_dictionaries({"name": _names, "image": st.just("img:1")},
                                   optional={"env": st.one_of(st.none(), _env),
                                             "volumeMounts": st.one_of(st.none(), _mounts)})
_annotations = st.dictionaries(
    st.sampled_from(["pilot.io/inject", "pilot.io/transport", "pilot.io/native-sidecar", "pilot.io/containers",
                     "example.com/x~y"]),
    st.sampled_from(["true", "false", "udp", "compat", "auto", "app", "web,app", "bogus"]))
_pod = st.fixed_dictionaries({
    "kind": st.just("Pod"),
    "metadata": st.fixed_dictionaries({}, optional={"annotations": st.one_of(st.none(), _annotations)}),
    "spec": st.fixed_dictionaries({"containers": st.lists(_container, max_size=3)}, optional={
        "initContainers": st.one_of(st.none(), st.lists(_container, max_size=2)),
        "volumes": st.one_of(st.none(), st.lists(st.fixed_dictionaries({
            "name": st.sampled_from(["pilot-shared", "pilot-state", "data"]), "emptyDir": st.just({})}), max_size=2)),
        "hostNetwork": st.booleans(), "restartPolicy": st.sampled_from(["Always", "Never", "OnFailure"])}),
})


@settings(max_examples=300, deadline=None)
@given(pod=_pod, native=st.sampled_from(["auto", "always", "never"]), daemonset=st.booleans())
def test_random_pods_patch_matches_and_is_idempotent(pod: dict[str, Any], native: str, daemonset: bool) -> None:
    mesh = MeshSettings.from_spec({"mode": "daemonset" if daemonset else "sidecar",
                                   "daemon": {"nativeSidecar": native}})
    result = inject(pod, mesh, namespace="default", require_opt_in=False)
    assert (result.skip is None) == bool(result.patch)
    assert apply_patch(pod, result.patch) == result.obj
    again = inject(result.obj, mesh, namespace="default", require_opt_in=False)
    assert again.obj == result.obj and again.patch == []
    if result.injected:
        def pilots(p: dict[str, Any]) -> int:
            return [c["name"] for k in ("containers", "initContainers") for c in p["spec"].get(k) or []].count("pilot")
        assert pilots(result.obj) == (pilots(pod) if daemonset else 1)
