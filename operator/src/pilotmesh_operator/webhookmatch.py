"""Would the apiserver call this webhook for this pod CREATE? Rules, namespaceSelector, objectSelector and
matchConditions, evaluated in the apiserver's order (pure; `pilotmesh why` uses it).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from . import celmatch
from .render.netpol.selectors import label_selector


@dataclasses.dataclass(frozen=True)
class Match:
    name: str
    called: bool | None          # None: cannot tell (a matchCondition this evaluator does not understand)
    reason: str


def _rules_match(rules: Any, operation: str) -> bool:
    for rule in rules or []:
        ops = rule.get("operations") or []
        if ("*" in ops or operation in ops) and ({"", "*"} & set(rule.get("apiGroups") or [])) and \
                ({"v1", "*"} & set(rule.get("apiVersions") or [])) and \
                ({"pods", "*"} & set(rule.get("resources") or [])) and rule.get("scope", "*") in ("*", "Namespaced"):
            return True
    return False


def _selects(selector: Any, labels: Mapping[str, str], where: str) -> bool:
    try:
        return label_selector(selector or {}, where)(dict(labels))
    except ValueError:
        return False


def webhook_match(webhook: Mapping[str, Any], pod: Mapping[str, Any], namespace_labels: Mapping[str, str],
                  operation: str = "CREATE") -> Match:
    """Whether the apiserver sends this pod's admission request to ``webhook``, and why (not)."""
    name = str(webhook.get("name"))
    if not _rules_match(webhook.get("rules"), operation):
        return Match(name, False, f"its rules do not cover pod {operation}")
    if not _selects(webhook.get("namespaceSelector"), namespace_labels, "namespaceSelector"):
        shown = ", ".join(f"{k}={v}" for k, v in sorted(namespace_labels.items()))
        return Match(name, False, f"its namespaceSelector does not select the namespace (labels: {shown})")
    pod_labels = (pod.get("metadata") or {}).get("labels") or {}
    if not _selects(webhook.get("objectSelector"), pod_labels, "objectSelector"):
        return Match(name, False, "its objectSelector does not select the pod's labels")
    env = {"object": pod, "oldObject": None,
           "request": {"operation": operation, "namespace": (pod.get("metadata") or {}).get("namespace"),
                       "kind": {"group": "", "version": "v1", "kind": "Pod"},
                       "resource": {"group": "", "version": "v1", "resource": "pods"}}}
    for cond in webhook.get("matchConditions") or []:
        try:
            value = celmatch.evaluate(str(cond.get("expression")), env)
        except celmatch.UnsupportedCel as exc:
            return Match(name, None, f"matchCondition {cond.get('name')} cannot be evaluated here ({exc}); "
                                     "the apiserver decides")
        if isinstance(value, celmatch.CelError):
            policy = webhook.get("failurePolicy", "Fail")
            outcome = "the request is refused" if policy == "Fail" else "the webhook is skipped"
            why = f"matchCondition {cond.get('name')} fails to evaluate ({value.message}); failurePolicy {policy}"
            return Match(name, None if policy == "Fail" else False, f"{why}: {outcome}")
        if not value:
            return Match(name, False, f"matchCondition {cond.get('name')} is false for this pod")
    return Match(name, True, "rules, namespaceSelector, objectSelector and matchConditions all match")
