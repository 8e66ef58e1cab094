"""Evaluate one flow against the policies that select a pod, in enforcement order.

The pipeline is a list of tiers, lowest order first (Calico's model, which also expresses the
others): Cilium deny rules (they beat every allow), AdminNetworkPolicy (1000), user Calico tiers,
the default tier (1,000,000: Calico default-tier policies, NetworkPolicy at order 1000, Cilium
allow rules), BaselineAdminNetworkPolicy (10,000,000). Inside a tier, policies run by (order, name)
and rules in order; the first matching Allow or Deny decides, Pass jumps to the next tier. A tier
whose selecting policies isolate the pod but match nothing ends in its default action (Deny, or
Pass for Calico tiers that say so; ANP tiers always pass). Falling off the end allows the flow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from .model import ALLOW, DENY, PASS, Flow, PodInfo, Policy, Rule

TIER_ORDER = {"cilium-deny": float("-inf"), "adminnetworkpolicy": 1000.0, "default": 1_000_000.0,
              "baselineadminnetworkpolicy": 10_000_000.0}
FIXED_DEFAULT = {"cilium-deny": PASS, "adminnetworkpolicy": PASS, "baselineadminnetworkpolicy": PASS}


@dataclass(frozen=True)
class TierInfo:
    """A Calico Tier object (or a built-in tier): its order and what happens when nothing matches."""

    name: str
    order: float | None
    default_action: str = DENY


@dataclass
class Tier:
    info: TierInfo
    policies: list[Policy] = field(default_factory=list)

    @property
    def isolating(self) -> list[Policy]:
        return [p for p in self.policies if p.isolates]


@dataclass(frozen=True)
class Decision:
    """Whether a flow is allowed and what decided it: a rule, a tier's default, or nothing at all."""

    allowed: bool
    policy: Policy | None = None
    rule: Rule | None = None
    tier: Tier | None = None  # set for a tier-default deny

    def explain(self) -> str:
        if self.rule is not None and self.policy is not None:
            verb = "allowed" if self.allowed else "denied"
            return f"{verb} by {self.policy.title()} ({self.rule.label})"
        if self.tier is not None:
            names = ", ".join(p.title() for p in self.tier.isolating)
            return f"denied: egress is isolated by {names} and no rule allows it"
        return "allowed: no policy isolates or denies it"


ALLOWED = Decision(True)


class Pipeline:
    """The tiers for one pod, built from the policies that select it."""

    def __init__(self, pod: PodInfo, selecting: Iterable[Policy], tiers: dict[str, TierInfo]):
        by_tier: dict[str, Tier] = {}
        for p in selecting:
            info = tiers.get(p.tier) or TierInfo(p.tier, TIER_ORDER.get(p.tier))
            if p.tier in FIXED_DEFAULT:
                info = TierInfo(p.tier, TIER_ORDER[p.tier], FIXED_DEFAULT[p.tier])
            by_tier.setdefault(p.tier, Tier(info)).policies.append(p)
        inf = float("inf")
        self.tiers = sorted(by_tier.values(), key=lambda t: (inf if t.info.order is None else t.info.order, t.info.name))
        for t in self.tiers:
            t.policies.sort(key=lambda p: (p.order, p.name))
        # rules whose `source` does not match this pod never apply to its egress
        self.rules = {id(p): [r for r in p.rules if r.source is None or r.source(pod)] for p in selecting}
        # what decide() walks for every flow: (tier, [(policy, rules)], whether the tier ends in a deny)
        self._plan = [(t, [(p, self.rules[id(p)]) for p in t.policies],
                       t.info.default_action == DENY and bool(t.isolating)) for t in self.tiers]
        self._decisions: dict[int, Decision] = {}

    def decide(self, flow: Flow) -> Decision:
        for tier, policies, deny_at_end in self._plan:
            passed = False
            for pol, rules in policies:
                for rule in rules:
                    if rule.ports(flow) and rule.dest(flow.dest):
                        break
                else:
                    continue
                if rule.action == PASS:
                    passed = True
                    break
                return self._decision(pol, rule)
            if not passed and deny_at_end:
                return Decision(False, tier=tier)
        return ALLOWED

    def _decision(self, pol: Policy, rule: Rule) -> Decision:
        key = id(rule)
        d = self._decisions.get(key)
        if d is None:
            d = self._decisions[key] = Decision(rule.action == ALLOW, pol, rule)
        return d
