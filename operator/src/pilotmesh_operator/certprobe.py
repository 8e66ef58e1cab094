"""Which certificate does each injector endpoint serve? TLS handshakes from the operator (I/O half of
rotation.py): the endpoints of the injector Service, or the webhook URL in url mode."""
from __future__ import annotations

import socket
import ssl
from collections.abc import Iterable
from urllib.parse import urlsplit

from kubernetes.client import ApiClient

from . import desired
from .clusterread import list_all
from .rotation import Served


def injector_endpoints(api: ApiClient, settings: desired.OperatorSettings) -> list[tuple[str, int, bool]]:
    """(host, port, ready) of every injector replica the webhook can reach."""
    if settings.webhook_url:
        url = urlsplit(settings.webhook_url)
        return [(url.hostname or "", url.port or 443, True)]
    out = []
    slices = list_all(api, f"/apis/discovery.k8s.io/v1/namespaces/{settings.namespace}/endpointslices",
                      {"labelSelector": f"kubernetes.io/service-name={desired.INJECTOR}"})
    for s in slices:
        port = next((p.get("port") for p in s.get("ports") or [] if p.get("name") == "https"), settings.injector_port)
        for ep in s.get("endpoints") or []:
            ready = (ep.get("conditions") or {}).get("ready") is not False
            out += [(addr, int(port), ready) for addr in ep.get("addresses") or []]
    return out


def served_leaf(host: str, port: int, server_name: str | None = None, timeout: float = 3) -> bytes:
    """The DER certificate the server presents (not verified: we only want to see which one it is)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname=server_name or (host if not host[:1].isdigit() else None)) as tls:
            return tls.getpeercert(binary_form=True)


def observe(endpoints: Iterable[tuple[str, int, bool]]) -> list[Served]:
    out = []
    for host, port, ready in endpoints:
        where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            out.append(Served(where, served_leaf(host, port), ready))
        except (OSError, ssl.SSLError) as exc:
            out.append(Served(where, None, ready, f"{type(exc).__name__}: {exc}"))
    return out
