"""`pilotmesh status` as a pure function of what was read: per mesh its webhook path, pods and conditions,
and the injector certificate."""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from . import certinfo, desired
from .injector.snapshot import Snapshot
from .podcounts import pod_counts

WARN_BEFORE = dt.timedelta(days=7)


@dataclasses.dataclass(frozen=True)
class MeshFacts:
    mesh: Mapping[str, Any]                       # the PilotMesh object (with status)
    configuration: Mapping[str, Any] | None       # its MutatingWebhookConfiguration
    injector: tuple[bool, str]                    # probe through that configuration


def owned_namespaces(snapshot: Snapshot, mesh_name: str) -> set[str]:
    return {ns for ns in snapshot.namespaces if (c := snapshot.mesh_for(ns)) is not None and c.name == mesh_name}


def _mesh_report(f: MeshFacts, snapshot: Snapshot, pods: list[Mapping[str, Any]], bundle: bytes | None) -> dict:
    meta, spec, status = f.mesh.get("metadata") or {}, f.mesh.get("spec") or {}, f.mesh.get("status") or {}
    name = meta.get("name")
    conditions = [c for c in status.get("conditions") or [] if isinstance(c, Mapping)]
    ready = next((c.get("status") == "True" for c in conditions if c.get("type") == "Ready"), False)
    # a problem: any condition not True, except Conflict, which is one when True
    problems = [f"{c['type']}={c.get('status')}: {c.get('message', '')}" for c in conditions
                if (c.get("type") == "Conflict") == (c.get("status") == "True")]
    hooks = [w for w in (f.configuration or {}).get("webhooks") or [] if isinstance(w, Mapping)]
    published = {base64.b64decode((w.get("clientConfig") or {}).get("caBundle") or "") for w in hooks}
    matches = bool(hooks) and bundle is not None and published == {bundle}
    if f.configuration is None:
        problems.append(f"MutatingWebhookConfiguration {desired.webhook_name(str(name))} is missing: pods are not "
                        "injected")
    elif not matches:
        problems.append("the webhook caBundle does not match the injector Secret: the apiserver cannot call the "
                        "injector")
    if not f.injector[0]:
        problems.append(f"injector: {f.injector[1]}")
    image = (spec.get("daemon") or {}).get("image", "")
    counts = pod_counts(pods, image, owned_namespaces(snapshot, str(name)))
    return {
        "name": name, "ready": ready, "mode": spec.get("mode"), "transport": spec.get("transport"), "image": image,
        "webhook": {"name": desired.webhook_name(str(name)), "present": f.configuration is not None,
                    "caBundleMatchesSecret": matches,
                    "failurePolicy": hooks[0].get("failurePolicy") if hooks else None,
                    "injectorReady": f.injector[0], "injector": f.injector[1]},
        "pods": {**counts, "uninjectedPods": status.get("uninjectedPods", 0)},
        "conditions": [{k: c.get(k) for k in ("type", "status", "reason", "message")} for c in conditions],
        "problems": problems,
    }


def report(facts: Iterable[MeshFacts], snapshot: Snapshot, pods: Iterable[Mapping[str, Any]],
           secret: Mapping[str, bytes] | None, now: dt.datetime) -> dict[str, Any]:
    pods = list(pods)
    cert = certinfo.summarize(secret, now, WARN_BEFORE)
    bundle = (secret or {}).get("ca-bundle.crt")
    meshes = [_mesh_report(f, snapshot, pods, bundle) for f in facts]
    return {"healthy": bool(meshes) and not cert.problems and all(m["ready"] and not m["problems"] for m in meshes),
            "meshes": meshes, "certificate": cert.to_dict(now)}


def render_text(rep: Mapping[str, Any]) -> str:
    lines = []
    for m in rep["meshes"]:
        w, p = m["webhook"], m["pods"]
        lines.append(f"PilotMesh {m['name']}: {'Ready' if m['ready'] else 'NOT ready'} (mode {m['mode']}, transport "
                     f"{m['transport']}, daemon {m['image']})")
        lines.append(f"  webhook {w['name']}: " + ("missing" if not w["present"] else
                     f"failurePolicy {w['failurePolicy']}, caBundle "
                     f"{'matches' if w['caBundleMatchesSecret'] else 'DOES NOT match'} the Secret"))
        lines.append(f"  injector: {'ready' if w['injectorReady'] else 'NOT ready'}: {w['injector']}")
        lines.append(f"  pods: {p['injectedPods']} injected ({p['udpPods']} udp, {p['compatPods']} compat), "
                     f"{p['outdatedPods']} outdated, {p['uninjectedPods']} opted in without the daemon")
        lines.append("  conditions: " + ", ".join(f"{c['type']}={c['status']}" for c in m["conditions"]))
        lines += [f"  problem: {x}" for x in m["problems"]]
    if not rep["meshes"]:
        lines.append("no PilotMesh exists: nothing is injected (kubectl apply a PilotMesh)")
    c = rep["certificate"]
    left = c["servingSecondsLeft"]
    lines.append(f"certificate: serving until {c['servingNotAfter']}"
                 + (f" ({left // 86400}d {left % 86400 // 3600}h left)" if left is not None and left > 0 else "")
                 + f", CA until {c['caNotAfter']}, {c['bundleCAs']} CA(s) in the bundle"
                 + (" (CA rotation in progress)" if c["caRotationInProgress"] else ""))
    lines += [f"  problem: {x}" for x in c["problems"]]
    lines.append("healthy" if rep["healthy"] else "NOT healthy")
    return "\n".join(lines) + "\n"
