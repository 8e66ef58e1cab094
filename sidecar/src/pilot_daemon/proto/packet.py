"""The Pilot packet: a 34-byte big-endian header, then the payload.

Layout (official ``common/protocol/packet.go``)::

    0      [version:4 bits][flags:4 bits]   version 1; flags SYN 1, ACK 2, FIN 4, RST 8
    1      protocol                         1 stream, 2 datagram, 3 control
    2-3    payload length
    4-9    source address (network u16, node u32)
    10-15  destination address
    16-17  source port
    18-19  destination port
    20-23  sequence number
    24-27  acknowledgment number
    28-29  window (receive window in segments, 0 = no flow control)
    30-33  checksum: CRC-32/IEEE (zlib's crc32) over the 30 header bytes, four zero bytes in
           place of the checksum field, and the payload

Decoding follows the official order: length checks, then the checksum, then the version.
Bytes after ``34 + payload length`` are ignored, as the official decoder does.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from .addr import Addr
from .errors import ChecksumMismatch, PacketTooShort, PacketTruncated, PayloadTooLarge, UnsupportedVersion

HEADER_SIZE = 34
VERSION = 1
MAX_PAYLOAD = 0xFFFF

_HEADER = struct.Struct(">BBHHIHIHHIIHI")
_CHECKSUM_OFFSET = 30
_ZERO_CHECKSUM = bytes(4)


class Flag(enum.IntFlag):
    SYN = 0x1
    ACK = 0x2
    FIN = 0x4
    RST = 0x8


class Proto(enum.IntEnum):
    STREAM = 0x01
    DATAGRAM = 0x02
    CONTROL = 0x03


# Well-known ports (official common/protocol/header.go).
PORT_PING = 0
PORT_CONTROL = 1
PORT_ECHO = 7
PORT_NAMESERVER = 53
PORT_HANDSHAKE = 444
PORT_STDIO = 1000
PORT_DATAEXCHANGE = 1001
PORT_EVENTSTREAM = 1002
PORT_EPHEMERAL_MIN = 49152
PORT_EPHEMERAL_MAX = 65535


@dataclass(slots=True)
class Packet:
    """One packet. ``protocol`` is kept as the raw byte (unknown values decode; callers drop them)."""

    protocol: int
    src: Addr
    dst: Addr
    src_port: int = 0
    dst_port: int = 0
    flags: int = 0
    seq: int = 0
    ack: int = 0
    window: int = 0
    payload: bytes = b""
    version: int = VERSION

    def has(self, flag: Flag) -> bool:
        return bool(self.flags & flag)

    def encode(self) -> bytes:
        """Serialise with the checksum filled in."""
        payload = self.payload
        if len(payload) > MAX_PAYLOAD:
            raise PayloadTooLarge(
                f"payload too large: {len(payload)} bytes (max {MAX_PAYLOAD}); split it into segments"
            )
        header = _HEADER.pack(
            (self.version & 0x0F) << 4 | (self.flags & 0x0F),
            self.protocol & 0xFF,
            len(payload),
            self.src.network, self.src.node,
            self.dst.network, self.dst.node,
            self.src_port, self.dst_port,
            self.seq & 0xFFFFFFFF, self.ack & 0xFFFFFFFF,
            self.window, 0,
        )
        checksum = zlib.crc32(payload, zlib.crc32(header))
        return header[:_CHECKSUM_OFFSET] + checksum.to_bytes(4, "big") + payload


def checksum(data: bytes | memoryview) -> int:
    """CRC-32/IEEE of one whole encoded packet, computed with the checksum field as zeros."""
    view = memoryview(data)
    crc = zlib.crc32(_ZERO_CHECKSUM, zlib.crc32(view[:_CHECKSUM_OFFSET]))
    return zlib.crc32(view[HEADER_SIZE:], crc)


def _addr(network: int, node: int) -> Addr:
    """An address from the wire (always in range), shared between packets: one lookup, no validation."""
    key = network << 32 | node
    addr = _ADDRS.get(key)
    if addr is None:
        if len(_ADDRS) >= _ADDR_CACHE:
            _ADDRS.clear()
        addr = _ADDRS[key] = Addr(network, node)
    return addr


_ADDRS: dict[int, Addr] = {}
_ADDR_CACHE = 4096


def decode(data: bytes) -> Packet:
    """Parse and validate one packet; raises a ``PacketError`` subclass on bad input."""
    size = len(data)
    if size < HEADER_SIZE:
        raise PacketTooShort(f"packet too short: {size} bytes (min {HEADER_SIZE})")
    (vf, proto, length, src_net, src_node, dst_net, dst_node, src_port, dst_port,
     seq, ack, window, wire_checksum) = _HEADER.unpack_from(data)
    total = HEADER_SIZE + length
    if size < total:
        raise PacketTruncated(f"packet truncated: have {size} bytes, need {total}")
    payload = bytes(data[HEADER_SIZE:total])
    computed = zlib.crc32(payload, zlib.crc32(_ZERO_CHECKSUM, zlib.crc32(data[:_CHECKSUM_OFFSET])))
    if computed != wire_checksum:
        raise ChecksumMismatch(
            f"checksum mismatch: header says {wire_checksum:08x}, bytes give {computed:08x}; drop the packet"
        )
    version = vf >> 4
    if version != VERSION:
        raise UnsupportedVersion(f"unsupported protocol version {version} (expected {VERSION})")
    return Packet(proto, _addr(src_net, src_node), _addr(dst_net, dst_node), src_port, dst_port, vf & 0x0F,
                  seq, ack, window, payload, version)
