"""Proxy selection (-proxy auto|off|URL with HTTPS_PROXY/ALL_PROXY/NO_PROXY), the CONNECT request and
the proxy's answer: pure functions."""
from __future__ import annotations

import base64

import pytest

from pilot_daemon.proto import proxy as px


def test_select_follows_the_setting_and_the_environment():
    env = {"HTTPS_PROXY": "http://u:p%40ss@proxy.corp:3128", "ALL_PROXY": "http://all:1", "NO_PROXY": ""}
    assert px.select("off", env, "beacon.example", 443) is None
    chosen = px.select("auto", env, "beacon.example", 443)
    assert (chosen.host, chosen.port, chosen.username, chosen.password) == ("proxy.corp", 3128, "u", "p@ss")
    assert px.select("auto", {"all_proxy": "all.corp:8080"}, "b", 443).display == "http://all.corp:8080"
    assert px.select("auto", {}, "b", 443) is None
    assert px.select("https://secure.corp", {}, "b", 443).port == 443


@pytest.mark.parametrize("host, no_proxy, bypass", [
    ("beacon.pilot.test", "pilot.test", True),
    ("beacon.pilot.test", ".pilot.test", True),
    ("beacon.pilot.test", "*.pilot.test", True),
    ("pilot.test", "pilot.test", True),
    ("evilpilot.test", "pilot.test", False),
    ("10.1.2.3", "10.0.0.0/8", True),
    ("10.1.2.3", "192.168.0.0/16,localhost", False),
    ("beacon.pilot.test", "beacon.pilot.test:443", True),
    ("beacon.pilot.test", "beacon.pilot.test:8443", False),
    ("anything", "*", True),
])
def test_no_proxy(host, no_proxy, bypass):
    assert px.no_proxy_matches(host, 443, no_proxy) is bypass
    env = {"HTTPS_PROXY": "http://proxy:3128", "NO_PROXY": no_proxy}
    assert (px.select("auto", env, host, 443) is None) is bypass


def test_an_explicit_url_ignores_no_proxy_and_bad_urls_say_what_to_use():
    assert px.select("http://p:1", {"NO_PROXY": "*"}, "b", 443) is not None
    with pytest.raises(px.ProxyConfigError, match="use http:// or https://"):
        px.parse_url("socks5://p:1080")
    with pytest.raises(px.ProxyConfigError, match="has no host"):
        px.parse_url("http://:3128")


def test_connect_request_and_answers():
    req = px.connect_request("beacon.pilot.test", 443, px.parse_url("http://alice:s3cret@p:3128"))
    head = req.decode()
    assert head.startswith("CONNECT beacon.pilot.test:443 HTTP/1.1\r\nHost: beacon.pilot.test:443\r\n")
    assert f"Proxy-Authorization: Basic {base64.b64encode(b'alice:s3cret').decode()}\r\n" in head
    assert head.endswith("\r\n\r\n")
    assert "Proxy-Authorization" not in px.connect_request("::1", 443, px.parse_url("http://p:1")).decode()
    assert px.connect_request("::1", 443, px.parse_url("http://p:1")).startswith(b"CONNECT [::1]:443 ")
    assert px.parse_response_head(b"HTTP/1.1 200 Connection established\r\n\r\n") == (200, "Connection established")
    assert px.parse_response_head(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n")[0] == 407
    with pytest.raises(ValueError, match="not an HTTP answer"):
        px.parse_response_head(b"SSH-2.0-OpenSSH\r\n\r\n")
    refused = px.ProxyRefused(403, "Forbidden", "http://p:3128")
    assert "refused CONNECT: 403 Forbidden" in str(refused) and "policy forbids" in str(refused)
