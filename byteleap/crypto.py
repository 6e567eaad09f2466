"""Hashing and signature primitives shared by every link.

* :func:`frame` is the length-prefixed field encoding of SPEC 4.2
  (``f(b) = u32le(len(b)) || b``). Every signed or hashed message in ByteLeap is a domain tag
  followed by framed fields, so that no two field lists encode alike and no signature made for one
  purpose verifies for another.
* Worker identity is an ed25519 key pair (SPEC 2). The private key never leaves the worker; the
  miner pins the 32-byte raw public key.
"""

from __future__ import annotations

import hashlib
import struct

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64


def u32le(value: int) -> bytes:
    return struct.pack("<I", value)


def frame(*fields: bytes | str) -> bytes:
    """Concatenate ``u32le(len(b)) || b`` for each field; strings are UTF-8 encoded."""
    out = bytearray()
    for item in fields:
        raw = item.encode("utf-8") if isinstance(item, str) else bytes(item)
        out += u32le(len(raw))
        out += raw
    return bytes(out)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


class WorkerKey:
    """An ed25519 signing key. ``repr`` never shows the secret."""

    __slots__ = ("_private",)

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private

    @classmethod
    def generate(cls) -> WorkerKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> WorkerKey:
        """Build from the 32-byte private seed (the format ``keygen`` stores)."""
        if len(seed) != 32:
            raise ValueError("an ed25519 seed is exactly 32 bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    def seed(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.Raw,
            serialization.PrivateFormat.Raw,
            serialization.NoEncryption(),
        )

    @property
    def public_key(self) -> bytes:
        return self._private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def __repr__(self) -> str:
        return f"WorkerKey(public={self.public_key.hex()})"


def verify_ed25519(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid ed25519 signature of ``message`` by ``public_key``.

    Malformed keys or signatures verify as False rather than raising: the caller turns a False
    into the typed error that fits its context.
    """
    if len(public_key) != PUBLIC_KEY_BYTES or len(signature) != SIGNATURE_BYTES:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
