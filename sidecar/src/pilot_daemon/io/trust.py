"""Trust: who may reach this private node, and the handshake verbs (official ``handshake`` package, 1.18).

Webhook events through ``on_event`` where the official manager publishes them: ``handshake.received`` and then
``handshake.pending`` or ``handshake.auto_approved`` (a direct request), ``handshake.approved``,
``handshake.rejected``, ``trust.revoked``, ``trust.revoked_by_peer``, and ``trust.changed`` with each grant or
revocation (``state`` granted/revoked, ``reason`` mutual, auto_approve, auto_approve_relayed, approved, local,
by_peer). A relayed request, a relayed answer and a direct accept emit nothing, as upstream.

State as the official manager keeps it: trusted peers, pending inbound requests, outgoing requests.
Requests travel through the registry relay (``request_handshake`` / ``poll_handshakes`` /
``respond_handshake``); the direct port-444 stream path is an integration point for the stream layer.
State persists to ``trust.json`` beside the identity file, in the official snapshot format.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..proto import registry as reg

log = logging.getLogger("pilot_daemon.trust")

MAX_PENDING = 256
MAX_JUSTIFICATION = 1024
REPLY_WINDOW = 60.0   # a peer we contacted may answer us for this long ("reply_window")


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def sanitize(text: str) -> str:
    return "".join(ch for ch in text if ch.isprintable())[:MAX_JUSTIFICATION]


@dataclass
class TrustRecord:
    node_id: int
    public_key: str
    approved_at: float
    mutual: bool = False
    network: int = 0


@dataclass
class PendingRequest:
    node_id: int
    public_key: str
    justification: str
    received_at: float


class TrustError(Exception):
    """A trust verb that cannot be done (its text is the official daemon's)."""


async def _no_direct(peer: int, kind: str, **fields: str) -> bool:
    return False


class TrustManager:
    """``request`` sends a registry call (``await request(msg) -> reply``); ``lookup_key(node)`` -> b64 or ''."""

    def __init__(self, request: Callable[[reg.Message], Awaitable[reg.Message]],
                 lookup_key: Callable[[int], Awaitable[str]], sign: reg.Sign, *, auto_approve: bool = False,
                 store: Path | None = None) -> None:
        self.request = request
        self.lookup_key = lookup_key
        self.sign = sign
        self.auto_approve = auto_approve
        self.store = store
        self.node_id = 0
        self.trusted: dict[int, TrustRecord] = {}
        self.pending: dict[int, PendingRequest] = {}
        self.outgoing: dict[int, float] = {}
        self.contacted: dict[int, float] = {}
        # Hooks the daemon fills in: the direct port-444 send, tunnel teardown, background tasks, webhook events.
        self.send_direct: Callable[..., Awaitable[bool]] = _no_direct
        self.forget_peer: Callable[[int], None] = lambda peer: None
        self.background: Callable[[Awaitable], object] = lambda aw: None
        self.on_event: Callable[[str, dict], None] = lambda event, data: None
        self.load()

    # -- queries ------------------------------------------------------------------------------
    def allows(self, node: int, now: float) -> bool:
        """Whether a private node accepts datagrams/SYNs from ``node``."""
        if node == self.node_id or node in self.trusted:
            return True
        seen = self.contacted.get(node)
        return seen is not None and now - seen < REPLY_WINDOW

    def note_contact(self, node: int, now: float) -> None:
        self.contacted[node] = now

    def pending_json(self) -> dict:
        return {"pending": [{"node_id": p.node_id, "public_key": p.public_key, "justification": p.justification,
                             "received_at": rfc3339(p.received_at)} for p in self.pending.values()]}

    def trusted_json(self) -> dict:
        return {"trusted": [{"node_id": r.node_id, "public_key": r.public_key, "approved_at": rfc3339(r.approved_at),
                             "mutual": r.mutual, "network": r.network} for r in self.trusted.values()]}

    # -- verbs (IPC 0x0F), as the official manager: direct message on port 444 first, registry relay after --
    async def send_request(self, peer: int, justification: str) -> dict:
        if peer not in self.trusted:
            self.outgoing[peer] = time.time()
            if not await self.send_direct(peer, "handshake_request", justification=justification):
                try:
                    await self.request(reg.request_handshake(self.sign, self.node_id, peer, justification))
                except reg.RegistryError as exc:
                    raise TrustError(f"handshake request: handshake relay: {exc}") from None
        return {"status": "sent", "node_id": peer}

    async def approve(self, peer: int) -> dict:
        pending = self.pending.get(peer)
        if pending is not None:   # the official daemon approves a non-pending node as a no-op
            self._grant(peer, pending.public_key or await self.lookup_key(peer), mutual=False)
            self.on_event("handshake.approved", {"peer_node_id": peer})
            self._changed(peer, "granted", "approved")
            await self._quietly(reg.report_trust(self.sign, self.node_id, peer))
            await self._quietly(reg.respond_handshake(self.sign, self.node_id, peer, True))
            self.background(self.send_direct(peer, "handshake_accept"))
        return {"status": "approved", "node_id": peer}

    async def reject(self, peer: int, reason: str) -> dict:
        self.pending.pop(peer, None)
        self.save()
        self.on_event("handshake.rejected", {"peer_node_id": peer, "reason": reason})
        await self._quietly(reg.respond_handshake(self.sign, self.node_id, peer, False))
        self.background(self.send_direct(peer, "handshake_reject", reason=reason))
        return {"status": "rejected", "node_id": peer}

    async def revoke(self, peer: int) -> dict:
        was_trusted = self.trusted.pop(peer, None) is not None
        self.pending.pop(peer, None)
        self.outgoing.pop(peer, None)
        self.save()
        if not was_trusted:
            raise TrustError(f"handshake revoke: node {peer} was not trusted")
        self.on_event("trust.revoked", {"peer_node_id": peer})
        self._changed(peer, "revoked", "local")
        await self.send_direct(peer, "handshake_revoke", reason="trust revoked")
        self.forget_peer(peer)
        await self._quietly(reg.revoke_trust(self.sign, self.node_id, peer))
        return {"status": "revoked", "node_id": peer}

    async def _quietly(self, msg: reg.Message) -> None:
        try:
            await self.request(msg)
        except reg.RegistryError as exc:
            log.info("registry %s: %s", msg["type"], exc.message)

    # -- direct messages (port 444), already authenticated by the handshake service ---------------
    async def on_direct(self, kind: str, peer: int, public_key: str, justification: str, bound: bool) -> None:
        if kind == "handshake_request":
            justification = sanitize(justification)
            self.on_event("handshake.received", {"peer_node_id": peer, "justification": justification})
            if peer in self.trusted:
                self.background(self.send_direct(peer, "handshake_accept"))
            elif (peer in self.outgoing and bound) or self.auto_approve:
                reason = "mutual" if peer in self.outgoing and bound else "auto_approve"
                self._grant(peer, public_key, mutual=peer in self.outgoing)
                self.on_event("handshake.auto_approved", {"peer_node_id": peer, "reason": reason})
                self._changed(peer, "granted", reason)
                self.background(self.send_direct(peer, "handshake_accept"))
                await self._quietly(reg.report_trust(self.sign, self.node_id, peer))
            elif peer in self.pending or len(self.pending) < MAX_PENDING:
                self.pending[peer] = PendingRequest(peer, public_key, justification, time.time())
                log.info("handshake request pending approval", extra={"peer_node_id": peer})
                self.save()
                self.on_event("handshake.pending", {"peer_node_id": peer, "justification": justification})
        elif kind == "handshake_accept":
            self._grant(peer, public_key or await self.lookup_key(peer), mutual=True)
            await self._quietly(reg.report_trust(self.sign, self.node_id, peer))
        elif kind == "handshake_reject":
            self.outgoing.pop(peer, None)
            log.warning("handshake rejected by peer", extra={"peer_node_id": peer})
        elif kind == "handshake_revoke":
            self.on_event("trust.revoked_by_peer", {"peer_node_id": peer})
            self._changed(peer, "revoked", "by_peer")
            was_trusted = self.trusted.pop(peer, None) is not None
            self.pending.pop(peer, None)
            self.outgoing.pop(peer, None)
            self.save()
            self.forget_peer(peer)
            if was_trusted:
                await self._quietly(reg.revoke_trust(self.sign, self.node_id, peer))

    # -- registry relay -----------------------------------------------------------------------
    async def poll(self) -> None:
        reply = await self.request(reg.poll_handshakes(self.sign, self.node_id))
        for item in reply.get("requests") or []:
            if isinstance(item, dict) and isinstance(item.get("from_node_id"), int):
                await self._relayed_request(item["from_node_id"], str(item.get("justification") or ""))
        for item in reply.get("responses") or []:
            if isinstance(item, dict) and isinstance(item.get("from_node_id"), int):
                peer = item["from_node_id"]
                self.outgoing.pop(peer, None)
                if item.get("accept") is True:
                    self._grant(peer, await self.lookup_key(peer), mutual=True)

    async def _relayed_request(self, peer: int, justification: str) -> None:
        if peer in self.trusted or self.auto_approve or peer in self.outgoing:
            mutual = peer in self.outgoing
            announce = peer not in self.trusted and not mutual
            self._grant(peer, await self.lookup_key(peer), mutual=mutual)
            if announce:
                self.on_event("handshake.auto_approved", {"peer_node_id": peer, "reason": "auto_approve"})
                self._changed(peer, "granted", "auto_approve_relayed")
            await self._quietly(reg.respond_handshake(self.sign, self.node_id, peer, True))
            if not mutual:
                await self._quietly(reg.report_trust(self.sign, self.node_id, peer))
            return
        if peer not in self.pending and len(self.pending) >= MAX_PENDING:
            log.warning("pending handshake queue full, dropping request from %d", peer)
            return
        self.pending[peer] = PendingRequest(peer, await self.lookup_key(peer), sanitize(justification), time.time())
        log.info("handshake request pending approval", extra={"peer_node_id": peer})
        self.save()

    def _changed(self, peer: int, state: str, reason: str) -> None:
        self.on_event("trust.changed", {"peer_node_id": peer, "state": state, "reason": reason})

    def _grant(self, peer: int, key: str, *, mutual: bool) -> None:
        self.pending.pop(peer, None)
        self.outgoing.pop(peer, None)
        self.trusted[peer] = TrustRecord(peer, key, time.time(), mutual)
        log.info("peer trusted", extra={"peer_node_id": peer, "mutual": mutual})
        self.save()

    # -- persistence (official trust.json snapshot) -------------------------------------------
    def load(self) -> None:
        if self.store is None:
            return
        try:
            snap = json.loads(self.store.read_text())
            for e in snap.get("trusted") or []:
                self.trusted[e["node_id"]] = TrustRecord(e["node_id"], e.get("public_key", ""),
                                                         _parse_time(e["approved_at"]), bool(e.get("mutual")),
                                                         int(e.get("network", 0)))
            for e in snap.get("pending") or []:
                self.pending[e["node_id"]] = PendingRequest(e["node_id"], e.get("public_key", ""),
                                                            e.get("justification", ""), _parse_time(e["received_at"]))
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("ignoring unreadable trust state %s: %s", self.store, exc)

    def save(self) -> None:
        if self.store is None:
            return
        snap: dict = {"trusted": [{"node_id": r.node_id, "public_key": r.public_key,
                                   "approved_at": rfc3339(r.approved_at), "mutual": r.mutual,
                                   **({"network": r.network} if r.network else {})} for r in self.trusted.values()]}
        if self.pending:
            snap["pending"] = [{"node_id": p.node_id, "public_key": p.public_key, "justification": p.justification,
                                "received_at": rfc3339(p.received_at)} for p in self.pending.values()]
        try:
            fd, tmp = tempfile.mkstemp(prefix=".trust-", dir=self.store.parent)
            with os.fdopen(fd, "w") as out:
                json.dump(snap, out, indent=2)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.store)
        except OSError as exc:
            log.error("cannot write trust state %s: %s", self.store, exc)
