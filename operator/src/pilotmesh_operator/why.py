"""`pilotmesh why`: whether a pod is (or would be) injected, with every reason, as a pure function.

The decision itself is the injector's: the pod goes through `admission.review()` as a CREATE against a
Snapshot (the same mesh choice, NetworkPolicy verdict and `inject()` skips). Around it, facts only the
cluster holds are checked: the mesh's webhook configuration (would the apiserver call it for this pod:
`webhookmatch`), its caBundle against the Secret, the injector's readiness, mesh conflicts, and for a
running pod whether it carries the daemon and whether that daemon is outdated.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import uuid
from collections.abc import Mapping
from typing import Any

from pilot_daemon import contract

from . import __version__, desired
from .injector.admission import review
from .injector.snapshot import MeshChoice, Snapshot
from .render.inject import SKIP_REASONS
from .render.netpol import analyze
from .status import conflicts
from .webhookmatch import webhook_match

OK, FAIL, WARN, INFO = "ok", "fail", "warn", "info"
OPT_OUT_SKIPS = ("annotation_absent", "injection_disabled", "invalid_annotation")


@dataclasses.dataclass(frozen=True)
class Check:
    topic: str          # mesh, opt-in, pod, webhook, certificate, injector, transport, daemon
    status: str         # ok | fail | warn | info
    message: str
    reason: str = ""    # a SKIP_REASONS key or one of ours (no_mesh, mesh_conflict, webhook_missing, ...)


@dataclasses.dataclass(frozen=True)
class WebhookFacts:
    """What the cluster says about the mesh's webhook path (live mode only)."""

    configuration: Mapping[str, Any] | None     # the mesh's MutatingWebhookConfiguration; None: absent
    secret_bundle: bytes | None                 # ca-bundle.crt of the injector Secret; None: absent
    injector: tuple[bool, str]                  # (ready, what the probe saw)


@dataclasses.dataclass
class Explanation:
    pod: str
    state: str                  # injected | outdated | not-injected | would-inject | would-not-inject
    mesh: str | None
    transport: str | None
    checks: list[Check]
    verdict: dict[str, Any] | None = None

    @property
    def injected(self) -> bool:
        return self.state in ("injected", "outdated", "would-inject")

    def headline(self) -> str:
        first_fail = next((c.message for c in self.checks if c.status == FAIL), "")
        by = f" by PilotMesh {self.mesh}" if self.mesh else ""
        transport = f", transport {self.transport}" if self.transport else ""
        return {
            "injected": f"{self.pod}: injected{by}{transport}",
            "outdated": f"{self.pod}: injected{by}{transport}, but its daemon is outdated",
            "would-inject": f"{self.pod}: would be injected{by}{transport}",
            "not-injected": f"{self.pod}: NOT injected: {first_fail}",
            "would-not-inject": f"{self.pod}: would NOT be injected: {first_fail}",
        }[self.state]

    def to_dict(self) -> dict[str, Any]:
        return {"pod": self.pod, "state": self.state, "injected": self.injected, "mesh": self.mesh,
                "transport": self.transport, "summary": self.headline(),
                "checks": [dataclasses.asdict(c) for c in self.checks], "verdict": self.verdict}


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _admission(pod: Mapping[str, Any], namespace: str) -> bytes:
    return json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()), "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"}, "operation": "CREATE",
        "namespace": namespace, "object": pod, "dryRun": True}}).encode()


def _patched_annotation(response: Mapping[str, Any], key: str) -> str | None:
    """An annotation the injector's JSON patch sets (whole-map add or per-key add)."""
    raw = (response.get("response") or {}).get("patch")
    for op in json.loads(base64.b64decode(raw)) if raw else []:
        if op.get("path") == "/metadata/annotations" and isinstance(op.get("value"), Mapping):
            if key in op["value"]:
                return op["value"][key]
        elif op.get("path") == "/metadata/annotations/" + key.replace("~", "~0").replace("/", "~1"):
            return op.get("value")
    return None


def _opt_in_source(pod: Mapping[str, Any], namespace: str, ns_labels: Mapping[str, str]) -> str:
    meta = _meta(pod)
    if (meta.get("annotations") or {}).get(contract.ANNOTATION_INJECT) == "true":
        return f'annotation {contract.ANNOTATION_INJECT}="true" on the pod'
    if (meta.get("labels") or {}).get(contract.LABEL_INJECT) == "true":
        return f"label {contract.LABEL_INJECT}=true on the pod"
    if ns_labels.get(contract.LABEL_INJECT) == "true":
        return f"label {contract.LABEL_INJECT}=true on namespace {namespace}"
    return "pilotmesh inject"


def _mesh_checks(choice: MeshChoice | None, namespace: str, snapshot: Snapshot) -> list[Check]:
    if choice is None:
        labels = ", ".join(f"{k}={v}" for k, v in sorted(snapshot.namespace_labels(namespace).items()))
        names = ", ".join(str(_meta(m).get("name")) for m in snapshot.meshes) or "none exists"
        return [Check("mesh", FAIL, f"no PilotMesh selects namespace {namespace} (labels: {labels}; "
                                    f"PilotMeshes: {names})", "no_mesh")]
    if choice.settings is None:
        return [Check("mesh", FAIL, str(choice.error), "invalid_mesh")]
    s = choice.settings
    out = [Check("mesh", OK, f"PilotMesh {choice.name} selects namespace {namespace} "
                             f"(mode {s.mode}, transport policy {s.transport})")]
    if choice.shadowed:
        out.append(Check("mesh", WARN, f"newer PilotMesh(es) {', '.join(choice.shadowed)} also select namespace "
                                       f"{namespace}; they report Conflict and {choice.name} injects here",
                         "mesh_shadowed"))
    mesh_obj = next(m for m in snapshot.meshes if _meta(m).get("name") == choice.name)
    clash = conflicts(mesh_obj, snapshot.meshes, snapshot.namespaces.values())
    if clash:
        text = "; ".join(f"older PilotMesh {m} already selects {', '.join(sorted(ns))}"
                         for m, ns in sorted(clash.items()))
        out.append(Check("mesh", FAIL, f"PilotMesh {choice.name} is in Conflict ({text}): it injects nothing and its "
                                       "webhook configuration is removed; narrow its namespaceSelector",
                         "mesh_conflict"))
    return out


def _webhook_checks(facts: WebhookFacts, choice: MeshChoice, pod: Mapping[str, Any], namespace: str,
                    snapshot: Snapshot, expect_call: bool) -> list[Check]:
    name = desired.webhook_name(choice.name)
    mwc = facts.configuration
    if mwc is None:
        return [Check("webhook", FAIL, f"MutatingWebhookConfiguration {name} does not exist: the operator has not "
                                       f"reconciled PilotMesh {choice.name} (is it running? kubectl get pilotmesh "
                                       f"{choice.name} -o yaml)", "webhook_missing")]
    out: list[Check] = []
    hooks = [w for w in mwc.get("webhooks") or [] if isinstance(w, Mapping)]
    matches = [webhook_match(w, pod, snapshot.namespace_labels(namespace)) for w in hooks]
    called = [m for m in matches if m.called]
    if called:
        out.append(Check("webhook", OK, f"the apiserver calls webhook {called[0].name} of {name}"))
    elif any(m.called is None for m in matches):
        out.append(Check("webhook", WARN, "; ".join(f"{m.name}: {m.reason}" for m in matches), "selector_unknown"))
    elif expect_call:
        out.append(Check("webhook", FAIL, f"selector mismatch: the apiserver calls no webhook of {name} for this pod ("
                                          + "; ".join(f"{m.name}: {m.reason}" for m in matches) + ")",
                         "selector_mismatch"))
    else:
        out.append(Check("webhook", INFO, f"the apiserver calls no webhook of {name} for this pod (as expected)"))
    bundles = {base64.b64decode((w.get("clientConfig") or {}).get("caBundle") or "") for w in hooks}
    if facts.secret_bundle is None:
        out.append(Check("certificate", FAIL, f"the Secret {desired.TLS_SECRET} with the injector's certificate is "
                                              "missing; the operator creates it on its next reconcile",
                         "certificate_missing"))
    elif bundles != {facts.secret_bundle}:
        out.append(Check("certificate", FAIL, f"the caBundle of {name} does not match ca-bundle.crt in Secret "
                                              f"{desired.TLS_SECRET}: the apiserver will not trust the injector "
                                              "(did GitOps or Helm overwrite it? let the operator own the field)",
                         "ca_bundle_mismatch"))
    else:
        out.append(Check("certificate", OK, f"the caBundle of {name} matches Secret {desired.TLS_SECRET}"))
    ready, seen = facts.injector
    policy = (hooks[0].get("failurePolicy") if hooks else None) or "Fail"
    if ready:
        out.append(Check("injector", OK, seen))
    else:
        effect = ("pod creation in this namespace is refused" if policy == "Fail"
                  else "pods are created without the daemon (the watchdog reports them)")
        out.append(Check("injector", FAIL, f"{seen}; failurePolicy {policy}: {effect}", "injector_unreachable"))
    return out


def injection_status(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The pod's pilot.io/status annotation as a dict ({} when absent or unreadable)."""
    try:
        status = json.loads((_meta(pod).get("annotations") or {}).get(contract.ANNOTATION_STATUS) or "{}")
    except ValueError:
        return {}
    return status if isinstance(status, dict) else {}


def _daemon_check(pod: Mapping[str, Any], choice: MeshChoice | None) -> Check:
    annotations = _meta(pod).get("annotations") or {}
    status = injection_status(pod)
    if choice is None or choice.settings is None or status.get("mode") == "daemonset":
        return Check("daemon", INFO,
                     f"injected by pilotmesh {status.get('version', '?')} ({status.get('mode', '?')} mode)")
    want = annotations.get(contract.ANNOTATION_IMAGE) or choice.settings.image
    have = status.get("image")
    if have and have != want:
        return Check("daemon", WARN, f"daemon image {have} differs from {want} (PilotMesh {choice.name}): outdated; "
                                     "restart its owner (kubectl rollout restart) to upgrade", "outdated")
    return Check("daemon", OK, f"daemon image {have} is current (injected by pilotmesh {status.get('version', '?')}, "
                               f"this is {__version__})")


def _transport_check(pod: Mapping[str, Any], snapshot: Snapshot, choice: MeshChoice) -> tuple[Check, dict | None]:
    """For a running injected pod: its transport, and the verdict its policies give now."""
    annotations = _meta(pod).get("annotations") or {}
    have = annotations.get(contract.ANNOTATION_TRANSPORT)
    why = annotations.get(contract.ANNOTATION_TRANSPORT_REASON) or "no reason recorded"
    verdict = None
    if choice.settings is not None and choice.settings.mode == "sidecar" and \
            injection_status(pod).get("transportPolicy") == "auto":
        try:
            verdict = analyze(dict(pod), snapshot.namespaces.values(), snapshot.policies,
                              snapshot.analyzer_settings(choice.settings))
        except ValueError:
            verdict = None
    if verdict is not None and verdict.transport != have:
        return (Check("transport", WARN, f"transport {have} ({why}); the NetworkPolicies now say {verdict.summary()}",
                      "transport_stale"), verdict.to_dict())
    return Check("transport", OK if have else INFO, f"transport {have or 'none'}: {why}"), (
        verdict.to_dict() if verdict else None)


def explain(pod: Mapping[str, Any], namespace: str, snapshot: Snapshot, facts: WebhookFacts | None = None,
            *, live: bool = False) -> Explanation:
    """Everything that decides injection for ``pod`` in ``namespace``. ``facts``: the cluster's webhook
    path (None offline). ``live``: the pod exists (it is or is not injected, rather than would be)."""
    meta = {**_meta(pod), "namespace": namespace}
    pod = {**pod, "metadata": meta}
    ref = f"{namespace}/{meta.get('name') or meta.get('generateName') or '?'}"
    body, outcome = review(_admission(pod, namespace), snapshot)
    choice = snapshot.mesh_for(namespace)
    checks = _mesh_checks(choice, namespace, snapshot)
    ns_labels = snapshot.namespace_labels(namespace)
    reason = outcome.reason
    verdict = outcome.verdict.to_dict() if outcome.verdict is not None else None
    if reason in OPT_OUT_SKIPS:
        checks.append(Check("opt-in", FAIL, outcome.message, reason))
    elif reason not in ("no_mesh", "invalid_mesh", "malformed"):
        checks.append(Check("opt-in", OK, f"opted in by {_opt_in_source(pod, namespace, ns_labels)}"))
    if reason in SKIP_REASONS and reason not in OPT_OUT_SKIPS and reason != "already_injected":
        checks.append(Check("pod", FAIL, outcome.message, reason))
    if (pod.get("spec") or {}).get("hostNetwork"):
        checks.append(Check("pod", INFO, "hostNetwork pod: injected all the same; NetworkPolicy does not apply to it, "
                                         "so the transport verdict ignores policies", "host_network"))
    already = reason == "already_injected"
    expect_call = outcome.result == "injected" or already
    if facts is not None and choice is not None and choice.settings is not None:
        checks += _webhook_checks(facts, choice, pod, namespace, snapshot, expect_call)
    transport = None
    if already and choice is not None:
        checks.append(_daemon_check(pod, choice))
        check, verdict = _transport_check(pod, snapshot, choice)
        checks.append(check)
        transport = (meta.get("annotations") or {}).get(contract.ANNOTATION_TRANSPORT)
    elif already:
        checks.append(Check("pod", INFO, "already injected (pilot.io/status is set)", reason))
    elif outcome.result == "injected":
        transport = outcome.transport
        why = outcome.verdict.summary() if outcome.verdict is not None else _patched_annotation(
            body, contract.ANNOTATION_TRANSPORT_REASON)
        if transport:
            checks.append(Check("transport", OK, f"transport {transport}: {why}"))
        if live:
            checks.append(Check("pod", FAIL, "the pod runs without the daemon although it is opted in: it was admitted "
                                             "while the webhook was unreachable or before the mesh selected its "
                                             "namespace; restart its owner (kubectl rollout restart) or set "
                                             "spec.watchdog.restart: true", "uninjected"))
    failed = any(c.status == FAIL for c in checks)
    if already:
        state = "outdated" if any(c.reason == "outdated" for c in checks) else "injected"
    elif live:
        state = "not-injected"
    else:
        state = "would-inject" if outcome.result == "injected" and not failed else "would-not-inject"
    return Explanation(ref, state, choice.name if choice else None, transport, checks, verdict)


def render_text(explanations: list[Explanation]) -> str:
    marks = {OK: "[ok]  ", FAIL: "[FAIL]", WARN: "[warn]", INFO: "[info]"}
    lines = []
    for e in explanations:
        lines.append(e.headline())
        for c in e.checks:
            code = f" ({c.reason})" if c.reason else ""
            lines.append(f"  {marks[c.status]} {c.topic}: {c.message}{code}")
        for r in (e.verdict or {}).get("reasons") or []:
            lines.append(f"         policy: {r}")
    return "\n".join(lines) + "\n"
