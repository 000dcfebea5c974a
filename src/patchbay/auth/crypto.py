"""Random secrets, their stored digests, and PKCE (RFC 7636).

Every secret Patchbay hands out (access and refresh tokens, codes, API keys, client secrets, browser sessions)
is 256 random bits behind a short prefix that says what it is; only its SHA-256 digest is stored. SHA-256 and
not a slow hash: the input is random and long, so nothing can be guessed from the digest, and the lookup on
every MCP request stays fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

ACCESS_PREFIX = "pb_at_"
REFRESH_PREFIX = "pb_rt_"
CODE_PREFIX = "pb_ac_"
KEY_PREFIX = "pb_key_"
SECRET_PREFIX = "pb_cs_"  # noqa: S105 - a prefix, not a secret
# RFC 7636 §4.1: code_verifier = 43*128unreserved
VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def new_secret(prefix: str = "") -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def s256(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL-ENCODE(SHA256(ASCII(code_verifier))), without padding."""
    raw = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def pkce_matches(verifier: str, challenge: str) -> bool:
    """RFC 7636 §4.6, S256 only (OAuth 2.1 drops "plain")."""
    if not VERIFIER.match(verifier):
        return False
    return same(s256(verifier), challenge)
