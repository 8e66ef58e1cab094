"""Addresses: parsing CIDRs from policies and choosing which internet addresses to test.

"The internet" is every public unicast address of the pod's IP families: IPv4 outside the private,
shared, loopback, link-local, documentation, benchmark and multicast/reserved ranges below, and IPv6
inside 2000::/3 except documentation space.
Address rules (ipBlock, nets, toCIDR, networks) are unions and differences of CIDRs, so whether a flow
is allowed can only change at a CIDR edge. `witnesses()` cuts the address line at every edge the
selecting policies use and takes the first public address of each piece (plus one well-known address
that reads well in reasons): if every witness is allowed, every public address is allowed.
"""
from __future__ import annotations

import functools
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
    fam: sorted((int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.ip_network, nets))
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
    net = _network(value.strip())
    if net is None:
        raise PolicyInputError(f"{where}: {value!r} is not a valid CIDR")
    return net


@functools.lru_cache(maxsize=4096)
def _network(text: str) -> IPNetwork | None:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


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

    The CIDR edges cut the address line into regions where every rule gives the same answer; one
    public address per region (the first) stands for it. With `within`, they stand for those networks
    instead of the internet. When no selecting rule depends on the address (`sensitive` false), one
    address per family (or network) is enough.
    """
    fams = sorted(set(families))
    cidrs = list(cidrs)
    inside = [n for n in within if n.version in fams]
    out: list[IPAddress] = []
    for fam in sorted({n.version for n in inside}) if within else fams:
        nets = [n for n in inside if n.version == fam]
        seed = int(nets[0].network_address) + (nets[0].num_addresses > 1) if within else int(REPRESENTATIVE[fam][0])
        out.append(_cls(fam)(seed))
        if not sensitive:
            continue
        cuts = {0}
        for c in cidrs + nets:
            if c.version == fam:
                cuts.update((int(c.network_address), int(c.broadcast_address) + 1))
        cuts = sorted(n for n in cuts if n <= _MAX[fam])
        for lo, nxt in zip(cuts, cuts[1:] + [_MAX[fam] + 1]):
            n = _first_inside(lo, nets) if within else _first_public(lo, fam)
            if n is not None and n < nxt and n != seed:
                out.append(_cls(fam)(n))
    return out


def _first_public(n: int, fam: int) -> int | None:
    for lo, hi in _RANGES[fam]:  # sorted, so one pass skips chained ranges
        if lo <= n <= hi:
            n = hi + 1
    return n if n <= _MAX[fam] else None


def _first_inside(n: int, nets: list) -> int | None:
    # the cuts include every edge of `nets`, so a region is wholly inside or wholly outside them
    return n if any(int(x.network_address) <= n <= int(x.broadcast_address) for x in nets) else None


def _cls(fam: int) -> type:
    return ipaddress.IPv4Address if fam == 4 else ipaddress.IPv6Address
