"""Sealed, self-describing 2025-era session ids: what a session id carries, sealed with AES-256-GCM under a key ring.

``Mcp-Session-Id`` is ``pb1.`` + base64url(key id ‖ nonce ‖ AES-256-GCM ciphertext) of a compact JSON payload:
the random session id (``sid``), its owner digest, the negotiated version, the client's capabilities and name,
when it was issued and when it expires. ``patchbay.fleet.sessions`` builds the fleet's session store on it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "pb1."
AAD = b"patchbay-session-v1"
KEY_ID_BYTES = 2
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
TAG_BYTES = 16
MAX_ID_CHARS = 4096  # a sealed id stays far below this; longer ones are refused before decoding
SEAL_BUDGET = 1024  # payload bytes; past this the full capabilities live in Redis (see fit)
KNOWN_CAPS = ("elicitation", "experimental", "extensions", "roots", "sampling", "tasks")


@dataclass(frozen=True, slots=True)
class Sealed:
    """What a session id carries."""

    sid: str
    owner: str | None
    version: str
    caps: dict[str, Any]
    client_info: dict[str, Any] | None
    iat: int
    exp: int
    spilled: bool = False  # the full capabilities did not fit and are kept in Redis (field "x")


class SealedIds:
    """Seals session payloads under a key ring: the first secret seals, every secret unseals (rotation)."""

    def __init__(self, secrets_: Sequence[bytes], *, clock: Callable[[], float] = time.time) -> None:
        """Raises:
        ValueError: no secret.
        """
        if not secrets_:
            raise ValueError("sealed session ids need at least one secret (server.secret)")
        self.clock = clock
        keys = [_derive(secret) for secret in secrets_]
        self._primary = (_key_id(keys[0]), AESGCM(keys[0]))
        self._ring: dict[bytes, list[AESGCM]] = {}
        for key in keys:  # two ids may collide in 2 bytes: try each key under it
            self._ring.setdefault(_key_id(key), []).append(AESGCM(key))

    def seal(self, sealed: Sealed) -> str:
        payload = {"s": sealed.sid, "o": sealed.owner, "v": sealed.version, "c": sealed.caps, "t": sealed.iat}
        payload["e"] = sealed.exp
        if sealed.client_info is not None:
            payload["i"] = sealed.client_info
        if sealed.spilled:
            payload["x"] = 1
        key_id, aead = self._primary
        nonce = secrets.token_bytes(NONCE_BYTES)
        return PREFIX + _b64(key_id + nonce + aead.encrypt(nonce, orjson.dumps(payload), AAD))

    def unseal(self, session_id: str) -> Sealed | None:
        """The payload of ``session_id``, or None: malformed, tampered, sealed under a key not in the ring, or
        expired. Never raises: whatever a client sends is at worst an unknown session."""
        if not session_id.startswith(PREFIX) or len(session_id) > MAX_ID_CHARS:
            return None
        text = session_id[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            return None
        # One id, one spelling: the last character's unused bits must be zero (RFC 4648 §3.5, canonical encoding).
        if len(raw) < KEY_ID_BYTES + NONCE_BYTES + TAG_BYTES or _b64(raw) != text:
            return None
        nonce, sealed = raw[KEY_ID_BYTES : KEY_ID_BYTES + NONCE_BYTES], raw[KEY_ID_BYTES + NONCE_BYTES :]
        for aead in self._ring.get(raw[:KEY_ID_BYTES], ()):
            try:
                plain = aead.decrypt(nonce, sealed, AAD)
            except InvalidTag:
                continue
            return self._parse(plain)
        return None

    def _parse(self, plain: bytes) -> Sealed | None:
        try:
            data = orjson.loads(plain)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        sid, owner, version, caps, iat, exp = (data.get(k) for k in ("s", "o", "v", "c", "t", "e"))
        info = data.get("i")
        if not (isinstance(sid, str) and isinstance(version, str) and isinstance(caps, dict)):
            return None
        if not (isinstance(iat, int) and isinstance(exp, int)) or (owner is not None and not isinstance(owner, str)):
            return None
        if exp <= self.clock():
            return None
        return Sealed(sid, owner, version, caps, info if isinstance(info, dict) else None, iat, exp, "x" in data)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _derive(secret: bytes) -> bytes:
    # RFC 5869: one AES-256 key per configured secret, bound to this use by HKDF's info.
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"patchbay session ids v1").derive(secret)


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"patchbay key id\x00" + key).digest()[:KEY_ID_BYTES]


def fit(caps: dict[str, Any], info: Any) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
    """What goes into the seal: all of it when small; otherwise which known capabilities the client has (their
    settings go to Redis) and a shortened name, so the id stays short and works while Redis is down."""
    client = {k: str(info[k])[:64] for k in ("name", "version") if k in info} if isinstance(info, dict) else None
    if len(orjson.dumps(caps)) + len(orjson.dumps(client)) <= SEAL_BUDGET:
        return caps, client, False
    return {k: {} for k in KNOWN_CAPS if k in caps}, client, True
