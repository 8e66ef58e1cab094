"""Time sources: ``now()`` (monotonic seconds, what the sans-I/O core is fed) and ``wall()`` (unix seconds)."""
from __future__ import annotations

import time

now = time.monotonic
wall = time.time
