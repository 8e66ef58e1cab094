"""The official 1.18 receiver's storage caps on port 1001: numbers and refusal texts (sans-I/O).

- Inbox (``~/.pilot/inbox``, what ``pilotctl inbox`` reads): at most 256 MiB of message files. Each message's
  exact JSON size is admitted before it is written; when it does not fit, the oldest files (by mtime) are
  removed until the inbox plus the message fits in 90 % of the cap; a message still without room is refused
  (``ERR <TYPE> save failed: inbox byte budget exceeded: ...``, event ``inbox.full``). Every 64th save of the
  service also trims the inbox to 10000 files. A message larger than the cap is refused without evicting.
- Received files (``~/.pilot/received``, with the ``.partial`` files of chunked transfers): at most 2 GiB.
  A FILE frame that would pass it is refused (``received-files quota exceeded: ...``, event
  ``received.full``); a FILESTREAM transfer is refused at INIT, or at the chunk that would pass it
  (texts in ``filestream``).

The 1.18 daemon has no flag, setting or environment variable for these numbers.
"""
from __future__ import annotations

INBOX_MAX_BYTES = 256 << 20
INBOX_MAX_FILES = 10000
INBOX_LOW_WATER_PERCENT = 90
INBOX_EVICT_EVERY = 64           # the file-count trim runs on every 64th save (of any kind: one sequence)
RECEIVED_MAX_BYTES = 2 << 30


class QuotaExceeded(Exception):
    """A write refused by a cap; ``str()`` is the official text after ``save failed: ``."""


def low_water(max_bytes: int) -> int:
    """The level an eviction trims the inbox to: 90 % of the cap, rounded down."""
    return max_bytes // 100 * INBOX_LOW_WATER_PERCENT + max_bytes % 100 * INBOX_LOW_WATER_PERCENT // 100


def message_too_large(size: int, max_bytes: int) -> QuotaExceeded:
    return QuotaExceeded(f"inbox byte budget exceeded: a {size}-byte message is larger than the {max_bytes}-byte cap")


def inbox_full(stored: int, size: int, max_bytes: int) -> QuotaExceeded:
    return QuotaExceeded(f"inbox byte budget exceeded: {stored} + {size} > {max_bytes}")


def received_full(stored: int, size: int, max_bytes: int) -> QuotaExceeded:
    return QuotaExceeded(f"received-files quota exceeded: {stored} + {size} > {max_bytes}")
