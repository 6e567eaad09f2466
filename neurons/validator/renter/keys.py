"""Renter API keys.

A key is ``blr_`` followed by 32 random bytes in URL-safe base64 (``secrets.token_urlsafe``).
It is shown once, when the operator adds the renter, and only its SHA-256 digest (hex) is
stored. A slow password hash (argon2, scrypt) protects *guessable* secrets; a 256-bit random
token cannot be guessed, so a single SHA-256 is as strong and keeps every request cheap. The
lookup is by digest, an exact match on a unique column, so no comparison of secrets happens in
Python.
"""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "blr_"
#: random bytes in a key
KEY_BYTES = 32
#: longest key text accepted in a header (anything longer is refused before hashing)
MAX_KEY_CHARS = 256


def new_key() -> str:
    """A fresh API key (show it once, store :func:`hash_key` of it)."""
    return KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)


def hash_key(key: str) -> str:
    """The stored form of ``key``: SHA-256, 64 hex digits."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


__all__ = ["KEY_BYTES", "KEY_PREFIX", "MAX_KEY_CHARS", "hash_key", "new_key"]
