"""The analyzer's data: destinations, flows, compiled rules and policies, notes and the Verdict.

Every policy kind (core NetworkPolicy, Calico, Cilium, AdminNetworkPolicy) compiles to the same
`Policy`: a pod selector, whether it isolates egress, and ordered `Rule`s with an action. The engine
in `engine.py` only sees these classes.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any, Callable, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
IPNetwork = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

ALLOW, DENY, PASS, LOG = "Allow", "Deny", "Pass", "Log"
CONFIDENCE = ("low", "medium", "high")  # worst first


def worst(*levels: str) -> str:
    """The lowest of the given confidence levels ("high" when none)."""
    return min(levels, key=CONFIDENCE.index, default="high")


@dataclass(frozen=True)
class Note:
    """Something that lowers the confidence of a verdict, in words that name the policy."""

    confidence: str  # "medium" or "low"
    text: str
    tag: str = ""  # "endPort" notes are dropped when the settings say the CNI enforces endPort


class PolicyInputError(ValueError):
    """A policy (or a field of it) that cannot be understood; the message names the field."""


@dataclass(frozen=True)
class PodInfo:
    """What policies can see of a pod: where it lives, its labels and the ports it names."""

    namespace: str
    labels: dict[str, str]
    ns_labels: dict[str, str]
    name: str = ""
    service_account: str = "default"
    # containerPort names -> (protocol, number); named ports in rules resolve against these
    named_ports: dict[str, tuple[str, int]] = field(default_factory=dict)

    def ref(self) -> str:
        return f"{self.namespace}/{self.name or '?'}"


@dataclass(frozen=True)
class ExternalDest:
    """An address outside the cluster's pod network (`ip`), known by zero or more DNS `names`."""

    ip: IPAddress
    names: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PodDest:
    """A pod inside the cluster; address-based rules (ipBlock, nets, toCIDR) never match it."""

    pod: PodInfo


Dest = Union[ExternalDest, PodDest]


@dataclass(frozen=True)
class Flow:
    """One egress packet class: destination, protocol (upper case) and destination port."""

    dest: Dest
    protocol: str
    port: int


@dataclass(frozen=True)
class PortMatch:
    """A port clause: protocol (None = any), number range (None = all ports) or a named port."""

    protocol: str | None
    start: int | None = None
    end: int | None = None
    name: str | None = None
    uses_end_port: bool = False

    def matches(self, flow: Flow) -> bool:
        if self.protocol is not None and self.protocol != flow.protocol:
            return False
        if self.name is not None:
            # named ports resolve against the destination pod's containerPorts, never an external address
            if not isinstance(flow.dest, PodDest):
                return False
            return flow.dest.pod.named_ports.get(self.name) == (flow.protocol, flow.port)
        if self.start is None:
            return True
        return self.start <= flow.port <= (self.end if self.end is not None else self.start)


@dataclass
class Rule:
    """One ordered rule: it matches a flow when `dest` and `ports` match; `notes` apply when it decides."""

    action: str
    dest: Callable[[Dest], bool]
    ports: Callable[[Flow], bool]
    notes: tuple[Note, ...] = ()
    label: str = ""  # "egress rule 2" etc., for reasons
    source: Callable[[PodInfo], bool] | None = None  # Calico `source`: must match the sending pod

    def matches(self, flow: Flow) -> bool:
        return self.ports(flow) and self.dest(flow.dest)


@dataclass
class Policy:
    """A compiled policy of any kind.

    `tier` and `order` place it in the evaluation pipeline (see engine.py); `selects(pod)` returns
    whether it applies to the pod (raising PolicyInputError when its selector is broken);
    `isolates` says whether selecting the pod puts its egress into default deny.
    """

    kind: str
    namespace: str | None
    name: str
    tier: str
    order: float
    selects: Callable[[PodInfo], bool]
    isolates: bool
    rules: list[Rule] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    # numbers that bound address and port ranges used by the rules; the analyzer tests either side of each
    cidrs: list[IPNetwork] = field(default_factory=list)
    port_edges: list[int] = field(default_factory=list)
    address_sensitive: bool = False  # some rule depends on the destination address

    def ref(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def title(self) -> str:
        return f"{self.kind} {self.ref()}"


@dataclass
class Verdict:
    """The answer for one pod's egress; `to_dict()` is the JSON contract of `transport-verdict`."""

    verdict: str  # udp-ok | compat-only | no-egress
    transport: str  # udp | compat
    confidence: str  # high | medium | low
    reasons: list[str]
    dns: bool
    in_cluster_peers: bool
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "transport": self.transport,
            "confidence": self.confidence,
            "reasons": list(self.reasons),
            "dns": self.dns,
            "inClusterPeers": self.in_cluster_peers,
            "warnings": list(self.warnings),
        }

    def summary(self) -> str:
        """One line: verdict, transport and confidence."""
        return f"{self.verdict} (transport {self.transport}, confidence {self.confidence})"
