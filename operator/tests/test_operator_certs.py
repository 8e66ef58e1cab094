"""The injector's certificate plan: issue, keep, renew at 2/3, rotate the CA with overlap, recover from junk."""
import datetime as dt

import pytest
from cryptography import x509

from pilotmesh_operator import certs

NAMES = ("pilotmesh-injector.pilot-system.svc", "127.0.0.1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _leaf(data):
    return x509.load_pem_x509_certificate(data["tls.crt"])


def test_first_plan_issues_a_ca_and_a_serving_cert_chaining_to_it():
    p = certs.plan(None, NAMES, T0)
    assert p.changed and p.reason == "new CA"
    ca = x509.load_pem_x509_certificate(p.data["ca.crt"])
    _leaf(p.data).verify_directly_issued_by(ca)
    assert p.data["ca-bundle.crt"] == p.data["ca.crt"]
    assert p.not_after == T0 + certs.LEAF_LIFETIME
    sans = _leaf(p.data).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(v) for v in sans.get_values_for_type(x509.DNSName)} == {NAMES[0]}


def test_valid_material_is_kept_byte_for_byte():
    first = certs.plan(None, NAMES, T0)
    again = certs.plan(first.data, NAMES, T0 + dt.timedelta(days=30))
    assert not again.changed and again.data == first.data and again.reason == "certificates valid"


def test_serving_cert_is_renewed_at_two_thirds_of_its_life_with_the_same_ca():
    first = certs.plan(None, NAMES, T0)
    due = T0 + certs.LEAF_LIFETIME * certs.RENEW_AT + dt.timedelta(minutes=10)
    renewed = certs.plan(first.data, NAMES, due)
    assert renewed.changed and renewed.reason == "serving certificate renewed"
    assert renewed.data["ca.crt"] == first.data["ca.crt"]
    assert renewed.data["tls.crt"] != first.data["tls.crt"]
    assert renewed.not_after > first.not_after


def test_new_names_reissue_the_serving_cert():
    first = certs.plan(None, NAMES, T0)
    other = certs.plan(first.data, ("injector.other.svc",), T0 + dt.timedelta(days=1))
    assert other.changed and "new names" in other.reason


def test_ca_rotation_keeps_the_old_ca_in_the_bundle_until_dropped():
    first = certs.plan(None, NAMES, T0)
    later = T0 + certs.CA_LIFETIME * certs.RENEW_AT + dt.timedelta(days=1)
    rotated = certs.plan(first.data, NAMES, later)
    assert "CA rotated" in rotated.reason
    bundle = x509.load_pem_x509_certificates(rotated.data["ca-bundle.crt"])
    assert [c.subject for c in bundle][1] == x509.load_pem_x509_certificate(first.data["ca.crt"]).subject
    _leaf(rotated.data).verify_directly_issued_by(bundle[0])
    assert certs.drop_previous_ca(rotated.data)["ca-bundle.crt"] == rotated.data["ca.crt"]


@pytest.mark.parametrize("junk", [{"ca.crt": b"garbage", "ca.key": b"x"}, {"tls.crt": b"only a leaf"}, {}])
def test_unreadable_secret_contents_are_replaced_not_crashed_on(junk):
    p = certs.plan(junk, NAMES, T0)
    assert p.changed and p.reason == "new CA"


def test_a_corrupt_leaf_alone_is_reissued_under_the_existing_ca():
    first = certs.plan(None, NAMES, T0)
    p = certs.plan({**first.data, "tls.crt": b"junk"}, NAMES, T0)
    assert p.changed and p.data["ca.crt"] == first.data["ca.crt"]


def test_no_names_is_a_clear_error():
    with pytest.raises(ValueError, match="at least one DNS name or IP"):
        certs.plan(None, (), T0)


def test_a_leaf_signed_by_another_ca_is_reissued_under_ours():
    ours, theirs = certs.plan(None, NAMES, T0), certs.plan(None, NAMES, T0)
    p = certs.plan({**ours.data, "tls.crt": theirs.data["tls.crt"], "tls.key": theirs.data["tls.key"]}, NAMES, T0)
    assert p.changed and p.data["ca.crt"] == ours.data["ca.crt"]
    _leaf(p.data).verify_directly_issued_by(x509.load_pem_x509_certificate(ours.data["ca.crt"]))
