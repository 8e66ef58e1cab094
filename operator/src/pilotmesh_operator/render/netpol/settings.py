"""Mesh settings the analyzer needs, read from a plain dict (camelCase, as in a PilotMesh spec)."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from .model import IPNetwork

from pilot_daemon.contract import BEACON_PORT, COMPAT_PORT, UDP_PEER_PORT

DEFAULT_RENDEZVOUS = ({"host": "beacon.pilotprotocol.network"}, {"host": "registry.pilotprotocol.network"})


class SettingsError(ValueError):
    """Settings the analyzer cannot use; the message names the key to fix."""


@dataclass(frozen=True)
class Endpoint:
    """A rendezvous endpoint on TCP (443 by default): a host name, fixed IPs, or pods in the cluster."""

    host: str | None = None
    ips: tuple[str, ...] = ()
    port: int = COMPAT_PORT
    namespace: str | None = None
    pod_labels: dict[str, str] | None = None

    def describe(self) -> str:
        if self.pod_labels is not None:
            return f"pods {self.namespace}/{_labels(self.pod_labels)}"
        if self.host and self.ips:
            return f"{self.host} ({', '.join(self.ips)})"
        return self.host or ", ".join(self.ips)


def _labels(lb: dict[str, str]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in sorted(lb.items())) + "}"


@dataclass(frozen=True)
class Settings:
    """What `udp-ok` and `compat-only` are tested against; see analyze.py for the exact flows."""

    udp_peer_port: int = UDP_PEER_PORT
    udp_ports: tuple[int, int] = (1024, 65535)  # NAT-mapped peer ports can be any high port
    beacon_udp_port: int = BEACON_PORT
    rendezvous: tuple[Endpoint, ...] = tuple(Endpoint(**e) for e in DEFAULT_RENDEZVOUS)
    dns_namespace: str = "kube-system"
    dns_labels: dict[str, str] = field(default_factory=lambda: {"k8s-app": "kube-dns"})
    dns_ips: tuple[str, ...] = ()  # e.g. node-local-dns 169.254.20.10
    ip_families: tuple[str, ...] = ("IPv4",)  # used when the pod has no status.podIPs yet
    peers: tuple[tuple[str, dict[str, str]], ...] = ()  # in-cluster peers; () = pods like this one
    peer_networks: tuple[IPNetwork, ...] = ()  # where external peers live; () = the whole internet
    end_port_supported: bool | None = None  # None: unknown, endPort rules lower the confidence
    enforcement: str = "enforced"  # enforced | unknown | none: whether the CNI enforces policies

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Settings":
        d = dict(d or {})
        kw: dict[str, Any] = {}
        try:
            if "udpPeerPort" in d:
                kw["udp_peer_port"] = _port(d.pop("udpPeerPort"), "udpPeerPort")
            if "udpPortRange" in d:
                lo, hi = d.pop("udpPortRange")
                kw["udp_ports"] = (_port(lo, "udpPortRange"), _port(hi, "udpPortRange"))
                if lo > hi:
                    raise SettingsError(f"udpPortRange: {lo} is above {hi}")
            if "beaconUdpPort" in d:
                kw["beacon_udp_port"] = _port(d.pop("beaconUdpPort"), "beaconUdpPort")
            if "rendezvous" in d:
                kw["rendezvous"] = tuple(_endpoint(e, i) for i, e in enumerate(d.pop("rendezvous") or []))
            dns = d.pop("clusterDNS", None) or {}
            if dns:
                kw["dns_namespace"] = str(dns.get("namespace", "kube-system"))
                kw["dns_labels"] = {str(k): str(v) for k, v in (dns.get("podLabels") or {"k8s-app": "kube-dns"}).items()}
                kw["dns_ips"] = tuple(str(ip) for ip in dns.get("ips") or ())
            if "ipFamilies" in d:
                fams = tuple(d.pop("ipFamilies"))
                if not fams or any(f not in ("IPv4", "IPv6") for f in fams):
                    raise SettingsError(f"ipFamilies: {fams!r} must list IPv4 and/or IPv6")
                kw["ip_families"] = fams
            if "inClusterPeers" in d:
                kw["peers"] = tuple((str(p["namespace"]), {str(k): str(v) for k, v in (p.get("podLabels") or {}).items()})
                                    for p in d.pop("inClusterPeers") or [])
            if "peerNetworks" in d:
                kw["peer_networks"] = tuple(ipaddress.ip_network(str(n), strict=False) for n in d.pop("peerNetworks") or [])
            if "endPortSupported" in d:
                kw["end_port_supported"] = d.pop("endPortSupported")
            if "policyEnforcement" in d:
                kw["enforcement"] = d.pop("policyEnforcement")
                if kw["enforcement"] not in ("enforced", "unknown", "none"):
                    raise SettingsError("policyEnforcement: must be enforced, unknown or none")
        except (TypeError, ValueError, KeyError, AttributeError) as e:
            if isinstance(e, SettingsError):
                raise
            raise SettingsError(f"settings: cannot read {e!s}; see Settings in render/netpol/settings.py") from None
        if d:
            raise SettingsError(f"unknown settings key(s): {', '.join(sorted(d))}")
        return cls(**kw)


def _port(v: Any, key: str) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 65535:
        raise SettingsError(f"{key}: {v!r} is not a port number 1-65535")
    return v


def _endpoint(e: Any, i: int) -> Endpoint:
    key = f"rendezvous[{i}]"
    if isinstance(e, str):
        e = {"host": e}
    if not isinstance(e, dict):
        raise SettingsError(f"{key}: expected a mapping with host, ips, port or namespace+podLabels")
    ips = tuple(str(x) for x in e.get("ips") or ())
    labels = e.get("podLabels")
    ep = Endpoint(host=e.get("host"), ips=ips, port=_port(e.get("port", COMPAT_PORT), f"{key}.port"),
                  namespace=e.get("namespace"),
                  pod_labels=None if labels is None else {str(k): str(v) for k, v in labels.items()})
    if not (ep.host or ep.ips or (ep.namespace and ep.pod_labels is not None)):
        raise SettingsError(f"{key}: give a host, ips, or namespace and podLabels")
    return ep
