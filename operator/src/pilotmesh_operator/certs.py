"""The injector's TLS material, as a pure function of what the Secret holds now and the time.

The operator keeps, in one Secret:
  ca.crt / ca.key    a long-lived CA (10 years) -- its certificate is the webhook's caBundle;
  tls.crt / tls.key  the injector's serving certificate, short-lived, renewed at two thirds of its life;
  ca-bundle.crt      the caBundle to publish: the current CA, plus the previous one during a CA rotation.
`plan(data, names, now)` returns the Secret data to write (or the same data when nothing is due).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import ipaddress

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_LIFETIME = dt.timedelta(days=3650)
LEAF_LIFETIME = dt.timedelta(days=90)
RENEW_AT = 2 / 3            # renew a certificate once this share of its life has passed
BACKDATE = dt.timedelta(minutes=5)  # tolerate clock skew between the operator and the apiserver


@dataclasses.dataclass(frozen=True)
class Plan:
    data: dict[str, bytes]
    changed: bool
    reason: str                 # why it changed (or "certificates valid")
    not_after: dt.datetime      # the serving certificate's expiry


def _pem(obj) -> bytes:
    return obj.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _due(cert: x509.Certificate, now: dt.datetime) -> bool:
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return now >= start + (end - start) * RENEW_AT or now < start


def _new_ca(now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"pilotmesh-injector-ca-{now:%Y%m%d%H%M%S}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(now + CA_LIFETIME)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def _new_leaf(ca: x509.Certificate, ca_key, names: tuple[str, ...], now: dt.datetime,
              lifetime: dt.timedelta) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - BACKDATE).not_valid_after(min(now + lifetime, ca.not_valid_after_utc))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def _load(data: dict[str, bytes]):
    """The certificates in the Secret, or None for any that is missing or unreadable."""
    try:
        ca = x509.load_pem_x509_certificate(data["ca.crt"])
        ca_key = serialization.load_pem_private_key(data["ca.key"], None)
    except (KeyError, ValueError, TypeError):
        return None, None, None
    try:
        leaf = x509.load_pem_x509_certificate(data["tls.crt"])
        serialization.load_pem_private_key(data["tls.key"], None)
    except (KeyError, ValueError, TypeError):
        leaf = None
    return ca, ca_key, leaf


def _leaf_matches(leaf: x509.Certificate, ca: x509.Certificate, names: tuple[str, ...]) -> bool:
    try:
        leaf.verify_directly_issued_by(ca)
        sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    have = {str(v) for v in sans.get_values_for_type(x509.DNSName)}
    have |= {str(v) for v in sans.get_values_for_type(x509.IPAddress)}
    return have == set(names)


def plan(data: dict[str, bytes] | None, names: tuple[str, ...], now: dt.datetime,
         leaf_lifetime: dt.timedelta = LEAF_LIFETIME) -> Plan:
    """What the Secret should hold at ``now`` for a server reachable as ``names`` (DNS names or IPs)."""
    if not names:
        raise ValueError("the serving certificate needs at least one DNS name or IP address")
    data = dict(data or {})
    ca, ca_key, leaf = _load(data)
    reasons = []
    if ca is None:
        ca, ca_key = _new_ca(now)
        data.update({"ca.crt": _pem(ca), "ca.key": _key_pem(ca_key), "ca-bundle.crt": _pem(ca)})
        reasons.append("new CA")
        leaf = None
    elif _due(ca, now):
        old = _pem(ca)
        ca, ca_key = _new_ca(now)
        # keep trusting the old CA until every replica serves a chain from the new one
        data.update({"ca.crt": _pem(ca), "ca.key": _key_pem(ca_key), "ca-bundle.crt": _pem(ca) + old})
        reasons.append("CA rotated (previous CA kept in the bundle)")
        leaf = None
    if leaf is None or _due(leaf, now) or not _leaf_matches(leaf, ca, names):
        if leaf is not None and not reasons:
            reasons.append("serving certificate renewed" if _due(leaf, now) else "serving certificate re-issued for new names")
        elif not reasons:
            reasons.append("serving certificate issued")
        leaf, key = _new_leaf(ca, ca_key, names, now, leaf_lifetime)
        data.update({"tls.crt": _pem(leaf) + _pem(ca), "tls.key": _key_pem(key)})
    data.setdefault("ca-bundle.crt", _pem(ca))
    return Plan(data, bool(reasons), "; ".join(reasons) or "certificates valid", leaf.not_valid_after_utc)


def drop_previous_ca(data: dict[str, bytes]) -> dict[str, bytes]:
    """Once every injector replica serves the new chain, publish only the current CA."""
    return {**data, "ca-bundle.crt": data["ca.crt"]}
