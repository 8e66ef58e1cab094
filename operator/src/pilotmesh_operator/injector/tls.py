"""The injector's serving certificate, reloaded in place: new handshakes use the new chain, open
connections carry on, nothing is ever refused (unlike restarting the listener).

Each load builds a fresh SSLContext and swaps one reference; the listener's context picks the current one
in its SNI callback (called for every handshake, with or without SNI). Loading into the live context instead
would let a handshake running in another thread see the new certificate with the old key (measured: a
handshake refused now and then during a swap).

Sources: files (a mounted Secret; the kubelet swaps them atomically) polled by mtime, or the Secret
read through the API (for injectors that run outside the cluster, as in tests).
"""
from __future__ import annotations

import base64
import datetime as dt
import logging
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509

log = logging.getLogger(__name__)


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class ReloadingContext:
    def __init__(self) -> None:
        self.context = _server_context()       # the listener's; hands each handshake to self._current
        self.context.sni_callback = self._select
        self._current: ssl.SSLContext | None = None
        self.loaded = False
        self.not_after: dt.datetime | None = None
        self._seen: tuple | None = None

    def _select(self, conn: ssl.SSLObject, server_name: str | None, _listener: ssl.SSLContext) -> None:
        current = self._current
        if current is not None:
            conn.context = current

    def load_pem(self, cert_pem: bytes, key_pem: bytes) -> bool:
        """Swap in a new chain; False (and the old chain kept) when it is unusable."""
        if (cert_pem, key_pem) == self._seen:
            return False
        with tempfile.TemporaryDirectory(prefix="pilotmesh-tls.") as d:
            crt, key = Path(d, "tls.crt"), Path(d, "tls.key")
            crt.write_bytes(cert_pem)
            key.touch(0o600)
            key.write_bytes(key_pem)
            try:
                fresh = _server_context()
                fresh.load_cert_chain(crt, key)
                leaf = x509.load_pem_x509_certificate(cert_pem)
                if not self.loaded:                 # before the listener starts: a fallback chain
                    self.context.load_cert_chain(crt, key)
            except (ssl.SSLError, ValueError, OSError) as exc:
                log.error("serving certificate not loaded (keeping the previous one): %s", exc)
                return False
        self._current = fresh                       # one reference swap: old chain or new, never half of each
        self._seen, self.loaded, self.not_after = (cert_pem, key_pem), True, leaf.not_valid_after_utc
        log.info("serving certificate loaded, valid until %s", self.not_after.isoformat())
        return True

    def load_files(self, cert_file: str, key_file: str) -> bool:
        try:
            return self.load_pem(Path(cert_file).read_bytes(), Path(key_file).read_bytes())
        except OSError as exc:
            log.error("cannot read the serving certificate: %s", exc)
            return False

    def load_secret(self, secret: dict) -> bool:
        data = secret.get("data") or {}
        try:
            return self.load_pem(base64.b64decode(data["tls.crt"]), base64.b64decode(data["tls.key"]))
        except (KeyError, ValueError) as exc:
            log.error("secret %s has no usable tls.crt/tls.key: %s", (secret.get("metadata") or {}).get("name"), exc)
            return False


def files_changed(cert_file: str, key_file: str, last: tuple | None) -> tuple | None:
    """The files' (mtime, size) pair when it differs from ``last``; None when unchanged or unreadable."""
    try:
        now = tuple((os.stat(f).st_mtime_ns, os.stat(f).st_size) for f in (cert_file, key_file))
    except OSError:
        return None
    return now if now != last else None
