"""Which transport a pod's egress allows, from its NetworkPolicies (core, Calico, Cilium, ANP/BANP).

`analyze(pod, namespaces, policies, settings) -> Verdict`; `Verdict.to_dict()` is the JSON contract.
"""
from .analyze import PodInputError, analyze, compile_policies
from .model import Verdict
from .settings import Settings, SettingsError

__all__ = ["analyze", "compile_policies", "Verdict", "Settings", "SettingsError", "PodInputError"]
