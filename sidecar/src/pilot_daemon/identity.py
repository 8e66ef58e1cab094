"""The node identity: an Ed25519 key pair in the official JSON file format.

File (official 1.18, ``-identity PATH``): ``{"private_key": "<b64>", "public_key": "<b64>"}`` indented by two
spaces, no final newline, mode 0600,
base64 standard alphabet; ``private_key`` is Go's 64-byte ``ed25519.PrivateKey`` (seed ‖ public key), so a
file moves between the Go and the Python daemon. Without ``-identity`` the key is ephemeral.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

OWNER_DOMAIN = "nodes.pilotprotocol.network"


class IdentityError(Exception):
    """An identity file that cannot be read or does not hold a valid key pair."""


@dataclass(frozen=True)
class Identity:
    key: Ed25519PrivateKey
    path: Path | None = None

    @property
    def public_bytes(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public_bytes).decode()

    @property
    def owner(self) -> str:
        """What the official daemon registers as ``owner`` without ``-email``: 12 hex of the public key."""
        return f"{self.public_bytes.hex()[:12]}@{OWNER_DOMAIN}"

    def sign_b64(self, text: str) -> str:
        return base64.b64encode(self.key.sign(text.encode())).decode()

    def to_json(self) -> bytes:
        seed = self.key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return json.dumps({"private_key": base64.b64encode(seed + self.public_bytes).decode(),
                           "public_key": self.public_b64}, indent=2).encode()


def generate(path: Path | None = None) -> Identity:
    return Identity(Ed25519PrivateKey.generate(), path)


def parse(data: bytes, path: Path | None = None) -> Identity:
    """Parse the official identity JSON; raises ``IdentityError`` saying what is wrong."""
    where = f" in {path}" if path else ""
    try:
        doc = json.loads(data)
        raw = base64.b64decode(doc["private_key"], validate=True)
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise IdentityError(f"bad identity file{where}: {exc}; delete it to get a fresh identity") from None
    if len(raw) not in (32, 64):
        raise IdentityError(f"bad identity file{where}: private_key is {len(raw)} bytes, want 64 (seed + public)")
    ident = Identity(Ed25519PrivateKey.from_private_bytes(raw[:32]), path)
    if len(raw) == 64 and raw[32:] != ident.public_bytes:
        raise IdentityError(f"bad identity file{where}: private_key does not match its public half")
    if doc.get("public_key") not in (None, ident.public_b64):
        raise IdentityError(f"bad identity file{where}: public_key does not match private_key")
    return ident


def write(ident: Identity, path: Path) -> None:
    """Write atomically with mode 0600 (the directory is created 0700 if missing)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".identity-", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, ident.to_json())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create(path: str | os.PathLike | None) -> Identity:
    """The identity at ``path`` (created there if missing), or an ephemeral one when ``path`` is empty."""
    if not path:
        return generate()
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        ident = generate(p)
        write(ident, p)
        return ident
    except OSError as exc:
        raise IdentityError(f"cannot read identity file {p}: {exc.strerror}; check its permissions") from None
    return parse(data, p)
