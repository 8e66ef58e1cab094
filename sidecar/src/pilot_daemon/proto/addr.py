"""48-bit Pilot addresses: ``[network u16][node u32]`` on the wire, ``N:NNNN.HHHH.LLLL`` as text.

Text form (official ``common/protocol/address.go``): N is the network in decimal, NNNN the same
network in 4 hex digits, HHHH/LLLL the high/low 16 bits of the node in hex; formatting uses upper
case, parsing accepts either case. A socket address appends ``:PORT`` in decimal
(``0:0000.0000.03E8:7``), as ``pilotctl`` and the SDK's ``dial`` accept it.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .errors import AddressError

ADDR_SIZE = 6
NODE_BROADCAST = 0xFFFFFFFF

_WIRE = struct.Struct(">HI")
# strconv.ParseUint(s, 10, 16) accepts plain ASCII digits only (no sign, space or underscore).
_DECIMAL = re.compile(r"[0-9]+")
_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


@dataclass(frozen=True, slots=True, order=True)
class Addr:
    """A virtual address: 16-bit network id and 32-bit node id."""

    network: int
    node: int

    def __post_init__(self) -> None:
        if not (isinstance(self.network, int) and 0 <= self.network <= 0xFFFF):
            raise AddressError(f"network id {self.network!r} out of range: use 0..65535")
        if not (isinstance(self.node, int) and 0 <= self.node <= 0xFFFFFFFF):
            raise AddressError(f"node id {self.node!r} out of range: use 0..4294967295")

    @classmethod
    def parse(cls, text: str) -> Addr:
        """Parse ``N:NNNN.HHHH.LLLL`` exactly as the official ``ParseAddr`` does."""
        network_text, sep, groups_text = text.partition(":")
        if not sep:
            raise AddressError(f"invalid address: {text!r} (expected N:XXXX.YYYY.YYYY, e.g. 0:0000.0000.03E8)")
        network = _parse_decimal(network_text, 0xFFFF, "network ID")
        groups = groups_text.split(".")
        if len(groups) != 3:
            raise AddressError(f"invalid address: {groups_text!r} (expected 3 dot-separated hex groups)")
        for group in groups:
            if not _HEX4.fullmatch(group):
                raise AddressError(f"invalid hex group: {group!r} (expected 4 hex digits)")
        net_hex, high, low = (int(group, 16) for group in groups)
        if net_hex != network:
            raise AddressError(f"network mismatch: decimal {network} != hex 0x{net_hex:04X}")
        return cls(network, high << 16 | low)

    @classmethod
    def from_bytes(cls, data: bytes, offset: int = 0) -> Addr:
        """Read 6 big-endian bytes at ``offset``."""
        if len(data) - offset < ADDR_SIZE:
            raise AddressError(f"address needs {ADDR_SIZE} bytes, got {max(0, len(data) - offset)}")
        network, node = _WIRE.unpack_from(data, offset)
        return cls(network, node)

    def to_bytes(self) -> bytes:
        return _WIRE.pack(self.network, self.node)

    @property
    def is_zero(self) -> bool:
        return self.network == 0 and self.node == 0

    @property
    def is_broadcast(self) -> bool:
        return self.node == NODE_BROADCAST

    def __str__(self) -> str:
        return f"{self.network}:{self.network:04X}.{self.node >> 16:04X}.{self.node & 0xFFFF:04X}"


@dataclass(frozen=True, slots=True, order=True)
class SocketAddr:
    """An endpoint: virtual address plus 16-bit port."""

    addr: Addr
    port: int

    def __post_init__(self) -> None:
        if not (isinstance(self.port, int) and 0 <= self.port <= 0xFFFF):
            raise AddressError(f"port {self.port!r} out of range: use 0..65535")

    @classmethod
    def parse(cls, text: str) -> SocketAddr:
        """Parse ``N:XXXX.YYYY.YYYY:PORT`` (the port follows the last colon)."""
        addr_text, sep, port_text = text.rpartition(":")
        if not sep:
            raise AddressError(f"invalid socket address: {text!r} (no port; expected N:XXXX.YYYY.YYYY:PORT)")
        addr = Addr.parse(addr_text)
        return cls(addr, _parse_decimal(port_text, 0xFFFF, "port"))

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}"


def _parse_decimal(text: str, maximum: int, what: str) -> int:
    if not _DECIMAL.fullmatch(text):
        raise AddressError(f"invalid {what}: {text!r} (expected decimal digits)")
    value = int(text, 10)
    if value > maximum:
        raise AddressError(f"invalid {what}: {text!r} (out of range, max {maximum})")
    return value


ADDR_REGISTRY = Addr(0, 1)
ADDR_BEACON = Addr(0, 2)
ADDR_NAMESERVER = Addr(0, 3)
