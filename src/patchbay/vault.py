"""Secrets sealed at rest: upstream tokens of linked accounts, client secrets, held approval arguments.

A sealed value is one line of text, ``pbv1.<key id>.<base64url(nonce ‖ AES-256-GCM ciphertext ‖ tag)>``. The
caller's ``context`` (e.g. ``"link:jira:42"``) is bound as associated data (NIST SP 800-38D §5.2.1), so a value
copied to another row, user or purpose does not open. Keys rotate: the first configured key seals, every
configured key opens, and ``patchbay vault rotate`` re-seals what is stored under the first.

Keys come from ``[vault] keys`` (``PATCHBAY_VAULT__KEYS='["…"]'``) or ``[vault] key_file``; with neither, a
file-based SQLite store keeps ``patchbay.key`` beside the database (created 0600 on first use), an in-memory store
uses a key that lives as long as the process, and a server store (PostgreSQL) is a config error: replicas must
share one key, so Patchbay will not invent one per process.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy.engine import make_url

from patchbay.errors import ConfigError, PatchbayError

if TYPE_CHECKING:
    from patchbay.settings import Settings

log = logging.getLogger("patchbay.vault")

VERSION = "pbv1"
KEY_BYTES = 32
NONCE_BYTES = 12  # NIST SP 800-38D §8.2: 96-bit random nonces
KEY_FILE_NAME = "patchbay.key"
MAKE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


class VaultError(PatchbayError):
    """A sealed value does not open: unknown key, another context, or altered text. Carries no secret."""


class Vault:
    """Seals and opens secrets with AES-256-GCM under a list of keys (the first seals, all open)."""

    def __init__(self, keys: list[bytes]) -> None:
        """Raises:
        ValueError: no key, or a key that is not 32 bytes.
        """
        if not keys:
            raise ValueError("a vault needs at least one key")
        for key in keys:
            if len(key) != KEY_BYTES:
                raise ValueError(f"vault keys are {KEY_BYTES} bytes, got {len(key)}")
        self._keys = {key_id(key): AESGCM(key) for key in keys}
        self.primary = key_id(keys[0])

    @classmethod
    def from_settings(cls, settings: Settings) -> Vault:
        """The vault the settings describe (see the module docstring for where keys come from).

        Raises:
            ConfigError: naming ``[vault] keys`` or ``[vault] key_file`` and what is wrong with it.
        """
        return cls(_keys_from_settings(settings))

    @classmethod
    def ephemeral(cls) -> Vault:
        """A vault whose one key lives as long as the process (tests, in-memory stores)."""
        return cls([secrets.token_bytes(KEY_BYTES)])

    @property
    def key_ids(self) -> list[str]:
        return list(self._keys)

    def seal(self, plaintext: bytes, *, context: str) -> str:
        """Encrypt ``plaintext`` under the first key, bound to ``context``."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._keys[self.primary].encrypt(nonce, plaintext, _aad(context))
        return f"{VERSION}.{self.primary}.{_b64(nonce + sealed)}"

    def open(self, token: str, *, context: str) -> bytes:
        """The plaintext ``token`` was sealed from.

        Raises:
            VaultError: not a sealed value, sealed under a key not configured, under another context, or altered.
        """
        version, kid, body = _split(token)
        if version != VERSION:
            raise VaultError(f"not a sealed value of this Patchbay version ({version!r})")
        aead = self._keys.get(kid)
        if aead is None:
            raise VaultError(f"sealed under key {kid}, which is not among [vault] keys ({', '.join(self._keys)})")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise VaultError("sealed value is not valid base64url") from None
        if len(raw) < NONCE_BYTES + 16:
            raise VaultError("sealed value is too short")
        try:
            return aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(context))
        except InvalidTag:
            raise VaultError("sealed value does not open: altered, or sealed for another context") from None

    def needs_reseal(self, token: str) -> bool:
        """Whether ``token`` was sealed under a key other than the first (``patchbay vault rotate``)."""
        return _split(token)[1] != self.primary

    def reseal(self, token: str, *, context: str) -> str:
        """``token`` sealed again under the first key. Raises VaultError like :meth:`open`."""
        return self.seal(self.open(token, context=context), context=context)

    def seal_text(self, text: str, *, context: str) -> str:
        return self.seal(text.encode("utf-8"), context=context)

    def open_text(self, token: str, *, context: str) -> str:
        """Raises VaultError like :meth:`open`."""
        return self.open(token, context=context).decode("utf-8")


def key_id(key: bytes) -> str:
    """A short, non-secret name for a key: 8 hex digits of a domain-separated SHA-256."""
    return hashlib.sha256(b"patchbay-vault-key-id\x00" + key).hexdigest()[:8]


def parse_key(text: str) -> bytes:
    """A key as configured: base64 or base64url of 32 random bytes.

    Raises:
        ValueError: with what is allowed and how to make a key.
    """
    cleaned = text.strip()
    try:
        raw = base64.urlsafe_b64decode(cleaned.replace("+", "-").replace("/", "_") + "=" * (-len(cleaned) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES:
        raise ValueError(f"must be base64 of {KEY_BYTES} random bytes (make one with: {MAKE_KEY})")
    return raw


def _aad(context: str) -> bytes:
    return f"patchbay-vault:{VERSION}:{context}".encode()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _split(token: str) -> tuple[str, str, str]:
    parts = token.split(".")
    if len(parts) != 3:
        raise VaultError("not a sealed value")
    return parts[0], parts[1], parts[2]


def _keys_from_settings(settings: Settings) -> list[bytes]:
    vault = settings.vault
    source = settings.source
    if vault.keys:
        keys = []
        for index, secret in enumerate(vault.keys):
            try:
                keys.append(parse_key(secret.get_secret_value()))
            except ValueError as exc:
                raise ConfigError(f"{source}: vault.keys[{index}]: {exc}", file=source, key="vault.keys") from None
        return keys
    if vault.key_file:
        path = settings.base_dir / vault.key_file
        return [_read_key_file(path, source, create=_store_is_sqlite_file(settings))]
    url = make_url(settings.store_url)
    if url.get_backend_name() != "sqlite":
        raise ConfigError(
            f"{source}: vault.keys: a {url.get_backend_name()} store is shared by replicas, so they need one "
            f"configured vault key: set [vault] keys (or PATCHBAY_VAULT__KEYS='[\"…\"]'), or [vault] key_file. "
            f"Make a key with: {MAKE_KEY}",
            file=source,
            key="vault.keys",
        )
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        log.info("vault: in-memory store, sealing with a key that lasts as long as this process")
        return [secrets.token_bytes(KEY_BYTES)]
    return [_read_key_file(Path(url.database).parent / KEY_FILE_NAME, source, create=True)]


def _store_is_sqlite_file(settings: Settings) -> bool:
    return make_url(settings.store_url).get_backend_name() == "sqlite"


def _read_key_file(path: Path, source: str, *, create: bool) -> bytes:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        if not create:
            raise ConfigError(
                f"{source}: vault.key_file: {path} does not exist; replicas sharing a server store must share one "
                f"key, so create it once (e.g. {MAKE_KEY} > {path.name}; chmod 600) and give every replica a copy",
                file=source,
                key="vault.key_file",
            ) from None
        return _create_key_file(path, source)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not a key file"
        raise ConfigError(
            f"{source}: vault.key_file: cannot read {path}: {reason}", file=source, key="vault.key_file"
        ) from None
    try:
        return parse_key(text)
    except ValueError as exc:
        raise ConfigError(f"{source}: vault.key_file: {path}: {exc}", file=source, key="vault.key_file") from None


def _create_key_file(path: Path, source: str) -> bytes:
    key = secrets.token_bytes(KEY_BYTES)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(_b64(key) + "\n")
        # link() fails when the name exists: two processes starting at once never replace each other's key, and
        # the file is complete before anyone can read it under its name.
        os.link(temporary, path)
    except FileExistsError:
        return _read_key_file(path, source, create=False)
    except OSError as exc:
        raise ConfigError(
            f"{source}: vault.key_file: cannot create {path}: {exc.strerror}", file=source, key="vault.key_file"
        ) from None
    finally:
        temporary.unlink(missing_ok=True)
    log.warning("vault: created key file %s (mode 0600); back it up: sealed secrets do not open without it", path)
    return key
