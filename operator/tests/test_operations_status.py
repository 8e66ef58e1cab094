"""`pilotmesh status` and the certificate summary as pure functions of what was read."""
import base64
import datetime as dt
import json

from pilotmesh_operator import certs, desired
from pilotmesh_operator.certinfo import summarize
from pilotmesh_operator.injector.snapshot import Snapshot
from pilotmesh_operator.mesh import MeshSettings
from pilotmesh_operator.statusreport import MeshFacts, render_text, report

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
NAMES = ("127.0.0.1",)
IMAGE = "registry.invalid/pilot-daemon:2"
URL = desired.OperatorSettings(webhook_url="https://127.0.0.1:8443/inject")


def _mesh(name, created, selector=None, conditions=(), **status):
    spec = {"daemon": {"image": IMAGE}, "mode": "sidecar", "transport": "auto"}
    if selector:
        spec["namespaceSelector"] = selector
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec,
            "status": {"conditions": [{"type": t, "status": s, "message": m} for t, s, m in conditions], **status}}


def _pod(ns, image, transport):
    return {"metadata": {"namespace": ns, "annotations": {
        "pilot.io/status": json.dumps({"image": image}), "pilot.io/transport": transport}}, "status": {"phase": "Running"}}


def test_certificate_summary_names_expiry_rotation_and_problems():
    data = certs.plan(None, NAMES, T0).data
    s = summarize(data, T0 + dt.timedelta(days=1), dt.timedelta(days=7))
    assert s.serving_not_after == T0 + certs.LEAF_LIFETIME and s.bundle_cas == 1 and not s.problems
    assert s.to_dict(T0)["servingSecondsLeft"] == int(certs.LEAF_LIFETIME.total_seconds())
    late = summarize(data, T0 + certs.LEAF_LIFETIME - dt.timedelta(days=1), dt.timedelta(days=7))
    assert "expires soon" in late.problems[0]
    assert "expired" in summarize(data, T0 + certs.LEAF_LIFETIME, dt.timedelta(0)).problems[0]
    other = certs.plan(None, NAMES, T0).data
    assert "not issued by ca.crt" in summarize({**data, "ca.crt": other["ca.crt"]}, T0, dt.timedelta(0)).problems[0]
    assert summarize(None, T0, dt.timedelta(0)).problems == ("the injector Secret does not exist",)


def test_report_counts_each_meshs_own_pods_and_names_what_is_wrong():
    data = certs.plan(None, NAMES, T0).data
    good = _mesh("a", "2026-01-01T00:00:00Z", {"matchLabels": {"team": "a"}},
                 [("Ready", "True", "ok"), ("Conflict", "False", "")], uninjectedPods=1)
    bad = _mesh("b", "2026-01-02T00:00:00Z", {"matchLabels": {"team": "b"}}, [("Ready", "False", "injector down")])
    snap = Snapshot.build([good, bad], [{"metadata": {"name": "na", "labels": {"team": "a"}}},
                                        {"metadata": {"name": "nb", "labels": {"team": "b"}}}], [])
    settings = MeshSettings.from_spec({"daemon": {"image": IMAGE}})
    mwc = desired.webhook_configuration("a", settings, data["ca-bundle.crt"], URL)
    stale = desired.webhook_configuration("b", settings, b"stale", URL)
    pods = [_pod("na", IMAGE, "udp"), _pod("na", "old:1", "compat"), _pod("nb", IMAGE, "udp")]
    rep = report([MeshFacts(good, mwc, (True, "ready")), MeshFacts(bad, stale, (False, "connection refused"))],
                 snap, pods, data, T0)
    a, b = rep["meshes"]
    assert a["pods"] == {"injectedPods": 2, "outdatedPods": 1, "udpPods": 1, "compatPods": 1, "uninjectedPods": 1}
    assert a["webhook"]["caBundleMatchesSecret"] and a["problems"] == [] and a["ready"]
    assert b["pods"]["injectedPods"] == 1 and not b["webhook"]["caBundleMatchesSecret"]
    assert any("injector down" in p for p in b["problems"]) and any("caBundle" in p for p in b["problems"])
    assert not rep["healthy"] and rep["certificate"]["bundleCAs"] == 1
    text = render_text(rep)
    assert "PilotMesh a: Ready" in text and "PilotMesh b: NOT ready" in text and "DOES NOT match" in text
    assert "2 injected (1 udp, 1 compat), 1 outdated, 1 opted in without the daemon" in text
    assert base64.b64decode(mwc["webhooks"][0]["clientConfig"]["caBundle"]) == data["ca-bundle.crt"]


def test_no_mesh_is_not_healthy_and_says_so():
    rep = report([], Snapshot.build([], [], []), [], None, T0)
    assert not rep["healthy"] and "no PilotMesh exists" in render_text(rep)
