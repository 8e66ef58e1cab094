"""Loader for vectors/official_1_18_capture.json (bytes captured from the official pilot-daemon 1.18)."""

import json
import struct
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

PATH = Path(__file__).parent / "vectors" / "official_1_18_capture.json"
DAEMON_NODE = 1000
PEER_NODE = 1001


@cache
def capture() -> dict:
    return json.loads(PATH.read_text())


def peer_x25519() -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes.fromhex(capture()["peer_x25519_private_hex"]))


def peer_ed25519() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(capture()["peer_ed25519_private_hex"]))


def udp_frames(direction: str, magic: bytes | None = None) -> list[bytes]:
    frames = [bytes.fromhex(u["hex"]) for u in capture()["udp"] if u["dir"] == direction]
    return [f for f in frames if magic is None or f[:4] == magic]


def daemon_pila() -> bytes:
    return udp_frames("daemon->peer", b"PILA")[0]


def ipc(name: str) -> dict:
    for entry in capture()["ipc"]:
        if entry["name"] == name:
            return {k[:-4]: bytes.fromhex(v) for k, v in entry.items() if k.endswith("_hex")}
    raise KeyError(name)


def u32(data: bytes, offset: int) -> int:
    return struct.unpack_from(">I", data, offset)[0]
