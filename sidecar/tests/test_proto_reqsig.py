"""reqsig envelopes: the canonical form (the official test vector), parse round trips, freshness, signatures."""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given
from hypothesis import strategies as st

from pilot_daemon.proto import reqsig

HELLO = hashlib.sha256(b"hello").hexdigest()
VECTOR = reqsig.Envelope(1, 0xABCD1234, 1780000000, "0123456789abcdef", HELLO, "svc.example.io")


def test_canonical_form_matches_the_official_vector():
    text = VECTOR.canonical()
    assert text == f"pilot-req-v1|0001abcd1234|1780000000|0123456789abcdef|{HELLO}|svc.example.io"
    assert reqsig.parse(text) == VECTOR
    assert reqsig.hash_body(b"hello") == HELLO


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 1 << 40),
       st.from_regex(r"[a-z0-9.-]{1,64}", fullmatch=True))
def test_parse_round_trips(network, node, ts, audience):
    env = reqsig.Envelope(network, node, ts, "00ff" * 4, HELLO, audience)
    assert reqsig.parse(env.canonical()) == env


@given(st.text(max_size=200))
def test_parse_never_fails_other_than_with_a_reason(text):
    try:
        reqsig.parse(text)
    except reqsig.ReqsigError as exc:
        assert str(exc).startswith("reqsig: ")


@pytest.mark.parametrize("field,value,reason", [
    ("nonce", "0123", "nonce must be 16"), ("nonce", "0123456789ABCDEF", "nonce must be 16"),
    ("body_hash", "ab", "body hash must be 64"), ("audience", "", "audience must be 1-64"),
    ("audience", "a" * 65, "audience must be 1-64"), ("audience", "Svc", "audience must match"),
    ("timestamp", -1, "negative timestamp"),
])
def test_field_rules(field, value, reason):
    fields = {"network": 1, "node": 2, "timestamp": 3, "nonce": "0" * 16, "body_hash": HELLO, "audience": "a",
              field: value}
    with pytest.raises(reqsig.ReqsigError, match=reason):
        reqsig.Envelope(**fields).canonical()


def test_freshness_window():
    reqsig.check_fresh(VECTOR, 1780000000 + 300)
    with pytest.raises(reqsig.ReqsigError, match="outside ±5m0s window"):
        reqsig.check_fresh(VECTOR, 1780000000 + 301)
    reqsig.check_fresh(VECTOR, 1780000000 - 3000, max_skew=3600)
    with pytest.raises(reqsig.ReqsigError, match="outside ±1m30s window"):
        reqsig.check_fresh(VECTOR, 1780000000 + 91, max_skew=90)


def test_signatures_verify_only_with_the_signers_key():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    text = VECTOR.canonical()
    sig = base64.b64encode(key.sign(text.encode())).decode()
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert reqsig.verify(raw, text, sig) == VECTOR
    with pytest.raises(reqsig.ReqsigError, match="signature verification failed"):
        reqsig.verify(other.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), text, sig)
    with pytest.raises(reqsig.ReqsigError, match="not base64"):
        reqsig.verify(raw, text, "***")
    with pytest.raises(reqsig.ReqsigError, match="bad public key size 3"):
        reqsig.verify(b"abc", text, sig)
