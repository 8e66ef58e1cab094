"""The info (0x0E) and health (0x22) JSON bodies, with the keys and types of the official 1.18 daemon (and the
``daemon.shutting_down`` webhook event's, made of the same figures)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..proto import ipc

COMPAT_VERSION = "1.18.0"
"""What ``version`` says in info and register: the official release whose behaviour this daemon follows."""


@dataclass
class Counters:
    bytes_sent: int = 0
    bytes_recv: int = 0
    pkts_sent: int = 0
    pkts_recv: int = 0
    encrypt_ok: int = 0
    encrypt_fail: int = 0
    accept_queue_drops: int = 0


def _known_peers(d: Any) -> list:
    return [p for p in d.peers.values() if p.encrypted or p.authenticated or p.relay or p.last_rx]


def info(d: Any, uptime: float) -> dict:
    known = _known_peers(d)
    dropped, skips = d.webhook.stats()
    return {
        "node_id": d.node_id, "address": d.address, "endpoint": d.endpoint, "hostname": d.hostname,
        "uptime_secs": float(int(uptime)), "connections": d.connection_count(), "ports": d.port_count(),
        "peers": len(known), "encrypted_peers": sum(p.encrypted for p in known),
        "authenticated_peers": sum(p.authenticated for p in known), "encrypt": d.encrypt,
        "identity": d.identity.path is not None, "public_key": d.identity.public_b64, "email": d.owner,
        "bytes_sent": d.counters.bytes_sent, "bytes_recv": d.counters.bytes_recv,
        "pkts_sent": d.counters.pkts_sent, "pkts_recv": d.counters.pkts_recv,
        "tunnel_encryption_success": d.counters.encrypt_ok, "tunnel_encryption_failure": d.counters.encrypt_fail,
        "handshake_pending_count": len(d.trust.pending), "version": COMPAT_VERSION,
        "networks": d.networks or None, "peer_list": [p.row() for p in known], "conn_list": d.conn_rows(),
        "accept_queue_drops": d.counters.accept_queue_drops, "webhook_queue_dropped": dropped,
        "webhook_circuit_skips": skips,
        "relay_peer_count": sum(p.relay for p in known), "beacon_addr": d.beacon_addr, "motd": "",
        "features": list(ipc.FEATURES), "transport": d.transport,
        "transport_path": d.transports.describe(),   # not in the official reply: the path in use
    }


def health(d: Any, uptime: float) -> dict:
    full = info(d, uptime)
    keys = ("connections", "peers", "bytes_sent", "bytes_recv", "encrypted_peers", "authenticated_peers",
            "handshake_pending_count", "relay_peer_count", "accept_queue_drops", "webhook_queue_dropped",
            "webhook_circuit_skips", "beacon_addr")
    return {"status": "ok", "uptime_seconds": int(uptime), **{k: full[k] for k in keys}}


def shutting_down(d: Any, uptime: float) -> dict:
    return {"known_peers": len(_known_peers(d)), "open_connections": d.connection_count(),
            "uptime_seconds": int(uptime)}
