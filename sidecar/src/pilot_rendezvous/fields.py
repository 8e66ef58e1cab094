"""Reading registry requests: typed field getters that answer a bad field with BadRequest, and addresses."""
from __future__ import annotations

import re
from typing import Any

from pilot_daemon.proto.addr import Addr

from .errors import BadRequest

Message = dict[str, Any]

HOSTNAME_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
BACKBONE = 0


def address(network_id: int, node_id: int) -> str:
    """Pilot text address, e.g. `0:0000.0000.03E8` (common/protocol/address.go)."""
    return str(Addr(network_id, node_id))


def uint_of(msg: Message, key: str, bits: int = 32) -> int:
    v = msg.get(key)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < (1 << bits):
        raise BadRequest(f"{key} required (unsigned {bits}-bit integer)")
    return v


def str_of(msg: Message, key: str, default: str = "") -> str:
    v = msg.get(key, default)
    if v is None:
        return default
    if not isinstance(v, str):
        raise BadRequest(f"{key} must be a string")
    return v


def bool_of(msg: Message, key: str) -> bool:
    v = msg.get(key, False)
    if not isinstance(v, bool):
        raise BadRequest(f"{key} must be true or false")
    return v


def str_list_of(msg: Message, key: str) -> list[str]:
    v = msg.get(key) or []
    if not isinstance(v, list):
        raise BadRequest(f"{key} must be a list of strings")
    return [x for x in v if isinstance(x, str) and x]
