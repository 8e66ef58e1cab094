"""What port 1001 keeps on disk, measured and bounded: the inbox's byte and file budget, the received dir's size.

The numbers and texts are ``proto.storage_caps``'. The inbox budget keeps a running byte total, seeded by
one listing of the directory and re-read before anything is evicted (other processes delete inbox files
too: ``pilotctl inbox --clear``), so the cap costs no directory listing per message. The service writes one
message at a time, so no write is ever in flight while another is admitted.
"""
from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import NamedTuple

from ..proto import storage_caps as caps

log = logging.getLogger("pilot_daemon.dataexchange")


class _File(NamedTuple):
    mtime_ns: int
    name: str
    size: int


def _scan(directory: Path) -> tuple[list[_File], int]:
    """The files directly in ``directory`` (not subdirectories) and their total size."""
    files = []
    with os.scandir(directory) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            files.append(_File(st.st_mtime_ns, entry.name, st.st_size))
    return files, sum(f.size for f in files)


def _remove_oldest(directory: Path, files: list[_File], total: int, limit: int) -> tuple[int, int]:
    """Delete files, oldest first, until ``total`` is at most ``limit``: ``(new total, files removed)``.
    A file that cannot be removed is skipped and still counted."""
    removed = 0
    for f in sorted(files):
        if total <= limit:
            break
        try:
            os.remove(directory / f.name)
        except OSError:
            continue
        total -= f.size
        removed += 1
    return total, removed


class InboxBudget:
    def __init__(self, max_bytes: int = caps.INBOX_MAX_BYTES, max_files: int = caps.INBOX_MAX_FILES) -> None:
        self.max_bytes, self.max_files = max_bytes, max_files
        self.dir: Path | None = None       # the directory on_disk was counted for
        self.on_disk = 0

    def _rescan(self, directory: Path) -> list[_File]:
        files, self.on_disk = _scan(directory)
        self.dir = directory
        return files

    def _trim(self, directory: Path, files: list[_File], limit: int) -> None:
        before = self.on_disk
        self.on_disk, removed = _remove_oldest(directory, files, self.on_disk, limit)
        log.info("inbox eviction (bytes)", extra={"dir": str(directory), "evicted": removed, "bytes_before": before,
                                                  "bytes_after": self.on_disk, "max_bytes": self.max_bytes})

    def reserve(self, directory: Path, size: int) -> None:
        """Admit a message file of ``size`` bytes, evicting the oldest when needed; raise ``QuotaExceeded``."""
        cap = self.max_bytes
        if cap <= 0:
            return
        if size > cap:
            raise caps.message_too_large(size, cap)
        try:
            if self.dir != directory:
                self._rescan(directory)
            if self.on_disk + size <= cap:
                return
            files = self._rescan(directory)      # the total may be stale: decide from a fresh listing
        except OSError as exc:
            log.warning("inbox byte budget: cannot list inbox; admitting message unchecked",
                        extra={"dir": str(directory), "err": str(exc)})
            return
        if self.on_disk + size > cap:
            target = caps.low_water(cap)
            self._trim(directory, files, (cap if size > target else target) - size)
        if self.on_disk + size > cap:
            raise caps.inbox_full(self.on_disk, size, cap)

    def written(self, directory: Path, size: int) -> None:
        if self.dir == directory:
            self.on_disk += size

    def evict_overflow(self, directory: Path) -> None:
        """Both caps from a fresh listing: at most ``max_files`` files, and the byte cap (to 90 % when over)."""
        try:
            files = self._rescan(directory)
        except OSError as exc:
            log.debug("inbox evict: readdir", extra={"dir": str(directory), "err": str(exc)})
            return
        if len(files) > self.max_files:
            files.sort()
            excess = len(files) - self.max_files
            self.on_disk, removed = _remove_oldest(directory, files[:excess], self.on_disk, -1)
            files = files[excess:]
            log.info("inbox eviction", extra={"dir": str(directory), "evicted": removed, "remaining": len(files)})
        if 0 < self.max_bytes < self.on_disk:
            self._trim(directory, files, caps.low_water(self.max_bytes))


def tree_bytes(directory: Path, exclude: Path | None = None) -> int:
    """The size of every entry under ``directory`` but directories (links not followed) and ``exclude``;
    a missing directory is 0 and unreadable entries are skipped."""
    total, todo, skip = 0, [os.fspath(directory)], os.fspath(exclude) if exclude is not None else None
    while todo:
        try:
            with os.scandir(todo.pop()) as entries:
                for entry in entries:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            todo.append(entry.path)
                        elif entry.path != skip:
                            total += entry.stat(follow_symlinks=False).st_size
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def make_dirs(directory: Path) -> None:
    """``mkdir -p`` with mode 0700; an existing non-directory fails with ENOTDIR, as Go's ``os.MkdirAll``."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(directory)) from None


def free_bytes(directory: Path) -> int | None:
    """Space available to unprivileged writers on the filesystem holding ``directory`` (None: unknown)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_bsize
