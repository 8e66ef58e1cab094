"""Webhook event notifications (``-webhook``, ``-webhook-secret``, ``pilotctl set-webhook``) as the official 1.18
daemon sends them: the request body, its signature, the URL check, the delivery rules. Sans-I/O.

Measured on the official 1.18 pilot-daemon POSTing to a receiver in a private netns, and read in the
``pilot-protocol/webhook`` v0.2.0 plugin and ``common/urlvalidate`` it links:

* One ``POST`` per event, ``Content-Type: application/json``, ``User-Agent: Go-http-client/1.1``, body
  ``{"event_id":N,"event":NAME,"node_id":N,"timestamp":T,"data":{...}}`` in that key order, ``data`` a Go map
  (keys sorted) and left out when there is none. ``T`` is RFC 3339 in UTC with the nanoseconds Go keeps
  (trailing zeros cut: ``2026-11-29T21:42:41.66784Z``). ``event_id`` counts from 1 for each URL set;
  ``node_id`` is the node's id when the event happened.
* With a secret: ``X-Pilot-Signature-256: hex(HMAC-SHA256(secret, body))`` (no ``sha256=`` prefix).
* Delivery: one request at a time, in order, from a queue of 1024 events; an event that finds the queue full is
  dropped (``webhook_queue_dropped``). Each event: up to 3 attempts, 1 s then 2 s apart, 5 s timeout each.
  Status < 400: delivered. 4xx: given up at once, and not held against the URL ("webhook POST client error").
  5xx ("webhook POST server error") and transport errors ("webhook POST failed") are retried. 5 events in a
  row given up this way open the circuit for 30 s: events in that time are skipped unsent
  (``webhook_circuit_skips``); the first one after it is sent as a probe (failing, it opens the circuit again).
* At shutdown the queue gets up to 5 s to drain. ``agent.heartbeat`` comes every 60 s.
* ``set-webhook`` checks the URL (below; "" clears), swaps the sender and keeps the URL in
  ``~/.pilot/webhook_url`` (0600, removed when cleared), which the next start uses when ``-webhook`` is empty.
  ``-webhook`` itself is not checked: a URL that cannot work makes each POST fail.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from urllib.parse import unquote, urlsplit

from . import gojson
from .errors import LocalProtocolError

QUEUE_SIZE = 1024
MAX_ATTEMPTS = 3
INITIAL_BACKOFF = 1.0          # seconds before the 2nd attempt; doubled before each later one
ATTEMPT_TIMEOUT = 5.0
CIRCUIT_THRESHOLD = 5          # events given up in a row that open the circuit
CIRCUIT_COOLDOWN = 30.0
DRAIN_TIMEOUT = 5.0
HEARTBEAT_INTERVAL = 60.0      # agent.heartbeat {address, node_id}, a minute apart
CONTENT_TYPE = "application/json"
USER_AGENT = "Go-http-client/1.1"
SIGNATURE_HEADER = "X-Pilot-Signature-256"
URL_FILE = "webhook_url"       # under ~/.pilot

_CLOUD_METADATA = frozenset({"metadata.google.internal", "metadata.google.com", "ec2.internal",
                             "instance-data-service.ec2.internal", "metadata.azure.com"})


class WebhookURLError(LocalProtocolError, ValueError):
    """A URL ``set-webhook`` refuses; the message is the official daemon's text."""


# -- the request ------------------------------------------------------------------------------------
def encode_event(event_id: int, event: str, node_id: int, ns: int, data: dict | None) -> bytes:
    """The body of one event's POST, byte for byte as the official daemon writes it."""
    body = (b'{"event_id":%d,"event":' % event_id + gojson.dumps(event) + b',"node_id":%d,"timestamp":' % node_id
            + json.dumps(gojson.rfc3339nano(ns, utc=True)).encode())
    if data is not None:
        body += b',"data":' + gojson.dumps(data)
    return body + b"}"


def signature(secret: str, body: bytes) -> str:
    """The ``X-Pilot-Signature-256`` value: hex HMAC-SHA256 of the body under the secret."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def headers(body: bytes, secret: str) -> dict[str, str]:
    out = {"Content-Type": CONTENT_TYPE, "User-Agent": USER_AGENT, "Accept-Encoding": "gzip"}
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, body)
    return out


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt`` (0-based): 0, 1, 2."""
    return 0.0 if attempt == 0 else INITIAL_BACKOFF * 2 ** (attempt - 1)


def outcome(status: int) -> str:
    """``delivered`` (< 400), ``client`` (4xx: no retry, circuit untouched) or ``server`` (retry)."""
    if status < 400:
        return "delivered"
    return "client" if status < 500 else "server"


def registration_events(address: str, endpoint: str, node: int, *, again: bool) -> list[tuple[str, dict]]:
    """The events of a registration: the first (``node.registered``, ``agent.registered``) or a later one after
    the registry forgot the node (``node.reregistered``, ``agent.registered`` with ``reregistered``)."""
    if again:
        return [("node.reregistered", {"address": address}),
                ("agent.registered", {"address": address, "node_id": node, "reregistered": True})]
    return [("node.registered", {"address": address, "endpoint": endpoint}),
            ("agent.registered", {"address": address, "endpoint": endpoint, "node_id": node})]


def proxied(url: str) -> bool:
    """Whether Go's client would send this URL through ``HTTP(S)_PROXY``: not for localhost or a loopback IP."""
    try:
        host = (urlsplit(url).hostname or "").lower()
        return not (host == "localhost" or host.endswith(".localhost") or ipaddress.ip_address(host).is_loopback)
    except ValueError:
        return True


# -- the circuit breaker ------------------------------------------------------------------------------
class Circuit:
    """Opens after ``threshold`` events in a row were given up; stays open ``cooldown`` seconds."""

    def __init__(self, threshold: int = CIRCUIT_THRESHOLD, cooldown: float = CIRCUIT_COOLDOWN) -> None:
        self.threshold, self.cooldown = threshold, cooldown
        self.failures = 0
        self.open_until: float | None = None
        self.skips = 0

    def allow(self, now: float) -> bool:
        """Whether to send the next event (False: skip it, counted in ``skips``)."""
        if self.open_until is not None:
            if now < self.open_until:
                self.skips += 1
                return False
            self.open_until = None          # cooldown over: this event is the probe
        return True

    def delivered(self) -> None:
        self.failures = 0

    def given_up(self, now: float) -> bool:
        """An event failed all its attempts; True when this opens the circuit."""
        self.failures += 1
        if self.failures >= self.threshold:
            self.open_until = now + self.cooldown
            return True
        return False


# -- the URL check (set-webhook) ------------------------------------------------------------------------
def validate_url(url: str) -> None:
    """Raise ``WebhookURLError`` with the official text unless ``url`` is an http(s) URL with a host that is not
    link-local or a cloud metadata name."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in url):
        raise _parse_error(url, "net/url: invalid control character in URL")
    if url.startswith(":"):
        raise _parse_error(url, "missing protocol scheme")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise _parse_error(url, "missing ']' in host") from None
    if parts.scheme not in ("http", "https"):
        raise WebhookURLError(f"URL must use http or https scheme, got {json.dumps(parts.scheme)}")
    host = _hostname(parts.netloc, url)
    if not host:
        raise WebhookURLError("URL must have a host")
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        ip = None
    if ip is not None and _link_local(ip):
        raise WebhookURLError(f"URL cannot target link-local address {host}")
    if host.lower() in _CLOUD_METADATA:
        raise WebhookURLError(f"URL cannot target cloud metadata endpoint {host}")


def _parse_error(url: str, reason: str) -> WebhookURLError:
    return WebhookURLError(f"invalid URL: parse {json.dumps(url, ensure_ascii=False)}: {reason}")


def _hostname(netloc: str, url: str) -> str:
    """Go's ``URL.Hostname()``: the authority without user info, port and IPv6 brackets (not lower-cased)."""
    hostport = unquote(netloc.rpartition("@")[2])
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise _parse_error(url, "missing ']' in host")
        port = hostport[end + 1:]
        host = hostport[1:end]
    else:
        colon = hostport.rfind(":")
        host, port = (hostport[:colon], hostport[colon:]) if colon >= 0 else (hostport, "")
    if port and not (port.startswith(":") and port[1:].isdigit() or port == ":"):
        raise _parse_error(url, f"invalid port {json.dumps(port)} after host")
    return host


def _link_local(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Go's ``IsLinkLocalUnicast() || IsLinkLocalMulticast()`` (IPv4-mapped addresses count as IPv4)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in _V4_LINK_LOCAL or ip in _V4_LINK_LOCAL_MULTICAST
    raw = ip.packed
    return ip in _V6_LINK_LOCAL or (raw[0] == 0xFF and raw[1] & 0x0F == 0x02)


_V4_LINK_LOCAL = ipaddress.ip_network("169.254.0.0/16")
_V4_LINK_LOCAL_MULTICAST = ipaddress.ip_network("224.0.0.0/24")
_V6_LINK_LOCAL = ipaddress.ip_network("fe80::/10")
