"""Destination predicates shared by the policy kinds: address blocks, pods by selectors, names."""
from __future__ import annotations

import fnmatch
from typing import Callable, Iterable, Sequence

from .model import Dest, ExternalDest, IPNetwork, PodDest
from .selectors import Predicate

DestPredicate = Callable[[Dest], bool]


def anywhere(_dest: Dest) -> bool:
    return True


def nowhere(_dest: Dest) -> bool:
    return False


def any_of(preds: Sequence[DestPredicate]) -> DestPredicate:
    ps = tuple(preds)
    if len(ps) == 1:
        return ps[0]
    return lambda d: any(p(d) for p in ps)


def ip_block(cidr: IPNetwork, excepts: Iterable[IPNetwork] = ()) -> DestPredicate:
    """External addresses in `cidr` minus `excepts`; pods never match (their IPs are not known).

    `in_block` semantics on integer bounds worked out once (this runs for every flow of every pod).
    """
    version, lo, hi = cidr.version, int(cidr.network_address), int(cidr.broadcast_address)
    ex = tuple((int(e.network_address), int(e.broadcast_address)) for e in excepts if e.version == version)

    def match(d: Dest) -> bool:
        if not isinstance(d, ExternalDest) or d.ip.version != version:
            return False
        n = int(d.ip)
        if n < lo or n > hi:
            return False
        for a, b in ex:
            if a <= n <= b:
                return False
        return True
    return match


def pods(ns: str | None, ns_sel: Predicate | None, pod_sel: Predicate | None) -> DestPredicate:
    """Pods in namespace `ns` (when given) whose namespace matches `ns_sel` and labels match `pod_sel`."""
    def match(d: Dest) -> bool:
        if not isinstance(d, PodDest):
            return False
        p = d.pod
        if ns is not None and p.namespace != ns:
            return False
        if ns_sel is not None and not ns_sel(p.ns_labels):
            return False
        return pod_sel is None or pod_sel(p.labels)
    return match


def names(patterns: Sequence[str]) -> DestPredicate:
    """External destinations known by a DNS name matching one of `patterns` (`*` wildcards allowed)."""
    pats = tuple(p.lower().rstrip(".") for p in patterns)

    def match(d: Dest) -> bool:
        if not isinstance(d, ExternalDest):
            return False
        return any(fnmatch.fnmatchcase(n.lower(), p) for n in d.names for p in pats)
    return match
