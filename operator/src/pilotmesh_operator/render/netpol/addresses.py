"""Addresses: parsing CIDRs from policies and choosing which internet addresses to test.

"The internet" is every public unicast address of the pod's IP families: IPv4 outside the private,
shared, loopback, link-local, documentation, benchmark and multicast/reserved ranges below, and IPv6
inside 2000::/3 except documentation space. Address rules (ipBlock, nets, toCIDR, networks) are
unions and differences of CIDRs, so whether a flow is allowed is constant between consecutive CIDR
edges. `witnesses()` therefore returns a few well-known public addresses plus, for every CIDR the
selecting policies use and every non-public range, the addresses on both sides of each edge that are
public: if every witness is allowed, every public address is allowed.
"""
from __future__ import annotations

import ipaddress
from typing import Any, Iterable, Sequence

from .model import IPAddress, IPNetwork, PolicyInputError

_NOT_INTERNET = {
    4: [
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
        "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
    ],
    6: ["::/3", "4000::/2", "8000::/1", "2001:db8::/32"],
}
_RANGES = {
    fam: [(int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.ip_network, nets)]
    for fam, nets in _NOT_INTERNET.items()
}
# Well-known public resolvers and CDN addresses: readable examples in reasons.
REPRESENTATIVE = {
    4: [ipaddress.ip_address(a) for a in ("8.8.8.8", "1.1.1.1", "34.71.57.205", "151.101.1.1")],
    6: [ipaddress.ip_address(a) for a in ("2001:4860:4860::8888", "2606:4700:4700::1111")],
}
FAMILIES = {"IPv4": 4, "IPv6": 6}
_MAX = {4: 2**32 - 1, 6: 2**128 - 1}


def is_internet(ip: IPAddress) -> bool:
    """Whether `ip` is a public unicast address (see the module docstring)."""
    n = int(ip)
    return not any(lo <= n <= hi for lo, hi in _RANGES[ip.version])


def parse_cidr(value: Any, where: str, bare_ip_ok: bool = False) -> IPNetwork:
    """A CIDR string from a policy; host bits are tolerated, as older apiservers did."""
    if not isinstance(value, str):
        raise PolicyInputError(f"{where}: expected a CIDR string, got {type(value).__name__}")
    if "/" not in value and not bare_ip_ok:
        raise PolicyInputError(f"{where}: {value!r} is not a CIDR (write e.g. {value}/32)")
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise PolicyInputError(f"{where}: {value!r} is not a valid CIDR") from None


def parse_ip(value: Any, where: str) -> IPAddress:
    try:
        return ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise PolicyInputError(f"{where}: {value!r} is not an IP address") from None


def in_block(ip: IPAddress, cidr: IPNetwork, excepts: Iterable[IPNetwork] = ()) -> bool:
    """ipBlock semantics: inside `cidr` and inside none of `excepts` (other families never match)."""
    if ip.version != cidr.version or ip not in cidr:
        return False
    return not any(ip.version == e.version and ip in e for e in excepts)


def witnesses(families: Iterable[int], cidrs: Iterable[IPNetwork], sensitive: bool,
              within: Sequence[IPNetwork] = ()) -> list[IPAddress]:
    """Addresses that together stand for the whole internet of `families` (module docstring).

    With `within`, they stand for those networks instead of the internet. When no selecting rule
    depends on the address (`sensitive` false), one address per family (or network) is enough.
    """
    fams = sorted(set(families))
    if within:
        inside = [n for n in within if n.version in fams]
        ok = lambda ip: any(ip in n for n in inside)  # noqa: E731
        seeds = {n.version: [] for n in inside}
        for n in inside:
            seeds[n.version].append(int(n.network_address) + (1 if n.num_addresses > 1 else 0))
        bounds = [(int(n.network_address), int(n.broadcast_address), n.version) for n in inside]
    else:
        ok = is_internet
        seeds = {f: [int(a) for a in REPRESENTATIVE[f]] for f in fams}
        bounds = [(lo, hi, f) for f in fams for lo, hi in _RANGES[f]]
    if not sensitive:
        return [_cls(f)(seeds[f][0]) for f in sorted(seeds)]
    out: list[IPAddress] = []
    for fam in sorted(seeds):
        cand = set(seeds[fam])
        edges = [(lo, hi) for lo, hi, f in bounds if f == fam]
        edges += [(int(c.network_address), int(c.broadcast_address)) for c in cidrs if c.version == fam]
        for lo, hi in edges:
            cand.update((lo - 1, lo, hi, hi + 1))
        rest = sorted(cand - set(seeds[fam]))
        for n in seeds[fam] + rest:  # the well-known addresses first: they read best in reasons
            if 0 <= n <= _MAX[fam] and ok(_cls(fam)(n)):
                out.append(_cls(fam)(n))
    return out


def _cls(fam: int) -> type:
    return ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
