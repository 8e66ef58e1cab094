"""SACK blocks as the official daemon carries them: in the payload of a stream ACK.

Wire form (official ``EncodeSACK``/``DecodeSACK``, ``pkg/daemon/ports.go``): ``b"SACK"``, a count
byte n (1..4), then n blocks of ``[left u32][right u32]`` big-endian, left = sequence number of the
first byte held, right = the one after the last. A payload is SACK data when it is at least 5 bytes,
starts with ``SACK`` and the count is 1..4 with enough bytes behind it; otherwise it is user data.
So an official receiver would read a data segment that happens to look like that as SACK: the
sender side must never send one (``guard_payload``).
"""

from __future__ import annotations

import struct

MAGIC = b"SACK"
MAX_BLOCKS = 4

_BLOCK = struct.Struct(">II")


def encode(blocks: list[tuple[int, int]]) -> bytes:
    """Encode up to four (left, right) wire-sequence pairs; extra blocks are dropped."""
    blocks = blocks[:MAX_BLOCKS]
    if not blocks:
        return b""
    return MAGIC + bytes([len(blocks)]) + b"".join(_BLOCK.pack(l & 0xFFFFFFFF, r & 0xFFFFFFFF) for l, r in blocks)


def decode(payload: bytes) -> list[tuple[int, int]] | None:
    """The SACK blocks in an ACK payload, or None when the payload is not SACK data."""
    if len(payload) < 5 or payload[:4] != MAGIC:
        return None
    n = payload[4]
    if n == 0 or n > MAX_BLOCKS or len(payload) < 5 + n * 8:
        return None
    return [_BLOCK.unpack_from(payload, 5 + i * 8) for i in range(n)]


def guard_payload(segment: bytes | memoryview) -> int:
    """How many bytes of ``segment`` may go in one data packet without being read as SACK.

    A segment that would decode as SACK is cut to its first 4 bytes (``SACK`` alone is too short
    to be SACK data); the rest follows in the next segment, which no longer starts with the magic.
    """
    if len(segment) >= 13 and segment[:4] == MAGIC and 1 <= segment[4] <= MAX_BLOCKS \
            and len(segment) >= 5 + segment[4] * 8:
        return 4
    return len(segment)


def blocks_above(starts_ends: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Merge sorted (start, end) ranges into maximal blocks, highest four kept (as 1.18 does)."""
    blocks: list[list[int]] = []
    for start, end in starts_ends:
        if blocks and start <= blocks[-1][1]:
            if end > blocks[-1][1]:
                blocks[-1][1] = end
        else:
            blocks.append([start, end])
    return [(b[0], b[1]) for b in blocks[-MAX_BLOCKS:]]
