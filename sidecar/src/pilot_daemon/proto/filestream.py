"""Chunked file transfers on port 1001: data-exchange frames of type 7 (FILESTREAM), as the official 1.18 speaks them.

Every FILESTREAM payload is ``[u8 kind][16-byte transfer id][body]``, integers big-endian. The id is the first
16 bytes of the file's SHA-256, so a retry of the same file finds the receiver's ``.partial`` and resumes.

  kind  name      from      body
  1     INIT      sender    [u64 size][32-byte SHA-256 of the file][u32 chunk size][u16 name len][name]
  2     CHUNK     sender    [u64 offset][bytes]      (official sender: 48 KiB chunks, at most 16 unacknowledged)
  3     ACK       receiver  [u64 bytes stored contiguously from 0]
  4     DONE      sender    (empty)
  5     INIT-ACK  receiver  [u64 resume offset]      (its arrival tells the sender the receiver speaks FILESTREAM)
  6     COMPLETE  receiver  [u8 0 = stored, 1 = failed][reason]
  7     ABORT     either    [reason]

The receiver answers INIT with INIT-ACK (or COMPLETE when it refuses: quota, disk space, too many transfers),
every CHUNK with ACK, DONE with COMPLETE after checking the whole file's SHA-256, a CHUNK of an unknown
transfer with ABORT; FILESTREAM frames get no ``ACK <TYPE> <n> bytes`` text. ``pilotctl send-file`` streams
every file, whatever its size, and falls back to one FILE frame only when no INIT-ACK comes.

This module holds the codec, the limits and refusal texts of the official receiver, and ``PartialClaims``
(which live transfer writes which ``.partial``); the files themselves are ``io.filestream``'s.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

from .dataexchange import FILESTREAM, DataExchangeError, Frame

INIT, CHUNK, ACK, DONE, INIT_ACK, COMPLETE, ABORT = range(1, 8)
ID_LEN = 16
ZERO_ID = bytes(ID_LEN)
CHUNK_SIZE = 48 * 1024                 # what the official sender sends
WINDOW = 16                            # its unacknowledged chunks
MAX_PENDING = WINDOW * CHUNK_SIZE      # out-of-order bytes a transfer holds before dropping more
MAX_TRANSFERS = 64                     # open transfers per connection
DISK_RESERVE = 16 << 20                # free space a transfer must leave on the receiving filesystem
STALE_CLAIM = 120.0                    # seconds without a write before another transfer may take a .partial
MAX_NAME = 255

MALFORMED_FRAME = "malformed stream frame"
MALFORMED_INIT = "malformed INIT"
MALFORMED_CHUNK = "malformed CHUNK"
TOO_MANY = "too many concurrent transfers"
NO_TRANSFER = "no active transfer"
NO_TRANSFER_CHUNK = "no active transfer (send INIT first)"
TAKEN_OVER = "a newer transfer of this file has taken it over"
MISMATCH = "sha256 mismatch \u2014 file corrupt, .partial retained"
DEFAULT_NAME = "received.bin"

_INIT_HEAD = struct.Struct(">Q32sIH")
_U64 = struct.Struct(">Q")


class FileStreamError(DataExchangeError):
    """A FILESTREAM payload that cannot be parsed; ``str()`` is the official receiver's reply text."""


@dataclass(frozen=True, slots=True)
class Init:
    size: int
    sha256: bytes
    chunk_size: int
    name: bytes


# -- decoding ---------------------------------------------------------------------------------------------
def split(payload: bytes) -> tuple[int, bytes, bytes]:
    """``(kind, transfer id, body)``."""
    if len(payload) < 1 + ID_LEN:
        raise FileStreamError(MALFORMED_FRAME)
    return payload[0], bytes(payload[1:1 + ID_LEN]), bytes(payload[1 + ID_LEN:])


def parse_init(body: bytes) -> Init:
    if len(body) < _INIT_HEAD.size:
        raise FileStreamError(MALFORMED_INIT)
    size, digest, chunk_size, name_len = _INIT_HEAD.unpack_from(body)
    if _INIT_HEAD.size + name_len != len(body):
        raise FileStreamError(MALFORMED_INIT)
    return Init(size, digest, chunk_size, body[_INIT_HEAD.size:])


def parse_chunk(body: bytes) -> tuple[int, bytes]:
    if len(body) < 8:
        raise FileStreamError(MALFORMED_CHUNK)
    return _U64.unpack_from(body)[0], body[8:]


def parse_offset(body: bytes) -> int:
    """The body of ACK and INIT-ACK."""
    if len(body) < 8:
        raise FileStreamError("malformed offset")
    return _U64.unpack_from(body)[0]


def parse_complete(body: bytes) -> tuple[bool, str]:
    if not body:
        raise FileStreamError("malformed complete")
    return body[0] == 0, body[1:].decode(errors="replace")


# -- encoding (whole data-exchange frames) ------------------------------------------------------------------
def frame(kind: int, transfer_id: bytes, body: bytes = b"") -> bytes:
    if len(transfer_id) != ID_LEN:
        raise FileStreamError(f"transfer id must be {ID_LEN} bytes, not {len(transfer_id)}")
    return Frame(FILESTREAM, bytes((kind,)) + transfer_id + body).encode()


def init(transfer_id: bytes, size: int, sha256: bytes, name: bytes, chunk_size: int = CHUNK_SIZE) -> bytes:
    name = name[:MAX_NAME]
    return frame(INIT, transfer_id, _INIT_HEAD.pack(size, sha256, chunk_size, len(name)) + name)


def chunk(transfer_id: bytes, offset: int, data: bytes) -> bytes:
    return frame(CHUNK, transfer_id, _U64.pack(offset) + data)


def offset_frame(kind: int, transfer_id: bytes, offset: int) -> bytes:
    """ACK or INIT-ACK."""
    return frame(kind, transfer_id, _U64.pack(offset))


def complete(transfer_id: bytes, error: str | None = None) -> bytes:
    """COMPLETE: the file was stored (``error`` None), or why not."""
    body = b"\x00" if error is None else b"\x01" + error.encode(errors="surrogateescape")
    return frame(COMPLETE, transfer_id, body)


def abort(transfer_id: bytes, reason: str) -> bytes:
    return frame(ABORT, transfer_id, reason.encode(errors="surrogateescape"))


# -- the receiver's decisions -------------------------------------------------------------------------------
def base_name(raw: bytes) -> str:
    """The stored file's name: the last path element the sender named (Go's ``filepath.Base``), else
    ``received.bin``. Bytes that are not UTF-8 are kept (surrogate escapes), as the official keeps them."""
    name = raw.decode(errors="surrogateescape").rstrip("/")
    name = name[name.rfind("/") + 1:]
    return name if name not in ("", ".") else DEFAULT_NAME


def resume_offset(existing: int | None, size: int) -> int:
    """Where a transfer of ``size`` bytes picks up in a ``.partial`` of ``existing`` bytes (None: none):
    its length, unless it is longer than the file (stale), then 0."""
    return existing if existing is not None and existing <= size else 0


def quota_check(size: int, used: int, quota: int) -> tuple[int, str | None]:
    """``(bytes the transfer may still write, refusal)`` under the received-files quota."""
    budget = max(quota - used, 0)
    if size > budget:
        return 0, f"receiver disk quota exceeded: need {size}, {budget} of {quota} available"
    return budget, None


def disk_check(need: int, free: int) -> str | None:
    if need > free or free - need < DISK_RESERVE:
        return f"receiver disk full: need {need} bytes, {free} free (keeping {DISK_RESERVE} in reserve)"
    return None


def chunk_check(offset: int, length: int, size: int) -> str | None:
    """A chunk must lie inside the size INIT declared."""
    if offset > size or length > size - offset:
        return f"chunk at {offset} of {length} bytes exceeds declared size {size}"
    return None


def quota_at_offset(offset: int) -> str:
    return f"receiver disk quota exceeded at offset {offset}"


# -- who writes which .partial -------------------------------------------------------------------------------
class Claim:
    __slots__ = ("last_write",)

    def __init__(self, now: float) -> None:
        self.last_write = now


class PartialClaims:
    """The ``.partial`` paths live transfers write, daemon-wide. The first transfer of some content claims its
    path; a concurrent transfer of the same content gets a private ``.partial``. A claim whose holder wrote
    nothing for ``stale_after`` seconds may be taken over: a sender retrying after a stall resumes the file,
    and the stalled transfer may not write it again."""

    def __init__(self, stale_after: float = STALE_CLAIM) -> None:
        self.stale_after = stale_after
        self.paths: dict[str, Claim] = {}

    def _live(self, claim: Claim | None, now: float) -> bool:
        return claim is not None and now - claim.last_write < self.stale_after

    def held(self, path: str, now: float) -> bool:
        return self._live(self.paths.get(path), now)

    def claim(self, path: str, now: float) -> tuple[Claim | None, Claim | None]:
        """``(new claim, the stale claim it took over)``; ``(None, None)`` while a live transfer holds it."""
        prev = self.paths.get(path)
        if self._live(prev, now):
            return None, None
        claim = self.paths[path] = Claim(now)
        return claim, prev

    def still_holds(self, path: str, claim: Claim | None, now: float) -> bool:
        """Whether ``claim`` still owns ``path``; records a write when it does."""
        if claim is None:
            return True
        if self.paths.get(path) is not claim:
            return False
        claim.last_write = now
        return True

    def release(self, path: str, claim: Claim | None, prev: Claim | None = None) -> None:
        """Give ``path`` up (back to ``prev``, the claim taken over) if ``claim`` still holds it."""
        if claim is None or self.paths.get(path) is not claim:
            return
        if prev is not None:
            self.paths[path] = prev
        else:
            del self.paths[path]
