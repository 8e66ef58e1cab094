"""Tier 1: the watchdog finds a Deployment's pod admitted without the daemon (created before any mesh
selected its namespace), reports it, and with spec.watchdog.restart restarts the Deployment once."""
import json
import time
import uuid

import pytest
from kubernetes import client

from pilotmesh_controlplane.local_pilotmesh import ensure_namespace
from ops_helpers import delete_mesh, fast_watchdog, get_mesh, patch_mesh, scoped_mesh
from pilotmesh_controlplane.local_pilotmesh import wait_ready

pytestmark = pytest.mark.kube
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"


def _deployment(name):
    labels = {"app": name, "pilot.io/inject": "true"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]}}}}


def _pods(api, ns):
    return [p for p in client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app=web").items
            if not p.metadata.deletion_timestamp]


def _restarted_at(api, ns):
    tpl = client.AppsV1Api(api).read_namespaced_deployment("web", ns).spec.template
    return (tpl.metadata.annotations or {}).get(RESTARTED_AT)


def test_uninjected_pod_is_reported_then_its_deployment_restarted_once(pilotmesh):
    stack, api = pilotmesh, pilotmesh.api
    with fast_watchdog(stack):
        ns = ensure_namespace(api, f"wd-{uuid.uuid4().hex[:6]}")
        client.AppsV1Api(api).create_namespaced_deployment(ns, _deployment("web"))
        bare = stack.wait("pod admitted without a mesh", lambda: _pods(api, ns), 30)[0]
        assert not (bare.metadata.annotations or {}).get("pilot.io/status")
        mesh, label = scoped_mesh(api, "wd", daemon={"image": "registry.invalid/pilot-daemon:wd"})
        try:
            client.CoreV1Api(api).patch_namespace(ns, {"metadata": {"labels": label}})
            wait_ready(api, mesh)
            stack.wait("uninjectedPods == 1", lambda: get_mesh(api, mesh).get("status", {}).get("uninjectedPods") == 1)
            events = stack.wait("PodWithoutDaemon on the Deployment", lambda: [
                e for e in client.CoreV1Api(api).list_namespaced_event(ns).items
                if e.reason == "PodWithoutDaemon" and e.involved_object.kind == "Deployment"], 20)
            assert bare.metadata.name in events[0].message
            time.sleep(4.5)                                              # two more rounds, restart still off
            assert _restarted_at(api, ns) is None and _pods(api, ns)[0].metadata.name == bare.metadata.name

            patch_mesh(api, mesh, {"watchdog": {"restart": True}})
            first = stack.wait("Deployment restarted", lambda: _restarted_at(api, ns), 30)
            injected = stack.wait("a new pod with the daemon", lambda: [
                p for p in _pods(api, ns) if (p.metadata.annotations or {}).get("pilot.io/status")], 60)
            assert json.loads(injected[0].metadata.annotations["pilot.io/status"])["image"].endswith(":wd")
            stack.wait("uninjectedPods == 0", lambda: get_mesh(api, mesh)["status"].get("uninjectedPods") == 0, 60)
            assert any(e.reason == "RestartedByWatchdog" for e in client.CoreV1Api(api).list_namespaced_event(ns).items)
            time.sleep(4.5)
            assert _restarted_at(api, ns) == first, "restarted once, not in a loop"
        finally:
            delete_mesh(api, mesh)
