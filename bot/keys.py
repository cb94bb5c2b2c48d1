"""API keys: made once, shown once, stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

KEY_PREFIX = "nimbus_"


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys are long random strings, so a plain SHA-256 is enough (no dictionary to slow down).
    return hashlib.sha256(key.encode("utf-8")).hexdigest()
