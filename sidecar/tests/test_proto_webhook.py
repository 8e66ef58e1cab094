"""Webhook requests, sans-I/O: bodies and signatures against the official 1.18 daemon's (vectors), the URL check's
texts, the timestamp form, the circuit breaker and retry rules."""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pilot_daemon.proto import gojson
from pilot_daemon.proto import webhook as wh

VECTORS = json.loads((Path(__file__).parent / "vectors" / "official_1_18_webhook.json").read_text())
BODIES = [v["body"] for v in VECTORS["signed"] + VECTORS["unsigned"]]


def ns_of(stamp: str) -> int:
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z", stamp)
    assert m, stamp
    seconds = int(datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
    return seconds * 1_000_000_000 + int((m.group(2) or "0").ljust(9, "0"))


@pytest.mark.parametrize("body", BODIES, ids=[json.loads(b)["event"] for b in BODIES])
def test_bodies_are_byte_identical_to_the_official_daemons(body):
    doc = json.loads(body)
    assert list(doc) == ["event_id", "event", "node_id", "timestamp", "data"]
    again = wh.encode_event(doc["event_id"], doc["event"], doc["node_id"], ns_of(doc["timestamp"]), doc["data"])
    assert again == body.encode()


@pytest.mark.parametrize("vector", VECTORS["signed"], ids=[json.loads(v["body"])["event"] for v in VECTORS["signed"]])
def test_signatures_match_the_official_daemons(vector):
    body = vector["body"].encode()
    assert wh.signature(VECTORS["secret"], body) == vector["signature"]
    assert wh.headers(body, VECTORS["secret"])[wh.SIGNATURE_HEADER] == vector["signature"]
    assert wh.signature("other", body) != vector["signature"]


def test_headers_are_the_official_ones_and_unsigned_without_a_secret():
    got = wh.headers(b"{}", "")
    assert got == VECTORS["headers"] and wh.SIGNATURE_HEADER not in got


def test_a_receiver_verifies_our_signature_with_plain_hmac():
    body = wh.encode_event(7, "message.received", 12, 1_795_988_561_000_000_000,
                           {"from": "0:0000.0000.0001", "size": 5, "type": "TEXT"})
    expected = hmac.new(b"k\xc3\xa9y", body, hashlib.sha256).hexdigest()
    assert wh.signature("kéy", body) == expected


@pytest.mark.parametrize("ns, text", [
    (0, "1970-01-01T00:00:00Z"),
    (1_795_988_561_667_845_349, "2026-11-29T21:42:41.667845349Z"),
    (1_795_988_561_500_000_000, "2026-11-29T21:42:41.5Z"),
    (1_795_988_561_000_001_000, "2026-11-29T21:42:41.000001Z"),
])
def test_timestamps_take_gos_form(ns, text):
    assert gojson.rfc3339nano(ns, utc=True) == text


def test_no_data_leaves_the_key_out_and_strings_escape_as_go_does():
    assert wh.encode_event(1, "a<b>&c", 2, 0, None) == \
        b'{"event_id":1,"event":"a\\u003cb\\u003e\\u0026c","node_id":2,"timestamp":"1970-01-01T00:00:00Z"}'
    assert wh.encode_event(1, "x", 2, 0, {"b": 1, "a": "é"}).endswith(b'"data":{"a":"\xc3\xa9","b":1}}')


@given(st.integers(0, 2**63), st.text(max_size=30), st.integers(0, 2**32 - 1), st.integers(0, 2**62),
       st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20), st.booleans())))
def test_any_event_encodes_to_json_that_reads_back(event_id, event, node, ns, data):
    doc = json.loads(wh.encode_event(event_id, event, node, ns, data))
    assert (doc["event_id"], doc["event"], doc["node_id"], doc["data"]) == (event_id, event, node, data)
    assert ns_of(doc["timestamp"]) == ns


# -- the URL check: the official daemon's replies to IPC SetWebhook, captured --------------------------------------
@pytest.mark.parametrize("url, error", [
    ("ftp://x/", 'URL must use http or https scheme, got "ftp"'),
    ("http://169.254.169.254/", "URL cannot target link-local address 169.254.169.254"),
    ("http://metadata.google.internal/", "URL cannot target cloud metadata endpoint metadata.google.internal"),
    ("not a url", 'URL must use http or https scheme, got ""'),
    ("http://:80/", "URL must have a host"),
    # the same rules, from common/urlvalidate
    ("http://Metadata.Azure.COM:8080/x", "URL cannot target cloud metadata endpoint Metadata.Azure.COM"),
    ("https://[fe80::1%25eth0]:443/", "URL cannot target link-local address fe80::1%eth0"),
    ("http://[::ffff:169.254.1.1]/", "URL cannot target link-local address ::ffff:169.254.1.1"),
    ("http://224.0.0.5/", "URL cannot target link-local address 224.0.0.5"),
    ("http://[ff02::1]/", "URL cannot target link-local address ff02::1"),
    ("http://user:pw@/", "URL must have a host"),
    ("localhost:8080", 'URL must use http or https scheme, got "localhost"'),
    (":8080/x", 'invalid URL: parse ":8080/x": missing protocol scheme'),
    ("http://a\nb/", 'invalid URL: parse "http://a\\nb/": net/url: invalid control character in URL'),
    ("http://[::1/", "invalid URL: parse \"http://[::1/\": missing ']' in host"),
    ("http://host:port/", 'invalid URL: parse "http://host:port/": invalid port ":port" after host'),
])
def test_urls_the_official_daemon_refuses(url, error):
    with pytest.raises(wh.WebhookURLError) as exc:
        wh.validate_url(url)
    assert exc.value.message == error


@pytest.mark.parametrize("url", ["http://127.0.0.1:8088/ok/a3", "HTTPS://hooks.example.com/x?y=1",
                                 "http://[::1]:9/", "http://10.0.0.1/", "http://169.253.1.1/", "http://h:/"])
def test_urls_the_official_daemon_takes(url):
    wh.validate_url(url)


@given(st.text(max_size=80))
def test_the_url_check_fails_only_with_its_own_error(url):
    try:
        wh.validate_url(url)
    except wh.WebhookURLError as exc:
        assert exc.message


# -- delivery rules ------------------------------------------------------------------------------------------------
def test_attempts_are_one_then_two_seconds_apart_and_only_5xx_is_retried():
    assert [wh.backoff(i) for i in range(wh.MAX_ATTEMPTS)] == [0.0, 1.0, 2.0]
    assert [wh.outcome(s) for s in (200, 204, 302, 399, 400, 404, 499, 500, 503)] == \
        ["delivered"] * 4 + ["client"] * 3 + ["server"] * 2


def test_the_circuit_opens_after_five_given_up_events_and_probes_after_30s():
    c = wh.Circuit()
    for i in range(4):
        assert c.allow(i) and not c.given_up(i)
    assert c.allow(4) and c.given_up(4)          # the 5th: open until 34
    assert [c.allow(t) for t in (5, 20, 33.9)] == [False] * 3 and c.skips == 3
    assert c.allow(34)                           # the probe
    assert c.given_up(35) and not c.allow(36)    # failed: open again at once
    assert c.allow(65)
    c.delivered()
    assert c.failures == 0 and c.allow(66) and not c.given_up(66)


def test_client_errors_do_not_count_against_the_url():
    c = wh.Circuit()
    for i in range(4):
        c.given_up(i)
    c.delivered()
    assert [c.given_up(i) for i in range(5)] == [False] * 4 + [True]


def test_registration_events():
    first = wh.registration_events("0:0000.0000.0001", "127.0.0.1:9", 1, again=False)
    assert first == [("node.registered", {"address": "0:0000.0000.0001", "endpoint": "127.0.0.1:9"}),
                     ("agent.registered", {"address": "0:0000.0000.0001", "endpoint": "127.0.0.1:9", "node_id": 1})]
    again = wh.registration_events("0:0000.0000.0001", "127.0.0.1:9", 1, again=True)
    assert [json.loads(wh.encode_event(1, e, 1, 0, d))["data"] for e, d in again] == \
        [json.loads(v["body"])["data"] for v in VECTORS["unsigned"]
         if '"reregistered' in v["body"] or "node.reregistered" in v["body"]]


def test_loopback_urls_bypass_proxies_as_in_go():
    assert not wh.proxied("http://127.0.0.1:8088/x") and not wh.proxied("http://localhost/")
    assert not wh.proxied("http://[::1]:9/") and not wh.proxied("http://a.localhost/")
    assert wh.proxied("https://hooks.example.com/") and wh.proxied("http://10.1.2.3/") and wh.proxied("::junk")
