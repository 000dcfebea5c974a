"""Who is calling: the principal a request authenticated as, handed to tools through ``Context.principal``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

PrincipalKind = Literal["user", "api_key", "external"]


@dataclass(frozen=True, slots=True)
class Principal:
    """A signed-in user (through a client), an API key, or a token from an external identity provider.

    ``subject`` is stable per person or key (``user:alice``, ``key:ci``, or the external ``sub``); ``client_id``
    names the OAuth client that holds the token, when there is one, and ``client_name`` its registered name (policy
    rules may name a client either way).
    """

    subject: str
    kind: PrincipalKind
    scopes: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()
    username: str | None = None
    client_id: str | None = None
    expires_at: float | None = None
    client_name: str | None = None
    claims: dict[str, object] = field(default_factory=dict, compare=False, hash=False)

    def has_scopes(self, needed: Iterable[str]) -> bool:
        return all(scope in self.scopes for scope in needed)

    def __str__(self) -> str:
        return self.subject


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused credential: the HTTP status, the ``WWW-Authenticate`` challenge, and a client-safe message."""

    status: int
    challenge: str
    message: str
