"""Every kind of change that must end a token's use at once, and writes that must not, as store operations.

Shared by the SQLite unit tests and the PostgreSQL end-to-end test, so both engines' triggers are held to the
same list.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, text, update

from patchbay.auth.clients import Client, Clients
from patchbay.auth.errors import OAuthError
from patchbay.auth.grants import Grants, Pending
from patchbay.auth.keys import ApiKeys
from patchbay.auth.users import Users
from patchbay.store.models import AuthApiKey, AuthToken, AuthUser

RESOURCE = "http://127.0.0.1:8000/mcp"


@dataclass
class Seeded:
    """One user, one client, one grant (access + refresh) from a redeemed code, and one API key."""

    engine: Engine
    user_id: int
    client_id: str
    code: str
    access: str
    refresh: str
    key: str


VERIFIER = "v" * 43
REDIRECT = "http://127.0.0.1:1/cb"


def seed(engine: Engine) -> Seeded:
    users, clients, grants, keys = Users(engine), Clients(engine), Grants(engine), ApiKeys(engine)
    user = users.add("alice", "a long password", roles=["staff"])
    client = clients.save(Client("pb_client_x", "dcr", "Test", (REDIRECT,)))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(VERIFIER.encode()).digest()).rstrip(b"=").decode()
    code = grants.issue_code(Pending(client.client_id, REDIRECT, None, challenge, "mcp", RESOURCE), user.id)
    tokens = grants.redeem_code(code, client.client_id, REDIRECT, VERIFIER, RESOURCE, True)
    _, secret = keys.create("ci", ["mcp"], ["robot"])
    assert tokens.refresh_token is not None
    return Seeded(engine, user.id, client.client_id, code, tokens.access_token, tokens.refresh_token, secret)


def _replay(s: Seeded) -> None:
    with contextlib.suppress(OAuthError):
        Grants(s.engine).redeem_code(s.code, s.client_id, REDIRECT, VERIFIER, RESOURCE, True)


def _reuse(s: Seeded) -> None:
    grants = Grants(s.engine)
    grants.refresh(s.refresh, s.client_id, None, None)
    with contextlib.suppress(OAuthError):
        grants.refresh(s.refresh, s.client_id, None, None)


def generation(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT generation FROM auth_revocation_epoch WHERE id = 1")).scalar_one())


def _sql(engine: Engine, statement: object) -> None:
    with engine.begin() as connection:
        connection.execute(statement)  # type: ignore[call-overload]


Change = Callable[[Seeded], object]

# What the server, the CLI or an operator can do that must stop a token on the next request.
REVOKING: dict[str, Change] = {
    "grant revoked by refresh-token revocation (RFC 7009)": lambda s: Grants(s.engine).revoke(s.refresh, s.client_id),
    "access token revoked (RFC 7009)": lambda s: Grants(s.engine).revoke(s.access, s.client_id),
    "replayed authorization code": _replay,
    "reused refresh token": _reuse,
    "tokens revoke --user": lambda s: Grants(s.engine).revoke_user(s.user_id),
    "clients revoke (tokens)": lambda s: Grants(s.engine).revoke_client(s.client_id),
    "clients revoke (client)": lambda s: Clients(s.engine).revoke(s.client_id),
    "client deleted": lambda s: Clients(s.engine).delete([s.client_id]),
    "keys revoke": lambda s: ApiKeys(s.engine).revoke("ci"),
    "key expiry brought forward by hand": lambda s: _sql(s.engine, update(AuthApiKey).values(expires_at=1.0)),
    "key scopes narrowed by hand": lambda s: _sql(s.engine, update(AuthApiKey).values(scopes="")),
    "key deleted by hand": lambda s: _sql(s.engine, delete(AuthApiKey)),
    "users disable": lambda s: Users(s.engine).set_disabled("alice", True),
    "user roles changed": lambda s: _sql(s.engine, update(AuthUser).values(roles="")),
    "user deleted by hand": lambda s: _sql(s.engine, delete(AuthUser)),
    "token deleted by hand": lambda s: _sql(s.engine, delete(AuthToken).where(AuthToken.kind == "access")),
}

# Writes on the hot path or at start-up that revoke nothing: they must keep the cache warm.
HARMLESS: dict[str, Change] = {
    "key used (last_used_at)": lambda s: ApiKeys(s.engine).lookup(s.key),
    "client used (last_used_at)": lambda s: Clients(s.engine).touch(s.client_id),
    "client saved again at start-up": lambda s: Clients(s.engine).save(Client(s.client_id, "dcr", "Test", (REDIRECT,))),
    "refresh token rotated": lambda s: Grants(s.engine).refresh(s.refresh, s.client_id, None, None),
    "another key created": lambda s: ApiKeys(s.engine).create("other", ["mcp"]),
    "user's roles set to the same": lambda s: _sql(s.engine, update(AuthUser).values(roles="staff")),
    "prune with no client due": lambda s: Clients(s.engine).prune_unused(10**9),
}
