"""Certificates for the TLS listener: load and check PEM files, build server contexts, and
generate a small CA + leaf for labs and tests (`-tls-self-signed DIR`).

One certificate serves both SNI names (a SAN list with `registry.<domain>` and `beacon.<domain>`,
as cert-manager issues it). `TLSFiles.load()` refuses a missing, unreadable, expired, not yet
valid or key-mismatched pair with a `TLSConfigError` that says what to fix.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from .errors import RendezvousError


class TLSConfigError(RendezvousError):
    """The certificate or key files cannot serve TLS; the message names the file and the fix."""


@dataclass(frozen=True)
class CertInfo:
    names: tuple[str, ...]          # DNS and IP SANs
    not_before: datetime.datetime
    not_after: datetime.datetime
    fingerprint: str                # hex SHA-256 of the leaf DER, what `-registry-fingerprint` pins


def _utc(now: float | None) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc) if now is not None else \
        datetime.datetime.now(datetime.timezone.utc)


def inspect_pem(cert_pem: bytes) -> CertInfo:
    """Facts about the first certificate of a PEM chain."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = tuple(san.get_values_for_type(x509.DNSName)) + tuple(
            str(ip) for ip in san.get_values_for_type(x509.IPAddress))
    except x509.ExtensionNotFound:
        names = ()
    return CertInfo(names, cert.not_valid_before_utc, cert.not_valid_after_utc,
                    cert.fingerprint(hashes.SHA256()).hex())


def name_matches(pattern: str, name: str) -> bool:
    """RFC 6125 matching of one SAN entry (a leading `*.` covers exactly one label)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


@dataclass
class TLSFiles:
    """A certificate chain + key on disk. `load()` checks them and returns a server context."""
    cert: Path
    key: Path

    def stamp(self) -> tuple[float, float, int, int]:
        """Changes whenever either file is replaced or rewritten (mtime + inode)."""
        a, b = os.stat(self.cert), os.stat(self.key)
        return a.st_mtime, b.st_mtime, a.st_ino, b.st_ino

    def load(self, names: tuple[str, ...] = (), now: float | None = None) -> tuple[ssl.SSLContext, CertInfo]:
        for path, what in ((self.cert, "certificate"), (self.key, "key")):
            if not path.is_file():
                raise TLSConfigError(f"TLS {what} file {path} does not exist (pass -tls-cert/-tls-key, "
                                     "or -tls-self-signed DIR to generate a lab CA)")
        try:
            info = inspect_pem(self.cert.read_bytes())
        except (ValueError, OSError) as err:
            raise TLSConfigError(f"TLS certificate {self.cert} is not a PEM certificate: {err}") from None
        when = _utc(now)
        if when >= info.not_after:
            raise TLSConfigError(f"TLS certificate {self.cert} expired at {info.not_after:%Y-%m-%d %H:%M:%S} UTC; "
                                 "renew it (cert-manager or -tls-self-signed) and restart or let the reload pick it up")
        if when < info.not_before:
            raise TLSConfigError(f"TLS certificate {self.cert} is not valid before "
                                 f"{info.not_before:%Y-%m-%d %H:%M:%S} UTC; check the clock or the certificate")
        missing = [n for n in names if n and not any(name_matches(p, n) for p in info.names)]
        if missing:
            raise TLSConfigError(f"TLS certificate {self.cert} does not cover {', '.join(missing)} "
                                 f"(its names: {', '.join(info.names) or 'none'}); clients verifying the name "
                                 "would refuse it: issue one with these SANs or change -registry-sni/-beacon-sni")
        ctx = server_context()
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as err:
            reason = "the key does not match the certificate" if "KEY_VALUES_MISMATCH" in str(err) else str(err)
            raise TLSConfigError(f"TLS key {self.key} cannot serve certificate {self.cert}: {reason}") from None
        except OSError as err:
            raise TLSConfigError(f"cannot read TLS files {self.cert} / {self.key}: {err}") from None
        return ctx, info


def server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


# -- generation (labs and tests) ---------------------------------------------------------------
def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(name: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make_ca(common_name: str = "pilot-rendezvous lab CA", *, days: int = 3650) -> tuple[bytes, bytes]:
    """(ca_cert_pem, ca_key_pem): a P-256 CA that may only sign leaves (path length 0)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _utc(None)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return _pem_cert(cert), _pem_key(key)


def make_leaf(ca_cert_pem: bytes, ca_key_pem: bytes, names: list[str], *,
              not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None) -> tuple[bytes, bytes]:
    """(leaf_chain_pem, leaf_key_pem) for `names`, signed by the CA. Validity defaults to 90 days."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _utc(None)
    not_before = not_before or now - datetime.timedelta(minutes=5)
    not_after = not_after or now + datetime.timedelta(days=90)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(not_before).not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([_san(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return _pem_cert(cert) + ca_cert_pem, _pem_key(key)


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.replace(tmp, path)


def write_pair(cert: Path, key: Path, cert_pem: bytes, key_pem: bytes) -> None:
    """Replace both files atomically (key first, 0600), so a reload never sees a half-written pair."""
    _write(key, key_pem, 0o600)
    _write(cert, cert_pem, 0o644)


def ensure_self_signed(directory: Path, names: list[str], now: float | None = None) -> TLSFiles:
    """A lab CA (`ca.pem`, kept across restarts) and a leaf for `names` (`tls.crt`/`tls.key`),
    reissued when missing, expiring within 7 days or not covering `names`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    if not (ca_cert.is_file() and ca_key.is_file()):
        write_pair(ca_cert, ca_key, *make_ca())
    files = TLSFiles(directory / "tls.crt", directory / "tls.key")
    fresh = False
    if files.cert.is_file() and files.key.is_file():
        info = inspect_pem(files.cert.read_bytes())
        fresh = (info.not_after - _utc(now) > datetime.timedelta(days=7)
                 and all(any(name_matches(p, n) for p in info.names) for n in names))
    if not fresh:
        write_pair(files.cert, files.key, *make_leaf(ca_cert.read_bytes(), ca_key.read_bytes(), names))
    return files
