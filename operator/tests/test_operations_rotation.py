"""The end of a CA rotation, decided purely, with certs.plan at simulated times and the leaves injectors serve."""
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from pilotmesh_operator import certs
from pilotmesh_operator.certinfo import pem_certificates
from pilotmesh_operator.rotation import Served, may_drop_previous_ca, rotating

NAMES = ("pilotmesh-injector.pilot-system.svc", "127.0.0.1")
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


def _der(data):
    return x509.load_pem_x509_certificate(data["tls.crt"]).public_bytes(serialization.Encoding.DER)


def _rotated():
    first = certs.plan(None, NAMES, T0)
    later = T0 + certs.CA_LIFETIME * certs.RENEW_AT + dt.timedelta(days=1)
    return first, certs.plan(first.data, NAMES, later), later


def test_a_ca_rotation_publishes_both_cas_until_every_injector_serves_the_new_chain():
    first, rotated, later = _rotated()
    assert not rotating(first.data) and rotating(rotated.data)
    assert len(pem_certificates(rotated.data["ca-bundle.crt"])) == 2
    old_leaf, new_leaf = _der(first.data), _der(rotated.data)
    # one replica still serves the old leaf (its Secret volume has not caught up)
    ok, why = may_drop_previous_ca(rotated.data, [Served("10.0.0.1:8443", new_leaf), Served("10.0.0.2:8443", old_leaf)])
    assert not ok and "10.0.0.2:8443" in why
    # a ready replica that does not answer blocks too: we cannot know what it serves
    ok, why = may_drop_previous_ca(rotated.data, [Served("10.0.0.1:8443", new_leaf),
                                                  Served("10.0.0.2:8443", None, True, "ConnectionRefusedError")])
    assert not ok and "ConnectionRefusedError" in why
    # a not-ready replica that is silent takes no traffic: it does not block
    ok, why = may_drop_previous_ca(rotated.data, [Served("10.0.0.1:8443", new_leaf),
                                                  Served("10.0.0.2:8443", None, False, "timeout")])
    assert ok and "1 injector endpoint" in why
    ok, why = may_drop_previous_ca(rotated.data, [Served("10.0.0.1:8443", new_leaf), Served("10.0.0.2:8443", new_leaf)])
    assert ok and "all 2" in why


def test_after_the_drop_the_plan_keeps_a_single_ca_and_renews_normally():
    _, rotated, later = _rotated()
    dropped = certs.drop_previous_ca(rotated.data)
    assert not rotating(dropped) and dropped["ca-bundle.crt"] == rotated.data["ca.crt"]
    again = certs.plan(dropped, NAMES, later + dt.timedelta(days=1))
    assert not again.changed and not rotating(again.data)
    renewal = certs.plan(dropped, NAMES, later + certs.LEAF_LIFETIME)
    assert renewal.changed and renewal.reason == "serving certificate renewed" and not rotating(renewal.data)


def test_nothing_to_drop_without_a_rotation_or_without_answers():
    first, rotated, _ = _rotated()
    assert may_drop_previous_ca(first.data, [Served("a:1", _der(first.data))]) == (False, "no CA rotation in progress")
    assert may_drop_previous_ca(rotated.data, []) == (False, "no injector endpoint answered")
    assert not may_drop_previous_ca(rotated.data, [Served("a:1", b"garbage")])[0]
