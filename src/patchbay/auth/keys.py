"""Static API keys (``pb_key_…``) for scripts, the OpenAI Responses API ``authorization`` field and the
Anthropic Messages API connector. Shown once at creation; stored as SHA-256 digests."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, select
from sqlalchemy.orm import sessionmaker

from patchbay.auth.crypto import KEY_PREFIX, digest, new_secret
from patchbay.auth.principal import Principal
from patchbay.store import writer
from patchbay.store.models import AuthApiKey

KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True, slots=True)
class KeyView:
    name: str
    hint: str
    scopes: tuple[str, ...]
    roles: tuple[str, ...]
    created_at: float
    expires_at: float | None
    last_used_at: float | None
    revoked: bool


def key_view(row: AuthApiKey) -> KeyView:
    """The API key in ``row`` as callers see it (its hint, never its hash)."""
    return KeyView(
        name=row.name,
        hint=row.hint,
        scopes=tuple(row.scopes.split()),
        roles=tuple(row.roles.split()),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked=row.revoked_at is not None,
    )


class ApiKeys:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self.clock = clock

    def create(
        self, name: str, scopes: Iterable[str], roles: Iterable[str] = (), days: float | None = None
    ) -> tuple[KeyView, str]:
        """A new key; the secret is returned once and never stored. Raises ValueError for a bad or taken name."""
        if not KEY_NAME.fullmatch(name):  # not .match: "$" also matches before a final newline
            raise ValueError("a key name is 1-100 of A-Z a-z 0-9 _ . - (starting with a letter or digit)")
        secret = new_secret(KEY_PREFIX)
        now = self.clock()
        with self._write() as session, session.begin():
            if session.scalar(select(AuthApiKey.id).where(AuthApiKey.name == name)) is not None:
                raise ValueError(f"a key named {name!r} already exists (revoke it or pick another name)")
            row = AuthApiKey(
                name=name,
                key_hash=digest(secret),
                hint=secret[: len(KEY_PREFIX) + 4],
                scopes=" ".join(dict.fromkeys(scopes)),
                roles=" ".join(dict.fromkeys(roles)),
                created_at=now,
                expires_at=now + days * 86_400 if days else None,
            )
            session.add(row)
            session.flush()
            return key_view(row), secret

    def list(self) -> list[KeyView]:
        with self._read() as session:
            return [key_view(r) for r in session.scalars(select(AuthApiKey).order_by(AuthApiKey.name))]

    def revoke(self, name: str) -> bool:
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthApiKey).where(AuthApiKey.name == name))
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock()
            return True

    def lookup(self, secret: str) -> Principal | None:
        """The key's principal, or None when unknown, revoked or expired."""
        now = self.clock()
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthApiKey).where(AuthApiKey.key_hash == digest(secret)))
            if row is None or row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
                return None
            row.last_used_at = now
            return Principal(
                subject=f"key:{row.name}",
                kind="api_key",
                scopes=frozenset(row.scopes.split()),
                roles=frozenset(row.roles.split()),
                username=None,
                client_id=None,
                expires_at=row.expires_at,
            )
