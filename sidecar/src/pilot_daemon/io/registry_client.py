"""Registry client: ``[u32 len][JSON]`` requests in lock-step over TCP, optionally TLS.

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

from ..proto import registry as reg
from ..proto.proxy import ProxyRefused
from .udp import split_host_port

log = logging.getLogger("pilot_daemon.registry")

REQUEST_TIMEOUT = 10.0
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


class RegistryClient:
    def __init__(self, address: str, *, tls: bool = False, trust: str = "pinned", fingerprint: str = "") -> None:
        self._lock = asyncio.Lock()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self.requests = 0
        self.failures = 0
        self.configure(address, tls=tls, trust=trust, fingerprint=fingerprint)

    def configure(self, address: str, *, tls: bool, trust: str, fingerprint: str, dial: Dial | None = None) -> None:
        """Point at ``address`` (raises ValueError for bad TLS settings); ``dial(host, port, tls=, timeout=)``
        replaces the plain connect (e.g. through a proxy)."""
        self.host, self.port = split_host_port(address)
        self.ssl = tls_context(trust, fingerprint) if tls else None
        self.fingerprint = normalize_fingerprint(fingerprint) if tls and trust == "pinned" else ""
        self.dial = dial
        self._backoff = 0.0
        self._drop()

    async def _connect(self) -> None:
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
        self._reader, self._writer, self._backoff = reader, writer, 0.0

    def _drop(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(self, msg: reg.Message, *, retry: bool = True) -> reg.Message:
        """Send one request, return the reply; raises ``RegistryError`` (its text) or ``RegistryUnavailable``."""
        async with self._lock:
            self.requests += 1
            for attempt in range(2 if retry else 1):
                if self._writer is None:
                    await self._connect()
                assert self._reader is not None and self._writer is not None
                try:
                    self._writer.write(reg.encode(msg))
                    header = await asyncio.wait_for(self._reader.readexactly(4), REQUEST_TIMEOUT)
                    body = await asyncio.wait_for(self._reader.readexactly(reg.frame_length(header)), REQUEST_TIMEOUT)
                except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                    self._drop()
                    self.failures += 1
                    if attempt or not retry:
                        raise RegistryUnavailable(f"connection to {self.host}:{self.port} lost: {exc!r}") from None
                    continue
                except (reg.RegistryError, asyncio.CancelledError):
                    self._drop()  # a half-read reply would desynchronise the lock-step connection
                    raise
                return reg.decode_reply(body)
            raise AssertionError("unreachable")

    async def close(self) -> None:
        writer = self._writer
        self._drop()
        if writer is not None:
            try:
                await writer.wait_closed()
            except (OSError, ssl.SSLError):
                pass
