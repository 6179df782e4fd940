"""PROVISIONAL on main until the index-server branch lands: token hashing only."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_token(password: str, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hmac.new(salt, password.encode(), hashlib.sha256).hexdigest()
    return f"hmac-sha256${salt.hex()}${digest}"


def verify_token(stored: str, password: str) -> bool:
    scheme, _, rest = stored.partition("$")
    if scheme != "hmac-sha256":
        return False
    salt, _, digest = rest.partition("$")
    expected = hmac.new(bytes.fromhex(salt), password.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, digest)
