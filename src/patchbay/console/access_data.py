"""What the Access page reads and checks beyond the auth package's own stores: a client's live grants, the form
values (roles, key names, days) checked with a precise reason, and the caller a policy question is asked for.

Secrets never pass through here: grants are listed by id, user and scope (no token, no hash).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from patchbay.auth.principal import Principal

if TYPE_CHECKING:  # the stores load with sign-in (which the lists need); the form checks need neither
    from sqlalchemy import Engine

    from patchbay.links.store import LinkStore

__all__ = ["FormError", "GrantRow", "arguments", "caller", "client_grants", "days", "link_store", "principal", "roles"]

ROLE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
MAX_ROLES = 20
MAX_ARGUMENT_TEXT = 65_536
MAX_GRANTS = 200


class FormError(ValueError):
    """A form field the page cannot use: ``field`` names it; the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class GrantRow:
    grant_id: str
    username: str
    scope: str
    created_at: float
    expires_at: float
    tokens: int


def client_grants(engine: Engine, client_id: str, now: float) -> list[GrantRow]:
    """The client's grants that still hold a live token (newest first, at most ``MAX_GRANTS``)."""
    from sqlalchemy import func, select

    from patchbay.store.models import AuthToken, AuthUser

    query = (
        select(
            AuthToken.grant_id,
            AuthUser.username,
            func.max(AuthToken.scope),
            func.min(AuthToken.created_at),
            func.max(AuthToken.expires_at),
            func.count(),
        )
        .join(AuthUser, AuthUser.id == AuthToken.user_id)
        .where(AuthToken.client_id == client_id, AuthToken.revoked_at.is_(None), AuthToken.expires_at > now)
        .group_by(AuthToken.grant_id, AuthUser.username)
        .order_by(func.min(AuthToken.created_at).desc())
        .limit(MAX_GRANTS)
    )
    with engine.connect() as connection:
        return [GrantRow(*row) for row in connection.execute(query).all()]


def link_store(engine: Engine) -> LinkStore:
    """The linked accounts, for listing and removing: neither opens a sealed token, so (as `patchbay links`) a
    throwaway vault key keeps the page free of the configured one."""
    from patchbay.links.store import LinkStore
    from patchbay.vault import Vault

    return LinkStore(engine, Vault.ephemeral())


def roles(text: str | None) -> list[str]:
    """Roles typed as one field, separated by spaces or commas.

    Raises:
        FormError: a role with characters other than letters, digits and ``_ . : -``, or too many roles.
    """
    found = [r for r in re.split(r"[\s,]+", text or "") if r]
    if len(found) > MAX_ROLES:
        raise FormError("roles", f"at most {MAX_ROLES} roles")
    for role in found:
        if not ROLE.match(role):
            raise FormError(
                "roles", f"{role[:40]!r} is not a role name: 1 to 64 of A-Z a-z 0-9 _ . : - (a letter or digit first)"
            )
    return sorted(set(found))


def days(text: str | None) -> float | None:
    """A key's lifetime in days (empty: it never expires).

    Raises:
        FormError: not a number from 1 to 3650.
    """
    if not text or not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        raise FormError("days", f"{text[:20]!r} is not a number of days") from None
    if not 1 <= value <= 3650:
        raise FormError("days", "a key lives 1 to 3650 days (leave empty for no expiry)")
    return value


def arguments(text: str | None) -> dict[str, Any]:
    """The playground's arguments: a JSON object (empty text: ``{}``).

    Raises:
        FormError: not JSON, not an object, or longer than ``MAX_ARGUMENT_TEXT`` characters.
    """
    if not text or not text.strip():
        return {}
    if len(text) > MAX_ARGUMENT_TEXT:
        raise FormError("args", f"at most {MAX_ARGUMENT_TEXT} characters of JSON")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError("args", f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(value, dict):
        raise FormError("args", 'must be a JSON object, e.g. {"id": 3}')
    return value


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the playground asks about, as the form gives it."""

    kind: str  # user | key | anonymous
    name: str
    client: str


def caller(query: Mapping[str, str]) -> Caller:
    """The caller the playground's query names.

    Raises:
        FormError: an unknown kind, or a user or key without a name.
    """
    kind = (query.get("kind") or "user").strip()
    name = (query.get("name") or "").strip()[:200]
    if kind not in ("user", "key", "anonymous"):
        raise FormError("kind", "user, key or anonymous")
    if kind != "anonymous" and not name:
        raise FormError("name", f"the {'user' if kind == 'user' else 'API key'}'s name")
    return Caller(kind, name, (query.get("client") or "").strip()[:2048])


def principal(who: Caller, core: Any, default_scopes: tuple[str, ...]) -> Principal | None:
    """The principal ``who`` would be, as ``patchbay policy explain`` builds it (roles from the store).

    Raises:
        FormError: no such user, or no live API key of that name.
    """
    if who.kind == "anonymous":
        return None
    client_id = client_name = who.client or None
    if who.client:
        found = next((c for c in core.clients.list() if who.client in (c.client_id, c.name)), None)
        if found is not None:
            client_id, client_name = found.client_id, found.name
    if who.kind == "key":
        view = next((k for k in core.keys.list() if k.name == who.name and not k.revoked), None)
        if view is None:
            raise FormError("name", f"no live API key is named {who.name!r}")
        return Principal(f"key:{who.name}", "api_key", frozenset(view.scopes), frozenset(view.roles))
    user = core.users.by_name(who.name)
    if user is None:
        raise FormError("name", f"no user is named {who.name!r}")
    scopes = frozenset(default_scopes)
    return Principal(f"user:{who.name}", "user", scopes, user.roles, who.name, client_id, client_name=client_name)
