"""What the injector Secret holds, read for people and alerts (pure): expiries, CAs in the bundle."""
from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping

from cryptography import x509
from cryptography.exceptions import InvalidSignature


def pem_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; [] when it holds none or is unreadable."""
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        return []


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass(frozen=True)
class CertSummary:
    serving_not_after: dt.datetime | None
    serving_serial: str | None
    ca_not_after: dt.datetime | None
    bundle_cas: int                 # CAs published in ca-bundle.crt (2 during a CA rotation)
    problems: tuple[str, ...]

    def to_dict(self, now: dt.datetime) -> dict:
        left = (self.serving_not_after - now).total_seconds() if self.serving_not_after else None
        return {"servingNotAfter": stamp(self.serving_not_after) if self.serving_not_after else None,
                "servingSecondsLeft": int(left) if left is not None else None,
                "servingSerial": self.serving_serial,
                "caNotAfter": stamp(self.ca_not_after) if self.ca_not_after else None,
                "bundleCAs": self.bundle_cas, "caRotationInProgress": self.bundle_cas > 1,
                "problems": list(self.problems)}


def summarize(data: Mapping[str, bytes] | None, now: dt.datetime, warn_before: dt.timedelta) -> CertSummary:
    """Expiries and problems: missing or unreadable certificates, expired or expiring within ``warn_before``,
    a serving certificate not issued by the current CA."""
    if data is None:
        return CertSummary(None, None, None, 0, ("the injector Secret does not exist",))
    problems = []
    leaf = next(iter(pem_certificates(data.get("tls.crt", b""))), None)
    ca = next(iter(pem_certificates(data.get("ca.crt", b""))), None)
    bundle = pem_certificates(data.get("ca-bundle.crt", b""))
    if leaf is None:
        problems.append("tls.crt holds no readable certificate")
    elif leaf.not_valid_after_utc <= now:
        problems.append(f"the serving certificate expired at {stamp(leaf.not_valid_after_utc)}")
    elif leaf.not_valid_after_utc - now < warn_before:
        problems.append(f"the serving certificate expires soon ({stamp(leaf.not_valid_after_utc)}), not renewed:"
                        " is the operator running?")
    if ca is None:
        problems.append("ca.crt holds no readable certificate")
    elif leaf is not None:
        try:
            leaf.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            problems.append("the serving certificate was not issued by ca.crt")
    if ca is not None and ca not in bundle:
        problems.append("ca-bundle.crt does not hold ca.crt")
    return CertSummary(leaf.not_valid_after_utc if leaf else None, format(leaf.serial_number, "x") if leaf else None,
                       ca.not_valid_after_utc if ca else None, len(bundle), tuple(problems))
