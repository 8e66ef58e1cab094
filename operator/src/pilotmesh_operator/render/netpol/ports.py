"""Port clauses: the core `NetworkPolicyPort` and the shared "any of these ports" predicate."""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .model import Flow, PolicyInputError, PortMatch

PROTOCOLS = ("TCP", "UDP", "SCTP")


def port_number(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise PolicyInputError(f"{where}: expected a port number, got {value!r}")
    try:
        n = int(value)
    except ValueError:
        raise PolicyInputError(f"{where}: {value!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise PolicyInputError(f"{where}: port {n} is outside 0-65535")
    return n


def core_port(p: Any, where: str) -> PortMatch:
    """One networking.k8s.io/v1 NetworkPolicyPort: protocol defaults to TCP, no `port` = all ports."""
    if not isinstance(p, dict):
        raise PolicyInputError(f"{where}: a port entry must be a mapping")
    proto = p.get("protocol") or "TCP"
    if proto not in PROTOCOLS:
        raise PolicyInputError(f"{where}.protocol: {proto!r} is not TCP, UDP or SCTP")
    port, end = p.get("port"), p.get("endPort")
    if port is None:
        if end is not None:
            raise PolicyInputError(f"{where}.endPort: needs a numeric `port`")
        return PortMatch(proto)
    if isinstance(port, str) and not port.isdigit():
        if end is not None:
            raise PolicyInputError(f"{where}.endPort: cannot be used with the named port {port!r}")
        return PortMatch(proto, name=port)
    start = port_number(port, f"{where}.port")
    if end is None:
        return PortMatch(proto, start, start)
    stop = port_number(end, f"{where}.endPort")
    if stop < start:
        raise PolicyInputError(f"{where}.endPort: {stop} is below port {start}")
    return PortMatch(proto, start, stop, uses_end_port=True)


def any_port(matches: Sequence[PortMatch]) -> Callable[[Flow], bool]:
    """A flow predicate for a port list; an empty list means all ports and all protocols."""
    if not matches:
        return lambda _flow: True
    ms = tuple(m.matches for m in matches)
    if len(ms) == 1:
        return ms[0]

    def match(flow: Flow) -> bool:
        for m in ms:
            if m(flow):
                return True
        return False
    return match


def edges(matches: Sequence[PortMatch]) -> list[int]:
    """Port numbers where a range starts or stops, for choosing test ports."""
    out: list[int] = []
    for m in matches:
        if m.start is not None:
            end = m.end if m.end is not None else m.start
            out += [m.start - 1, m.start, end, end + 1]
    return out
