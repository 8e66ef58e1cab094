"""Outbound HTTP proxies for the compat transport (sans-I/O): which proxy, the CONNECT request, its answer.

``-proxy`` as the official daemon: ``off``; ``auto`` = ``HTTPS_PROXY`` then ``ALL_PROXY`` (either case),
skipped for hosts matched by ``NO_PROXY``; or an ``http(s)://[user:pass@]host[:port]`` URL. The tunnel is
an HTTP/1.1 ``CONNECT host:port`` by host name, so TLS (and SNI) stays end to end; ``user:pass`` in the URL
becomes ``Proxy-Authorization: Basic``.
"""
from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

MAX_RESPONSE_HEAD = 16 * 1024
AUTO_ENV = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
NO_PROXY_ENV = ("NO_PROXY", "no_proxy")


class ProxyConfigError(ValueError):
    """A ``-proxy`` / ``HTTPS_PROXY`` value that is not a usable proxy URL."""


class ProxyRefused(Exception):
    """The proxy answered CONNECT with something other than 2xx."""

    def __init__(self, status: int, reason: str, proxy: str) -> None:
        hint = {407: "the proxy wants credentials: put user:pass in the proxy URL or set -proxy-cmd",
                403: "the proxy's policy forbids this destination: ask for TCP/443 to it to be allowed"}.get(
            status, "check the proxy's log")
        super().__init__(f"proxy {proxy} refused CONNECT: {status} {reason}".rstrip() + f" ({hint})")
        self.status, self.reason = status, reason


@dataclass(frozen=True)
class ProxyURL:
    scheme: str          # http | https (TLS to the proxy itself)
    host: str
    port: int
    username: str = ""
    password: str = ""

    @property
    def display(self) -> str:
        """The URL without credentials (for logs and ``info``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def authorization(self) -> str | None:
        if not self.username and not self.password:
            return None
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return f"Basic {token}"


def parse_url(text: str) -> ProxyURL:
    raw = text.strip()
    if "://" not in raw:
        raw = "http://" + raw         # curl and Go accept a bare host:port
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError as exc:
        raise ProxyConfigError(f"proxy URL {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ProxyConfigError(f"proxy URL {text!r}: scheme {parts.scheme!r} unsupported (use http:// or https://)")
    if not parts.hostname:
        raise ProxyConfigError(f"proxy URL {text!r} has no host (use http://[user:pass@]host:port)")
    return ProxyURL(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80),
                    unquote(parts.username or ""), unquote(parts.password or ""))


def no_proxy_matches(host: str, port: int, no_proxy: str) -> bool:
    """curl/Go semantics: ``*`` matches all; ``example.com`` and ``.example.com`` match it and its
    subdomains; an IP or CIDR matches addresses; ``host:port`` entries match only that port."""
    name = host.lower().rstrip(".").strip("[]")
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        pattern, entry_port = entry, None
        if entry.count(":") == 1 or (entry.startswith("[") and "]:" in entry):
            pattern, _, p = entry.rpartition(":")
            entry_port = int(p) if p.isdigit() else None
        pattern = pattern.strip("[]")
        if entry_port is not None and entry_port != port:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(pattern, strict=False):
                    return True
            except ValueError:
                pass
            continue
        pattern = pattern.lstrip("*").lstrip(".")
        if pattern and (name == pattern or name.endswith("." + pattern)):
            return True
    return False


def select(setting: str, env: dict[str, str], host: str, port: int) -> ProxyURL | None:
    """The proxy to reach ``host:port`` through, or None for a direct connection."""
    value = setting.strip()
    if value in ("", "off", "none", "direct"):
        return None
    if value != "auto":
        return parse_url(value)
    url = next((env[k] for k in AUTO_ENV if env.get(k)), "")
    if not url:
        return None
    no_proxy = next((env[k] for k in NO_PROXY_ENV if env.get(k)), "")
    if no_proxy and no_proxy_matches(host, port, no_proxy):
        return None
    return parse_url(url)


def connect_request(host: str, port: int, proxy: ProxyURL) -> bytes:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", "User-Agent: pilot-daemon (pilotmesh)"]
    auth = proxy.authorization()
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_response_head(head: bytes) -> tuple[int, str]:
    """``(status, reason)`` from the bytes up to and including the blank line."""
    first = head.split(b"\r\n", 1)[0].decode("latin-1")
    version, _, rest = first.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise ValueError(f"not an HTTP answer to CONNECT: {first[:80]!r}")
    return int(code), reason.strip()
