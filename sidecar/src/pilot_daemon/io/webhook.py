"""Webhook delivery (``-webhook URL``, ``-webhook-secret``, IPC SetWebhook): the daemon's events POSTed to a URL.

``Webhook`` is what the daemon holds: ``emit(event, data)`` from anywhere on the event loop, never blocking;
``set_url`` for ``pilotctl set-webhook`` (checked, persisted in ``~/.pilot/webhook_url``); ``stats()`` for the
info counters; ``close()`` at shutdown. Each URL gets a ``Sender``: a bounded queue drained by one task with an
aiohttp session, so a slow, failing or absent receiver costs the daemon nothing but that task's waits. The rules
(body, signature, retries, circuit breaker, queue size) are the official 1.18 daemon's, in ``proto.webhook``.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..proto import webhook as wh
from ..proto.addr import Addr
from . import clock

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger("pilot_daemon.webhook")

READ_LIMIT = 64 << 10     # of a response body read (so its connection can be reused); the rest is not read


class Sender:
    """Delivers the events of one URL in order; a new URL gets a new sender (event ids from 1, counters at 0)."""

    def __init__(self, url: str, secret: str, node_id: Callable[[], int], *,
                 attempt_timeout: float = wh.ATTEMPT_TIMEOUT, initial_backoff: float = wh.INITIAL_BACKOFF,
                 cooldown: float = wh.CIRCUIT_COOLDOWN, queue_size: int = wh.QUEUE_SIZE) -> None:
        self.url, self.secret, self.node_id = url, secret, node_id
        self.attempt_timeout, self.backoff_scale = attempt_timeout, initial_backoff / wh.INITIAL_BACKOFF
        self.circuit = wh.Circuit(cooldown=cooldown)
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue(queue_size)
        self.event_id = 0
        self.dropped = 0
        self.delivered = 0
        self.closed = False
        self.worker: asyncio.Task | None = None

    @property
    def circuit_skips(self) -> int:
        return self.circuit.skips

    def emit(self, event: str, data: dict | None) -> None:
        if self.closed:
            return
        self.event_id += 1
        try:
            body = wh.encode_event(self.event_id, event, self.node_id(), time.time_ns(), data)
        except (TypeError, ValueError) as exc:     # a hook's bug must not reach the code that emitted
            log.error("webhook event %s not sent: %s", event, exc)
            return
        try:
            self.queue.put_nowait((event, body))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("webhook queue full, dropping event", extra={"event": event})
            return
        if self.worker is None:
            try:
                self.worker = asyncio.get_running_loop().create_task(self._run())
            except RuntimeError:     # no loop running (yet): the next emit on the loop starts the task
                pass

    async def close(self, timeout: float = wh.DRAIN_TIMEOUT) -> None:
        """Stop taking events; give the queued ones up to ``timeout`` seconds to go out."""
        self.closed = True
        if self.worker is None:
            return
        try:
            await asyncio.wait_for(self.queue.join(), timeout)
        except asyncio.TimeoutError:
            log.warning("webhook drain timeout, abandoning remaining events",
                        extra={"url": self.url, "left": self.queue.qsize()})
        self.worker.cancel()
        await asyncio.gather(self.worker, return_exceptions=True)

    async def _run(self) -> None:
        import aiohttp     # only once there is something to send: ~10 MiB and ~0.1 s a daemon without webhooks keeps
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.attempt_timeout),
                                        skip_auto_headers=("Accept",), trust_env=wh.proxied(self.url))
        try:
            while True:
                event, body = await self.queue.get()
                try:
                    await self._post(session, event, body)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("webhook delivery of %s failed", event)
                finally:
                    self.queue.task_done()
        finally:
            await session.close()

    async def _post(self, session: aiohttp.ClientSession, event: str, body: bytes) -> None:
        if not self.circuit.allow(clock.now()):
            return
        headers = wh.headers(body, self.secret)
        for attempt in range(wh.MAX_ATTEMPTS):
            delay = wh.backoff(attempt) * self.backoff_scale
            if delay:
                await asyncio.sleep(delay)
            try:
                async with session.post(self.url, data=body, headers=headers) as resp:
                    status = resp.status
                    await resp.content.read(READ_LIMIT)
            except asyncio.CancelledError:
                raise
            except Exception as exc:      # transport errors, timeouts, a URL aiohttp cannot use
                log.warning("webhook POST failed", extra={"event": event, "attempt": attempt + 1,
                                                          "error": f'Post "{self.url}": {self._describe(exc)}'})
                continue
            kind = wh.outcome(status)
            if kind == "delivered":
                self.delivered += 1
                self.circuit.delivered()
                return
            if kind == "client":
                log.warning("webhook POST client error", extra={"event": event, "status": status})
                return
            log.warning("webhook POST server error", extra={"event": event, "status": status, "attempt": attempt + 1})
        if self.circuit.given_up(clock.now()):
            log.warning("webhook circuit breaker opened", extra={"consecutive_failures": self.circuit.failures,
                                                                 "cooldown": f"{self.circuit.cooldown:g}s"})

    def _describe(self, exc: Exception) -> str:
        if isinstance(exc, asyncio.TimeoutError):
            return f"no answer within {self.attempt_timeout:g}s"
        return str(exc) or type(exc).__name__


class Webhook:
    """The daemon's webhook: the current sender (none without a URL), its URL file, the counters."""

    def __init__(self, url: str, secret: str, node_id: Callable[[], int], *, home: str | None = None,
                 **sender_options) -> None:
        self.secret, self.node_id, self.options = secret, node_id, sender_options
        self.path = Path(home or os.path.expanduser("~")) / ".pilot" / wh.URL_FILE
        url = url or self._load()
        self.sender = Sender(url, secret, node_id, **sender_options) if url else None

    @property
    def url(self) -> str:
        return self.sender.url if self.sender else ""

    @property
    def active(self) -> bool:
        """A URL is set: callers on hot paths (every datagram, every SYN) build event data only then."""
        return self.sender is not None

    def emit(self, event: str, data: dict | None = None) -> None:
        """Queue an event for the URL (nothing without one); never blocks, never raises for a full queue."""
        if self.sender is not None:
            self.sender.emit(event, data)

    async def heartbeats(self, interval: float = wh.HEARTBEAT_INTERVAL) -> None:
        """``agent.heartbeat`` every minute, as the official daemon sends it (run as a daemon task)."""
        while True:
            await asyncio.sleep(interval)
            node = self.node_id()
            self.emit("agent.heartbeat", {"address": str(Addr(0, node)), "node_id": node})

    def registered(self, address: str, endpoint: str, node: int, *, again: bool) -> None:
        for event, data in wh.registration_events(address, endpoint, node, again=again):
            self.emit(event, data)

    async def set_url(self, url: str) -> None:
        """``set-webhook``: check ``url`` (``WebhookURLError`` with the official text), send what is queued for
        the old URL (up to 5 s), switch, keep the URL for the next start. "" turns delivery off."""
        if url:
            wh.validate_url(url)
        old, self.sender = self.sender, (Sender(url, self.secret, self.node_id, **self.options) if url else None)
        if old is not None:
            await old.close()
        self._save(url)
        if url:
            log.info("webhook updated", extra={"url": url})
        else:
            log.info("webhook cleared")

    def stats(self) -> tuple[int, int]:
        """``(webhook_queue_dropped, webhook_circuit_skips)`` of the current URL."""
        return (self.sender.dropped, self.sender.circuit_skips) if self.sender else (0, 0)

    async def close(self) -> None:
        if self.sender is not None:
            await self.sender.close()

    def _load(self) -> str:
        try:
            url = self.path.read_text().strip()
            if url:
                wh.validate_url(url)
            return url
        except FileNotFoundError:
            return ""
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            log.warning("ignoring the saved webhook URL %s: %s", self.path, exc)
            return ""

    def _save(self, url: str) -> None:
        try:
            if not url:
                self.path.unlink(missing_ok=True)
                return
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(url)
        except OSError as exc:
            log.warning("failed to persist webhook URL", extra={"err": str(exc)})
