"""Which compiler reads which object: dispatch on apiVersion group and kind, never raising.

A malformed object becomes a low-confidence note naming it; an unknown policy-like kind does too;
ordinary objects (ConfigMaps, Services, Deployments...) are skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from . import anp, calico, cilium, core
from .engine import TierInfo
from .model import Note, Policy, PolicyInputError

CALICO_GROUPS = ("projectcalico.org", "crd.projectcalico.org")
Compiler = Callable[[dict, "str | None", str, str], list[Policy]]

COMPILERS: dict[tuple[str, str], tuple[Compiler, bool]] = {  # (group, kind) -> (compiler, namespaced)
    ("networking.k8s.io", "NetworkPolicy"): (lambda o, ns, n, k: [core.compile_networkpolicy(o, ns, n)], True),
    ("cilium.io", "CiliumNetworkPolicy"): (cilium.compile_cilium, True),
    ("cilium.io", "CiliumClusterwideNetworkPolicy"): (cilium.compile_cilium, False),
    ("policy.networking.k8s.io", "AdminNetworkPolicy"): (anp.compile_anp, False),
    ("policy.networking.k8s.io", "BaselineAdminNetworkPolicy"): (anp.compile_anp, False),
}
for _g in CALICO_GROUPS:
    COMPILERS[(_g, "NetworkPolicy")] = (calico.compile_calico, True)
    COMPILERS[(_g, "GlobalNetworkPolicy")] = (calico.compile_calico, False)
STAGED = {"StagedNetworkPolicy", "StagedGlobalNetworkPolicy", "StagedKubernetesNetworkPolicy"}
PLAIN_GROUPS = {"", "apps", "batch", "autoscaling", "rbac.authorization.k8s.io", "policy", "storage.k8s.io"}


@dataclass
class Compiled:
    """What one input object contributed: policies, tiers, and notes (scoped to `namespace`, None = all)."""

    policies: list[Policy] = field(default_factory=list)
    tiers: list[TierInfo] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    namespace: str | None = None


def group_of(obj: dict) -> str:
    api = obj.get("apiVersion")
    return api.rsplit("/", 1)[0] if isinstance(api, str) and "/" in api else ""


def compile_object(obj: Any, default_namespace: str) -> Compiled:
    """Compile one object as the apiserver (or a YAML file) gives it."""
    if not isinstance(obj, dict):
        return Compiled(notes=[Note("low", f"an input object is a {type(obj).__name__}, not a mapping: ignored")])
    kind, group = obj.get("kind"), group_of(obj)
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    name = str(meta.get("name") or "<unnamed>")
    title = f"{kind} {name}"
    if group in CALICO_GROUPS and kind == "Tier":
        try:
            return Compiled(tiers=[calico.tier_info(obj, name)])
        except PolicyInputError as e:
            return Compiled(notes=[Note("low", f"Calico Tier {name}: {e}; its policies' order is uncertain")])
    entry = COMPILERS.get((group, kind))
    if entry is None:
        return _not_compiled(obj, kind, group, meta, name, default_namespace)
    compiler, namespaced = entry
    ns = str(meta.get("namespace") or default_namespace) if namespaced else None
    out = Compiled(namespace=ns)
    if namespaced and not meta.get("namespace"):
        out.notes.append(Note("high", f"{kind} {name} has no metadata.namespace: read as namespace {ns}"))
    try:
        out.policies = compiler(obj, ns, name, kind)
    except PolicyInputError as e:
        ref = f"{ns}/{name}" if ns else name
        out.notes.append(Note("low", f"{kind} {ref} could not be read ({e}); it was left out of the verdict"))
    except Exception as e:  # noqa: BLE001 - bad input must never crash the analyzer
        out.notes.append(Note("low", f"{title} could not be read ({type(e).__name__}: {e}); left out of the verdict"))
    return out


def _not_compiled(obj: dict, kind: Any, group: str, meta: dict, name: str, default_ns: str) -> Compiled:
    ns = meta.get("namespace")
    if kind in STAGED and group in CALICO_GROUPS:
        return Compiled(namespace=ns, notes=[Note("high", f"Calico {kind} {name} is staged (not enforced): ignored")])
    text = str(kind)
    if "policy" in text.lower() or "firewall" in text.lower() or group.endswith(("cilium.io", "projectcalico.org")):
        where = f"{ns}/{name}" if ns else name
        return Compiled(namespace=ns, notes=[Note(
            "low", f"{kind} {where} ({obj.get('apiVersion')}) is a policy kind the analyzer does not understand; "
                   "it may change the verdict")])
    if group in PLAIN_GROUPS:
        return Compiled()
    return Compiled(notes=[Note("high", f"{kind} {name} ({obj.get('apiVersion')}) is not a policy: ignored")])
