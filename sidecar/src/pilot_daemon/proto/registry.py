"""Registry requests as the official daemon sends them (sans-I/O): JSON objects and their Ed25519 proofs.

Framing on the TCP (or TLS) connection: ``[u32 BE length][JSON object]``, one request then one reply.
Every reply has ``type``; a reply with ``error`` is a failure shown as ``registry: <error>``.
Signed strings (official ``common/registry/client``): see ``CHALLENGES``; ``sign`` is a callable that
turns text into a base64 Ed25519 signature.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

MAX_MESSAGE = 64 << 20
_U32 = struct.Struct(">I")

Sign = Callable[[str], str]
Message = dict[str, Any]


class RegistryError(Exception):
    """The registry answered with an error (``message`` is its text), or the answer was malformed."""

    def __init__(self, message: str) -> None:
        super().__init__(f"registry: {message}")
        self.message = message


def encode(msg: Message) -> bytes:
    body = json.dumps(msg, separators=(",", ":")).encode()
    return _U32.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (length,) = _U32.unpack(header)
    if length > MAX_MESSAGE:
        raise RegistryError(f"reply of {length} bytes exceeds {MAX_MESSAGE}; is this really a Pilot registry?")
    return length


def decode_reply(body: bytes) -> Message:
    try:
        msg = json.loads(body)
    except ValueError as exc:
        raise RegistryError(f"malformed reply: {exc}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise RegistryError("malformed response (no type)")
    if msg.get("error"):
        raise RegistryError(str(msg["error"]))
    return msg


def register(sign: Sign, listen_addr: str, public_key: str, owner: str, version: str, *, hostname: str = "",
             relay_only: bool = False) -> Message:
    msg: Message = {"type": "register", "listen_addr": listen_addr, "public_key": public_key, "owner": owner,
                    "version": version, "signature": sign(f"register:{listen_addr}:{public_key}")}
    if hostname:
        msg["hostname"] = hostname
    if relay_only:
        msg["relay_only"] = True
    return msg


def heartbeat(sign: Sign, node: int) -> Message:
    return {"type": "heartbeat", "node_id": node, "signature": sign(f"heartbeat:{node}")}


def lookup(node: int) -> Message:
    return {"type": "lookup", "node_id": node}


def resolve(sign: Sign, requester: int, node: int) -> Message:
    return {"type": "resolve", "node_id": node, "requester_id": requester,
            "signature": sign(f"resolve:{requester}:{node}")}


def resolve_hostname(requester: int, hostname: str) -> Message:
    return {"type": "resolve_hostname", "hostname": hostname, "requester_id": requester}


def set_visibility(sign: Sign, node: int, public: bool) -> Message:
    return {"type": "set_visibility", "node_id": node, "public": public,
            "signature": sign(f"set_visibility:{node}")}


def set_hostname(sign: Sign, node: int, hostname: str) -> Message:
    return {"type": "set_hostname", "node_id": node, "hostname": hostname, "signature": sign(f"set_hostname:{node}")}


def set_tags(sign: Sign, node: int, tags: list[str]) -> Message:
    return {"type": "set_tags", "node_id": node, "tags": tags, "signature": sign(f"set_tags:{node}")}


def deregister(sign: Sign, node: int) -> Message:
    return {"type": "deregister", "node_id": node, "signature": sign(f"deregister:{node}")}


def rotate_key(sign_with_old: Sign, node: int, new_public_key: str) -> Message:
    return {"type": "rotate_key", "node_id": node, "new_public_key": new_public_key,
            "signature": sign_with_old(f"rotate:{node}:{new_public_key}")}


def request_handshake(sign: Sign, node: int, peer: int, justification: str) -> Message:
    return {"type": "request_handshake", "from_node_id": node, "to_node_id": peer, "justification": justification,
            "signature": sign(f"handshake:{node}:{peer}")}


def poll_handshakes(sign: Sign, node: int) -> Message:
    return {"type": "poll_handshakes", "node_id": node, "signature": sign(f"poll_handshakes:{node}")}


def respond_handshake(sign: Sign, node: int, peer: int, accept: bool) -> Message:
    return {"type": "respond_handshake", "node_id": node, "peer_id": peer, "accept": accept,
            "signature": sign(f"respond:{node}:{peer}")}


def report_trust(sign: Sign, node: int, peer: int) -> Message:
    return {"type": "report_trust", "node_id": node, "peer_id": peer, "signature": sign(f"report_trust:{node}:{peer}")}


def revoke_trust(sign: Sign, node: int, peer: int) -> Message:
    return {"type": "revoke_trust", "node_id": node, "peer_id": peer, "signature": sign(f"revoke_trust:{node}:{peer}")}


def join_network(sign: Sign, node: int, network: int, token: str = "") -> Message:
    return {"type": "join_network", "node_id": node, "network_id": network, "token": token,
            "signature": sign(f"join_network:{node}:{network}")}


def list_nodes(network: int, admin_token: str = "") -> Message:
    """A network's members; the official daemon adds its admin token when it has one (the registry then also
    lists the backbone and hidden fields)."""
    msg: Message = {"type": "list_nodes", "network_id": network}
    if admin_token:
        msg["admin_token"] = admin_token
    return msg


def invite_to_network(sign: Sign, inviter: int, network: int, target: int, admin_token: str = "") -> Message:
    msg: Message = {"type": "invite_to_network", "inviter_id": inviter, "network_id": network,
                    "target_node_id": target, "signature": sign(f"invite:{inviter}:{network}:{target}")}
    if admin_token:
        msg["admin_token"] = admin_token
    return msg


def poll_invites(sign: Sign, node: int) -> Message:
    return {"type": "poll_invites", "node_id": node, "signature": sign(f"poll_invites:{node}")}


def respond_invite(sign: Sign, node: int, network: int, accept: bool) -> Message:
    return {"type": "respond_invite", "node_id": node, "network_id": network, "accept": accept,
            "signature": sign(f"respond_invite:{node}:{network}")}


def leave_network(sign: Sign, node: int, network: int) -> Message:
    return {"type": "leave_network", "node_id": node, "network_id": network,
            "signature": sign(f"leave_network:{node}:{network}")}


def punch(sign: Sign, requester: int, a: int, b: int) -> Message:
    return {"type": "punch", "requester_id": requester, "node_a": a, "node_b": b, "signature": sign(f"punch:{a}:{b}")}
