"""Analyzer settings from a PilotMesh spec (charts/pilotmesh/crds/pilotmeshes.pilot.io.yaml).

- `spec.daemon.udpPort` -> the UDP peer port.
- `spec.rendezvous.beacon` HOST:PORT -> the beacon's UDP port (and its IP when HOST is one).
- compat endpoints on TCP: the compat beacon (`compatURL`, default the public beacon) and the registry
  host on the same port (443), as compat mode reaches the registry over TLS on 443.
- `inCluster: true` -> the in-cluster pilot-rendezvous pods in the operator's namespace.
A spec may also carry analyzer keys directly under `spec.networkPolicyAnalysis` (see settings.py).
"""
from __future__ import annotations

import ipaddress
from typing import Any
from urllib.parse import urlsplit

from .settings import DEFAULT_RENDEZVOUS

IN_CLUSTER_LABELS = {"app.kubernetes.io/name": "pilot-rendezvous"}  # must match the chart's rendezvous pods


def settings_from_pilotmesh(spec: dict[str, Any], operator_namespace: str = "pilot-system") -> dict[str, Any]:
    """A settings mapping for `analyze()` from a (defaulted or raw) PilotMesh spec."""
    out: dict[str, Any] = dict(spec.get("networkPolicyAnalysis") or {})
    udp = (spec.get("daemon") or {}).get("udpPort")
    if isinstance(udp, int):
        out.setdefault("udpPeerPort", udp)
    rdv = spec.get("rendezvous") or {}
    if rdv.get("inCluster"):
        out.setdefault("rendezvous", [{"namespace": operator_namespace, "podLabels": dict(IN_CLUSTER_LABELS)}])
        return out
    beacon_host, beacon_port = _host_port(rdv.get("beacon"))
    if beacon_port:
        out.setdefault("beaconUdpPort", beacon_port)
    endpoints = []
    if rdv.get("compatURL"):
        url = urlsplit(str(rdv["compatURL"]))
        endpoints.append(_endpoint(url.hostname or "", url.port or (80 if url.scheme == "ws" else 443)))
    else:
        endpoints.append(dict(DEFAULT_RENDEZVOUS[0]))
    reg_host, _ = _host_port(rdv.get("registry"))
    endpoints.append(_endpoint(reg_host, endpoints[0].get("port", 443)) if reg_host else dict(DEFAULT_RENDEZVOUS[1]))
    if beacon_host and _is_ip(beacon_host):
        endpoints.append({"ips": [beacon_host], "port": endpoints[0].get("port", 443)})
    out.setdefault("rendezvous", endpoints)
    return out


def _host_port(value: Any) -> tuple[str, int | None]:
    if not isinstance(value, str) or ":" not in value:
        return "", None
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port) if port.isdigit() else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _endpoint(host: str, port: int) -> dict[str, Any]:
    return {"ips": [host], "port": port} if _is_ip(host) else {"host": host, "port": port}
