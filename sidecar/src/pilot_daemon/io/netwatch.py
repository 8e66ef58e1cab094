"""Network changes seen on the event loop (Linux rtnetlink), debounced, for ``-transport auto``'s re-probe.

One ``AF_NETLINK``/``NETLINK_ROUTE`` socket joined to the link, address and route groups, read with
``loop.add_reader``. A burst (an address brings its routes; a link brings its addresses) becomes one call of
``on_change(reason)``, ``DEBOUNCE`` after the last message and at most ``MAX_DELAY`` after the first.
Where netlink is unavailable (not Linux, refused) ``NetWatch.open`` logs at debug and returns None: auto then
re-probes on its timer alone.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import Callable

from ..proto import netlink as nl

log = logging.getLogger("pilot_daemon.netwatch")

DEBOUNCE = 0.5
MAX_DELAY = 2.0
READ_SIZE = 1 << 16


class NetWatch:
    def __init__(self, sock: socket.socket, on_change: Callable[[str], None], *, debounce: float = DEBOUNCE,
                 max_delay: float = MAX_DELAY) -> None:
        """Watch ``sock`` (an rtnetlink socket, or any datagram socket carrying such messages)."""
        self.sock, self.on_change = sock, on_change
        self.debounce, self.max_delay = debounce, max_delay
        self.loop = asyncio.get_running_loop()
        self._pending: list[str] = []
        self._first = 0.0
        self._timer: asyncio.TimerHandle | None = None
        sock.setblocking(False)
        self.loop.add_reader(sock.fileno(), self._readable)

    @classmethod
    def open(cls, on_change: Callable[[str], None], **kw: float) -> "NetWatch | None":
        family, proto = getattr(socket, "AF_NETLINK", None), getattr(socket, "NETLINK_ROUTE", 0)
        if family is None:
            log.debug("no netlink on this platform: network changes are not watched (timer re-probes only)")
            return None
        sock = None
        try:
            sock = socket.socket(family, socket.SOCK_RAW, proto)
            sock.bind((0, nl.GROUPS))
            watch = cls(sock, on_change, **kw)
        except OSError as exc:     # e.g. a sandbox without netlink
            if sock is not None:
                sock.close()
            log.debug("netlink unavailable (%s): network changes are not watched (timer re-probes only)", exc)
            return None
        log.debug("watching network changes (netlink: links, addresses, routes)")
        return watch

    def _readable(self) -> None:
        found = False
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:    # ENOBUFS: the kernel dropped notifications; still a change
                    log.debug("netlink read failed: %s", exc)
                    break
                self._pending.append(nl.LOST)
                found = True
                continue
            if not data:
                break
            kinds = nl.changes(data)
            self._pending += kinds
            found = found or bool(kinds)
        if found:
            self._schedule()

    def _schedule(self) -> None:
        now = self.loop.time()
        if self._timer is None:
            self._first = now
        else:
            self._timer.cancel()
        self._timer = self.loop.call_at(min(now + self.debounce, self._first + self.max_delay), self._fire)

    def _fire(self) -> None:
        self._timer = None
        reason, self._pending = nl.describe(self._pending), []
        self.on_change(reason)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.sock.fileno() >= 0:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
