"""Ed25519 proofs the official clients attach to registry requests.

Every signature is base64 (standard alphabet) over a fixed ASCII string. The strings, from
`pilot-protocol/common` `registry/client/client.go` and the 1.18-era registry server and daemon:

register          register:<listen_addr>:<public_key_b64>   (listen_addr exactly as sent)
heartbeat         heartbeat:<node_id>
resolve           resolve:<requester_id>:<node_id>
set_visibility    set_visibility:<node_id>
set_hostname      set_hostname:<node_id>
set_tags          set_tags:<node_id>
deregister        deregister:<node_id>
poll_handshakes   poll_handshakes:<node_id>
request_handshake handshake:<from_node_id>:<to_node_id>
respond_handshake respond:<node_id>:<peer_id>
rotate_key        rotate:<node_id>:<new_public_key_b64>      (1.18 daemon binary; signed with the OLD key)
                  rotate:<node_id>                          (older clients and servers; also accepted)
report_trust      report_trust:<node_id>:<peer_id>
revoke_trust      revoke_trust:<node_id>:<peer_id>
join_network      join_network:<node_id>:<network_id>
leave_network     leave_network:<node_id>:<network_id>
punch             punch:<node_a>:<node_b>
compat auth       compat_auth:<node_id>:<ts>:<nonce>
"""
from __future__ import annotations

import base64
import binascii
import functools

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .errors import BadRequest, Forbidden


def challenge(kind: str, *parts: object) -> str:
    """The signed string for request `kind` (names as in the table above)."""
    prefix = {"request_handshake": "handshake", "respond_handshake": "respond",
              "rotate_key": "rotate"}.get(kind, kind)
    return ":".join([prefix, *(str(p) for p in parts)])


def decode_public_key(public_key_b64: str) -> bytes:
    """The 32 raw key bytes, or BadRequest."""
    try:
        raw = base64.b64decode(public_key_b64, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("invalid public key: not base64") from None
    if len(raw) != 32:
        raise BadRequest(f"invalid public key: {len(raw)} bytes, want 32 (Ed25519)")
    return raw


def verify(public_key: bytes, text: str, signature_b64: object) -> None:
    """Raise Forbidden unless `signature_b64` is the key's signature over `text`."""
    if not isinstance(signature_b64, str) or not signature_b64:
        raise Forbidden("signature required for authenticated node")
    try:
        sig = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Forbidden("invalid signature encoding") from None
    if not _valid(public_key, text, sig):
        raise Forbidden("signature verification failed")


@functools.lru_cache(maxsize=65536)
def _valid(public_key: bytes, text: str, sig: bytes) -> bool:
    """Ed25519 is deterministic and these proofs carry no nonce, so a repeated (key, text, sig)
    is the same proof: remembering the answer changes nothing but the cost of resolve/heartbeat."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, text.encode())
    except (InvalidSignature, ValueError):
        return False
    return True
