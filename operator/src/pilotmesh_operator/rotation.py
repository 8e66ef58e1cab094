"""The end of a CA rotation, decided purely: when may the previous CA leave the webhook's caBundle?

During a CA rotation (certs.plan) ca-bundle.crt holds the new CA and the previous one, so the apiserver
trusts injectors that still serve a certificate from either. The previous CA may go once every injector
that can receive traffic has been *seen* serving a certificate issued by the new CA: the operator makes a
TLS handshake with each endpoint of the injector Service (every replica, ready or not; in url mode the one
URL) and looks at the leaf it is served -- evidence from the wire, not from what a replica claims.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from .certinfo import pem_certificates


@dataclasses.dataclass(frozen=True)
class Served:
    endpoint: str                   # host:port
    leaf_der: bytes | None          # the certificate it served; None when the handshake failed
    required: bool = True           # a ready endpoint (takes traffic) must answer; a not-ready one may be silent
    error: str = ""


def rotating(data: Mapping[str, bytes]) -> bool:
    """Does the published bundle still hold more than the current CA?"""
    return len(pem_certificates(data.get("ca-bundle.crt", b""))) > 1


def may_drop_previous_ca(data: Mapping[str, bytes], served: Sequence[Served]) -> tuple[bool, str]:
    """(drop now?, why) given what each injector endpoint served."""
    if not rotating(data):
        return False, "no CA rotation in progress"
    try:
        ca = x509.load_pem_x509_certificate(data["ca.crt"])
    except (KeyError, ValueError):
        return False, "ca.crt is unreadable"
    answered = 0
    for s in served:
        if s.leaf_der is None:
            if s.required:
                return False, f"injector {s.endpoint} did not complete a TLS handshake ({s.error or 'no answer'})"
            continue
        try:
            leaf = x509.load_der_x509_certificate(s.leaf_der)
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False, f"injector {s.endpoint} still serves a certificate the new CA did not issue"
        answered += 1
    if not answered:
        return False, "no injector endpoint answered"
    return True, f"all {answered} injector endpoint(s) serve a certificate from the new CA"
