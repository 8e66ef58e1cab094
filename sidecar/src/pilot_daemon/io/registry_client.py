"""Registry client: ``[u32 len][JSON]`` requests in lock-step over TCP, optionally TLS, on a small pool.

Up to ``POOL_SIZE`` connections (as the official daemon's pooled client): each carries one request at a time,
so a slow request (a long poll, a registry under load) does not hold up the resolves behind it; idle
connections are reused.

TLS trust as the official daemon: ``pinned`` checks the SHA-256 of the server certificate (DER) against
``-registry-fingerprint``; ``system`` verifies against the CA store (``SSL_CERT_FILE``/``SSL_CERT_DIR``
honoured by Python's ssl) with SNI. A broken connection is re-opened with exponential backoff.
``configure()`` re-points the client (the transport switched: compat reaches the registry over TLS,
maybe through a proxy, with ``dial``); the next request connects anew.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import ssl
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from ..proto import registry as reg
from ..proto.proxy import ProxyRefused
from .udp import split_host_port

log = logging.getLogger("pilot_daemon.registry")

REQUEST_TIMEOUT = 10.0
POOL_SIZE = 5
BACKOFF_MIN, BACKOFF_MAX = 0.25, 10.0


class RegistryUnavailable(reg.RegistryError):
    """No connection to the registry could be made."""


def tls_context(trust: str, fingerprint: str) -> ssl.SSLContext:
    if trust == "system":
        return ssl.create_default_context()
    if trust != "pinned":
        raise ValueError(f"-registry-trust {trust!r}: use 'pinned' or 'system'")
    if not fingerprint:
        raise ValueError("-registry-trust pinned needs -registry-fingerprint (hex SHA-256 of the registry's cert)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the pin below is the check
    return ctx


def normalize_fingerprint(text: str) -> str:
    return text.replace(":", "").strip().lower()


class FingerprintMismatch(ssl.SSLError):
    """The server's certificate is not the pinned one."""


def check_fingerprint(writer: asyncio.StreamWriter, pinned: str, what: str) -> None:
    """Raise ``FingerprintMismatch`` (closing the connection) unless the peer's DER cert hashes to ``pinned``."""
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True) or b""
    got = hashlib.sha256(der).hexdigest()
    if not hmac.compare_digest(got, pinned):
        writer.close()
        raise FingerprintMismatch(f"TLS fingerprint mismatch for {what}: server has {got}, pinned {pinned}; "
                                  "check -registry-fingerprint")


Dial = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class _Conn(NamedTuple):
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    generation: int


class RegistryClient:
    def __init__(self, address: str, *, tls: bool = False, trust: str = "pinned", fingerprint: str = "",
                 pool_size: int = POOL_SIZE) -> None:
        self._slots = asyncio.Semaphore(pool_size)
        self._idle: list[_Conn] = []
        self._generation = 0
        self.requests = 0
        self.failures = 0
        self.configure(address, tls=tls, trust=trust, fingerprint=fingerprint)

    def configure(self, address: str, *, tls: bool, trust: str, fingerprint: str, dial: Dial | None = None) -> None:
        """Point at ``address`` (raises ValueError for bad TLS settings); ``dial(host, port, tls=, timeout=)``
        replaces the plain connect (e.g. through a proxy). Connections to the old address are closed (those
        in use when their request ends)."""
        self.host, self.port = split_host_port(address)
        self.ssl = tls_context(trust, fingerprint) if tls else None
        self.fingerprint = normalize_fingerprint(fingerprint) if tls and trust == "pinned" else ""
        self.dial = dial
        self._backoff = 0.0
        self._generation += 1
        self._drop_idle()

    async def _connect(self) -> _Conn:
        generation = self._generation
        if self._backoff:
            await asyncio.sleep(self._backoff)
        try:
            if self.dial is not None:
                reader, writer = await self.dial(self.host, self.port, tls=self.ssl, timeout=REQUEST_TIMEOUT)
            else:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    self.host, self.port, ssl=self.ssl, server_hostname=self.host if self.ssl else None),
                    REQUEST_TIMEOUT)
            if self.fingerprint:
                check_fingerprint(writer, self.fingerprint, f"registry {self.host}:{self.port}")
        except (OSError, asyncio.TimeoutError, ssl.SSLError, reg.RegistryError, ProxyRefused) as exc:
            self._backoff = min(BACKOFF_MAX, max(BACKOFF_MIN, self._backoff * 2))
            if isinstance(exc, FingerprintMismatch):
                raise RegistryUnavailable(str(exc)) from None
            raise RegistryUnavailable(f"cannot reach {self.host}:{self.port}: {str(exc) or 'timed out'}") from None
        self._backoff = 0.0
        return _Conn(reader, writer, generation)

    def _drop_idle(self) -> None:
        for conn in self._idle:
            conn.writer.close()
        self._idle.clear()

    def _release(self, conn: _Conn) -> None:
        if conn.generation == self._generation and not conn.writer.is_closing():
            self._idle.append(conn)
        else:
            conn.writer.close()

    async def request(self, msg: reg.Message, *, retry: bool = True) -> reg.Message:
        """Send one request, return the reply; raises ``RegistryError`` (its text) or ``RegistryUnavailable``."""
        async with self._slots:
            self.requests += 1
            for attempt in range(2 if retry else 1):
                conn = self._idle.pop() if self._idle else await self._connect()
                try:
                    conn.writer.write(reg.encode(msg))
                    header = await asyncio.wait_for(conn.reader.readexactly(4), REQUEST_TIMEOUT)
                    body = await asyncio.wait_for(conn.reader.readexactly(reg.frame_length(header)), REQUEST_TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    conn.writer.close()
                    self._drop_idle()   # the registry closed this one (restart, idle timeout): likely all of them
                    self.failures += 1
                    if attempt or not retry:
                        raise RegistryUnavailable(f"connection to {self.host}:{self.port} lost: {exc!r}") from None
                    continue    # once more on a fresh connection
                except BaseException:
                    conn.writer.close()  # a half-read reply would desynchronise the lock-step connection
                    raise
                self._release(conn)
                return reg.decode_reply(body)
            raise AssertionError("unreachable")

    async def close(self) -> None:
        writers = [conn.writer for conn in self._idle]
        self._drop_idle()
        for writer in writers:
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
