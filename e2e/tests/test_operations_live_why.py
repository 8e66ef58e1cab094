"""Tier 1: `pilotmesh why` names the right reason for each of thirteen live pods; `pilotmesh status` and the
operator's /metrics show the pods this module made. Operator and injector run as real processes."""
import base64
import re
import time
import urllib.request
import uuid

import pytest
from kubernetes import client

from pilotmesh_controlplane.local_pilotmesh import ensure_namespace
from ops_helpers import cli, cli_json, delete_mesh, fast_watchdog, get_mesh, patch_mesh, pod, scoped_mesh
from pilotmesh_controlplane.local_pilotmesh import wait_ready
from pilotmesh_operator import certs

pytestmark = pytest.mark.kube
INJECT = {"pilot.io/inject": "true"}
IMAGE = "registry.invalid/pilot-daemon:ops"


@pytest.fixture(scope="module")
def world(pilotmesh):
    api, core = pilotmesh.api, client.CoreV1Api(pilotmesh.api)
    with fast_watchdog(pilotmesh):
        mesh, label = scoped_mesh(api, "why", daemon={"image": IMAGE})
        tag = uuid.uuid4().hex[:6]
        ns = {"a": ensure_namespace(api, f"why-a-{tag}", labels=label),
              "other": ensure_namespace(api, f"why-b-{tag}"),
              "auto": ensure_namespace(api, f"why-c-{tag}", labels={**label, "pilot.io/inject": "true"}),
              "late": ensure_namespace(api, f"why-d-{tag}")}
        # created while no mesh selects its namespace: admitted without the daemon
        core.create_namespaced_pod(ns["late"], pod("early", labels=INJECT))
        wait_ready(api, mesh)
        a = ns["a"]
        shared = {"name": "data", "emptyDir": {}}
        for name, obj in {
            "injected": pod("injected", INJECT), "outdated": pod("outdated", INJECT), "plain": pod("plain"),
            "invalid": pod("invalid", {"pilot.io/inject": "yes"}), "optout": pod("optout", {"pilot.io/inject": "false"}),
            "hostnet": pod("hostnet", INJECT, hostNetwork=True),
            "onlypilot": {**pod("onlypilot", INJECT), "spec": {"containers": [{"name": "pilot", "image": "x.invalid/p:1"}]}},
            "mount": {**pod("mount", INJECT), "spec": {"volumes": [shared], "containers": [
                {"name": "app", "image": "x.invalid/a:1", "volumeMounts": [{"name": "data", "mountPath": "/shared"}]}]}},
        }.items():
            core.create_namespaced_pod(a, obj)
        core.create_namespaced_pod(ns["other"], pod("elsewhere", INJECT))
        core.create_namespaced_pod(ns["auto"], pod("nslevel"))
        core.patch_namespace(ns["late"], {"metadata": {"labels": label}})
        yield pilotmesh, mesh, ns
        delete_mesh(api, mesh)


def _why(stack, ns, name):
    return cli_json("why", f"{ns}/{name}", f"--kubeconfig={stack.kube.kubeconfig}")


def _codes(result):
    return {c["reason"] for c in result["checks"] if c["status"] in ("fail", "warn")}


EXPECTED = [  # (namespace key, pod, state, a reason code that must be named, or None for a clean bill)
    ("a", "injected", "injected", None),
    ("a", "plain", "not-injected", "annotation_absent"),
    ("a", "invalid", "not-injected", "invalid_annotation"),
    ("a", "optout", "not-injected", "injection_disabled"),
    ("a", "onlypilot", "not-injected", "no_containers"),
    ("a", "mount", "not-injected", "mount_conflict"),
    ("other", "elsewhere", "not-injected", "no_mesh"),
    ("auto", "nslevel", "injected", None),
    ("late", "early", "not-injected", "uninjected"),
]


def test_why_names_the_reason_for_each_pod(world):
    stack, mesh, ns = world
    for key, name, state, code in EXPECTED:
        result = _why(stack, ns[key], name)
        assert result["state"] == state, (name, result)
        if code is None:
            assert not _codes(result) and result["mesh"] == mesh, (name, result["checks"])
            assert {c["topic"] for c in result["checks"]} >= {"webhook", "certificate", "injector", "daemon"}
        else:
            assert code in _codes(result), (name, result["checks"])
    hostnet = _why(stack, ns["a"], "hostnet")
    assert hostnet["state"] == "injected" and "host_network" in {c["reason"] for c in hostnet["checks"]}
    code, out, _ = cli("why", "plain", "-n", ns["a"], f"--kubeconfig={stack.kube.kubeconfig}")
    assert code == 0 and out.startswith(f"{ns['a']}/plain: NOT injected: pilot.io/inject is not")


def test_status_metrics_and_watchdog_count_this_modules_pods(world):
    stack, mesh, ns = world
    stack.wait("watchdog counted the early pod", lambda: get_mesh(stack.api, mesh).get("status", {}).get(
        "uninjectedPods") == 1, 30)
    rep = cli_json("status", f"--kubeconfig={stack.kube.kubeconfig}")
    mine = next(m for m in rep["meshes"] if m["name"] == mesh)
    assert mine["webhook"]["present"] and mine["webhook"]["caBundleMatchesSecret"] and mine["webhook"]["injectorReady"]
    assert mine["pods"]["injectedPods"] == 4 and mine["pods"]["uninjectedPods"] == 1   # injected, outdated, hostnet, nslevel
    assert mine["pods"]["udpPods"] == 4 and mine["ready"]
    assert rep["certificate"]["servingSecondsLeft"] > 0 and not rep["certificate"]["problems"]
    url = f"http://127.0.0.1:{stack.operator_metrics_port}/metrics"

    def scraped():
        text = urllib.request.urlopen(url, timeout=3).read().decode()
        got = {m.group(1): float(m.group(2)) for m in re.finditer(
            rf'pilotmesh_mesh_pods{{mesh="{mesh}",state="(\w+)"}} ([\d.]+)', text)}
        cert = re.search(r'pilotmesh_operator_certificate_expiry_timestamp_seconds{certificate="serving"} \d', text)
        return got == {"injected": 4.0, "outdated": 0.0, "uninjected": 1.0} and cert and text
    text = stack.wait("operator metrics", scraped, 30)
    assert re.search(rf'pilotmesh_mesh_condition{{mesh="{mesh}",type="Ready"}} 1.0', text)
    events = client.CoreV1Api(stack.api).list_namespaced_event(ns["late"]).items
    assert any(e.reason == "PodWithoutDaemon" and e.involved_object.name == "early" for e in events)


def test_a_new_daemon_image_marks_running_pods_outdated_without_restarting_them(world):
    stack, mesh, ns = world
    patch_mesh(stack.api, mesh, {"daemon": {"image": IMAGE + "-2"}})
    result = _why(stack, ns["a"], "outdated")
    assert result["state"] == "outdated" and "outdated" in _codes(result)
    assert any(IMAGE + "-2" in c["message"] for c in result["checks"] if c["reason"] == "outdated")
    stack.wait("outdated counted", lambda: get_mesh(stack.api, mesh).get("status", {}).get("outdatedPods") == 4, 30)
    time.sleep(1)
    assert client.CoreV1Api(stack.api).read_namespaced_pod("outdated", ns["a"]).metadata.deletion_timestamp is None


def test_a_broken_webhook_path_is_named(world):
    stack, mesh, ns = world
    admission = client.AdmissionregistrationV1Api(stack.api)
    name = f"pilotmesh-{mesh}"
    other_ca = base64.b64encode(certs.plan(None, ("x.invalid",), certs.dt.datetime.now(certs.dt.timezone.utc)).data[
        "ca.crt"]).decode()
    admission.patch_mutating_webhook_configuration(name, [
        {"op": "replace", "path": f"/webhooks/{i}/clientConfig/caBundle", "value": other_ca} for i in (0, 1)])
    codes = _codes(_why(stack, ns["a"], "injected"))
    assert {"ca_bundle_mismatch", "injector_unreachable"} <= codes, codes   # the injector fails TLS verification too
    admission.delete_mutating_webhook_configuration(name)
    assert "webhook_missing" in _codes(_why(stack, ns["a"], "injected"))
    patch_mesh(stack.api, mesh, {"webhook": {"timeoutSeconds": 6}})            # a reconcile restores it
    stack.wait("webhook configuration restored", lambda: _codes(_why(stack, ns["auto"], "nslevel")) == {"outdated"}, 30)
