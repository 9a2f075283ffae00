"""API key format and salted digests, shared by the operator (mints) and the gateway (verifies).

A key is ``kr_<16 hex id>_<32 hex secret>``. The id is public (it names the ApiKey in
``status.keyId`` and in metrics); only a salted SHA-256 of the secret is published, as
``sha256$<salt hex>$<digest hex>``, so a leaked status cannot be replayed as a key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "kr"
_KEY_RE = re.compile(r"^kr_([0-9a-f]{16})_([0-9a-f]{32})$")
_DIGEST_RE = re.compile(r"^sha256\$([0-9a-f]{32})\$([0-9a-f]{64})$")


@dataclass(frozen=True)
class ParsedKey:
    key_id: str
    secret: str


def generate_key() -> str:
    """A fresh random key; 64 bits of id, 128 bits of secret."""
    return f"{KEY_PREFIX}_{secrets.token_hex(8)}_{secrets.token_hex(16)}"


def parse_key(key: str) -> ParsedKey | None:
    """Split a presented key into id and secret; None when it is not shaped like ours."""
    match = _KEY_RE.match(key.strip())
    if match is None:
        return None
    return ParsedKey(key_id=match.group(1), secret=match.group(2))


def digest_secret(secret: str, salt: str | None = None) -> str:
    """The published form of a secret: ``sha256$salt$hex``. A new salt is drawn when none given."""
    salt = salt if salt is not None else secrets.token_hex(16)
    digest = hashlib.sha256(bytes.fromhex(salt) + secret.encode()).hexdigest()
    return f"sha256${salt}${digest}"


def verify_secret(secret: str, published: str) -> bool:
    """Constant-time check of a presented secret against a published digest."""
    match = _DIGEST_RE.match(published)
    if match is None:
        return False
    expected = digest_secret(secret, match.group(1))
    return hmac.compare_digest(expected.encode(), published.encode())
