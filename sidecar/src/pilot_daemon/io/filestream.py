"""The receiving side of FILESTREAM transfers (``proto.filestream``) on one data-exchange connection.

Chunks are written in order to ``~/.pilot/received/.partial/<transfer id hex>`` (the file's length is always
the resume offset; chunks that arrive early wait in memory, up to 768 KiB), hashed as they are written, and
on DONE the file is synced, its SHA-256 checked and it is renamed to ``<stem>-<time>-<seq><ext>`` next to
the files that came in FILE frames. A ``.partial`` stays after a dropped connection (a retry resumes it) and
after a SHA-256 mismatch; one that ran the disk full is deleted. Transfers are refused up front when their
declared size does not fit the received-files quota or would leave less than 16 MiB free on the disk.
"""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..proto import dataexchange as dx
from ..proto import filestream as fs
from . import clock, storage

log = logging.getLogger("pilot_daemon.dataexchange")

_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class _WriteFailed(Exception):
    def __init__(self, text: str, disk_full: bool = False, taken_over: bool = False) -> None:
        super().__init__(text)
        self.disk_full, self.taken_over = disk_full, taken_over


@dataclass(eq=False)
class _Transfer:
    fd: int
    partial: Path
    private: bool
    claim: fs.Claim | None
    name: str
    size: int
    sha256: bytes
    cursor: int
    hasher: "hashlib._Hash"
    budget: int                      # bytes it may still write under the quota; -1: no quota
    verify_error: str = ""           # reading the resumed part back failed
    pending: dict[int, bytes] = field(default_factory=dict)
    pending_bytes: int = 0


class StreamReceiver:
    """``handle(payload)`` -> the reply frame (or None); ``close()`` when the connection ends."""

    def __init__(self, received_dir: Path, claims: fs.PartialClaims, quota: int, final_name: Callable[[str], str],
                 on_saved: Callable[[Path, int], None]) -> None:
        self.received_dir, self.claims, self.quota = received_dir, claims, quota
        self.final_name, self.on_saved = final_name, on_saved
        self.transfers: dict[bytes, _Transfer] = {}

    def handle(self, payload: bytes) -> bytes | None:
        try:
            kind, tid, body = fs.split(payload)
        except fs.FileStreamError as exc:
            return fs.complete(fs.ZERO_ID, str(exc))
        if kind == fs.INIT:
            return self._init(tid, body)
        if kind == fs.CHUNK:
            return self._chunk(tid, body)
        if kind == fs.DONE:
            return self._done(tid)
        if kind == fs.ABORT:
            self._discard(tid)
        return None

    def close(self) -> None:
        transfers, self.transfers = self.transfers, {}
        for t in transfers.values():
            _close(t)
            self._release(t)

    # -- INIT ------------------------------------------------------------------------------------------
    def _init(self, tid: bytes, body: bytes) -> bytes:
        try:
            init = fs.parse_init(body)
        except fs.FileStreamError as exc:
            return fs.complete(tid, str(exc))
        partial_dir = self.received_dir / ".partial"
        try:
            storage.make_dirs(partial_dir)
        except OSError as exc:
            return fs.complete(tid, "mkdir partial: " + dx.os_error_text("mkdir", partial_dir, exc))
        shared, now = partial_dir / tid.hex(), clock.now()
        prior = self.transfers.get(tid)
        if prior is not None and not self.claims.still_holds(str(prior.partial), prior.claim, now):
            del self.transfers[tid]          # a retry elsewhere took its file over: start again as a new one
            _close(prior)
            prior = None
        if prior is None and len(self.transfers) >= fs.MAX_TRANSFERS:
            return fs.complete(tid, fs.TOO_MANY)
        partial, private, claim, prev = shared, False, None, None
        if prior is not None:
            partial, private, claim = prior.partial, prior.private, prior.claim
        elif self.claims.held(str(shared), now):
            partial, private = _private(shared), True
        budget, refusal = self._admit(partial, init.size)
        if refusal is not None:              # refused before claiming: a quiet holder keeps its file
            return fs.complete(tid, refusal)
        if prior is None:
            claim, prev = self.claims.claim(str(partial), now)
        try:
            fd = os.open(partial, os.O_RDWR | os.O_CREAT, 0o600)
        except (OSError, ValueError) as exc:
            if prior is None:
                self.claims.release(str(partial), claim, prev)
                if private:
                    _unlink(partial)
            return fs.complete(tid, "open partial: " + dx.os_error_text("open", partial, exc))
        t = _Transfer(fd, partial, private, claim, fs.base_name(init.name), init.size, init.sha256, 0,
                      hashlib.sha256(), budget)
        _resume(t)
        if prior is not None:
            _close(prior)
        self.transfers[tid] = t
        return fs.offset_frame(fs.INIT_ACK, tid, t.cursor)

    def _admit(self, partial: Path, size: int) -> tuple[int, str | None]:
        """``(quota budget or -1, refusal)`` for ``size`` bytes into ``partial``."""
        budget = -1
        if self.quota > 0:
            budget, refusal = fs.quota_check(size, storage.tree_bytes(self.received_dir, partial), self.quota)
            if refusal is not None:
                return 0, refusal
        free = storage.free_bytes(partial.parent)
        if free is not None:
            refusal = fs.disk_check(size - fs.resume_offset(_size_of(partial), size), free)
            if refusal is not None:
                return 0, refusal
        return budget, None

    # -- CHUNK -----------------------------------------------------------------------------------------
    def _chunk(self, tid: bytes, body: bytes) -> bytes:
        try:
            offset, data = fs.parse_chunk(body)
        except fs.FileStreamError as exc:
            return fs.complete(tid, str(exc))
        t = self.transfers.get(tid)
        if t is None:
            return fs.abort(tid, fs.NO_TRANSFER_CHUNK)
        refusal = fs.chunk_check(offset, len(data), t.size)
        if refusal is not None:
            return fs.complete(tid, refusal)
        try:
            if offset == t.cursor:
                self._write(t, data)
                while (more := t.pending.pop(t.cursor, None)) is not None:
                    t.pending_bytes -= len(more)
                    self._write(t, more)
            elif offset > t.cursor and offset not in t.pending \
                    and t.pending_bytes + len(data) <= fs.MAX_PENDING:
                t.pending[offset] = data          # early: held until the bytes before it arrive
                t.pending_bytes += len(data)
        except _WriteFailed as exc:
            if exc.taken_over:
                self._discard(tid)
            elif exc.disk_full:
                self._abandon(tid)
            return fs.complete(tid, str(exc))
        return fs.offset_frame(fs.ACK, tid, t.cursor)     # a repeat of stored bytes is only acknowledged

    def _write(self, t: _Transfer, data: bytes) -> None:
        offset = t.cursor
        if not self.claims.still_holds(str(t.partial), t.claim, clock.now()):
            raise _WriteFailed(fs.TAKEN_OVER, taken_over=True)
        if t.budget >= 0:
            if len(data) > t.budget:
                raise _WriteFailed(fs.quota_at_offset(offset))
            t.budget -= len(data)
        view = memoryview(data)
        try:
            while view:
                view = view[os.pwrite(t.fd, view, offset + len(data) - len(view)):]
        except (OSError, OverflowError) as exc:       # overflow: an offset past what the OS can address
            err = exc if isinstance(exc, OSError) else OSError(errno.EFBIG, os.strerror(errno.EFBIG))
            raise _WriteFailed(f"write at {offset}: " + dx.os_error_text("write", t.partial, err),
                               disk_full=err.errno in _DISK_FULL) from None
        t.cursor += len(data)
        t.hasher.update(data)

    # -- DONE ------------------------------------------------------------------------------------------
    def _done(self, tid: bytes) -> bytes:
        t = self.transfers.get(tid)
        if t is None:
            return fs.complete(tid, fs.NO_TRANSFER)
        if not self.claims.still_holds(str(t.partial), t.claim, clock.now()):
            self._discard(tid)
            return fs.complete(tid, fs.TAKEN_OVER)
        try:
            os.fsync(t.fd)
        except OSError as exc:
            return fs.complete(tid, "fsync: " + dx.os_error_text("sync", t.partial, exc))
        if t.cursor != t.size:
            return fs.complete(tid, f"incomplete: have {t.cursor} of {t.size} bytes")
        if t.verify_error:
            return fs.complete(tid, "read for verify: " + t.verify_error)
        if t.hasher.digest() != t.sha256:
            self._discard(tid)
            return fs.complete(tid, fs.MISMATCH)
        _close(t)
        final = self.received_dir / self.final_name(t.name)
        if not self.claims.still_holds(str(t.partial), t.claim, clock.now()):
            self._forget(tid)
            return fs.complete(tid, fs.TAKEN_OVER)
        try:
            os.rename(t.partial, final)
        except (OSError, ValueError) as exc:
            self._forget(tid)
            return fs.complete(tid, "rename: " + dx.os_error_text("rename", f"{t.partial} {final}", exc))
        self._forget(tid)
        self.on_saved(final, t.size)
        return fs.complete(tid)

    # -- ending transfers --------------------------------------------------------------------------------
    def _release(self, t: _Transfer) -> None:
        self.claims.release(str(t.partial), t.claim)
        if t.private:                    # nothing can resume a private file
            _unlink(t.partial)

    def _forget(self, tid: bytes) -> None:
        t = self.transfers.pop(tid, None)
        if t is not None:
            self._release(t)

    def _discard(self, tid: bytes) -> None:
        """End a transfer; its shared ``.partial`` stays for a resume."""
        t = self.transfers.get(tid)
        if t is not None:
            _close(t)
            self._forget(tid)

    def _abandon(self, tid: bytes) -> None:
        """End a transfer that ran the disk full and delete its ``.partial`` (unless a retry owns it now)."""
        t = self.transfers.pop(tid, None)
        if t is None:
            return
        _close(t)
        if self.claims.still_holds(str(t.partial), t.claim, clock.now()):
            _unlink(t.partial)
        self._release(t)


def _resume(t: _Transfer) -> None:
    """Pick up where the ``.partial`` ends (a stale, longer one starts over) and hash what is there."""
    try:
        t.cursor = fs.resume_offset(os.fstat(t.fd).st_size, t.size)
        if t.cursor == 0:
            os.ftruncate(t.fd, 0)
        done = 0
        while done < t.cursor:
            block = os.pread(t.fd, min(1 << 20, t.cursor - done), done)
            if not block:
                raise OSError(errno.EIO, "short read")
            t.hasher.update(block)
            done += len(block)
    except OSError as exc:
        t.verify_error = dx.os_error_text("read", t.partial, exc)


def _private(shared: Path) -> Path:
    return shared.with_name(f"{shared.name}.{secrets.token_hex(4)}")


def _size_of(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except (OSError, ValueError):
        return None


def _close(t: _Transfer) -> None:
    if t.fd >= 0:
        try:
            os.close(t.fd)
        except OSError:
            pass
        t.fd = -1


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
