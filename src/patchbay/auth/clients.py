"""The OAuth clients Patchbay knows: registered dynamically (RFC 7591), identified by a metadata document URL
(CIMD), or configured by the operator. One table, one lookup, one redirect-URI rule."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import sessionmaker

from patchbay.auth.redirects import is_loopback_host
from patchbay.store import writer
from patchbay.store.models import AuthClient

ClientKind = Literal["dcr", "cimd", "config"]
AUTH_METHODS = ("none", "client_secret_basic", "client_secret_post")


@dataclass(frozen=True, slots=True)
class Client:
    client_id: str
    kind: ClientKind
    name: str
    redirect_uris: tuple[str, ...]
    auth_method: str = "none"
    secret_hash: str | None = None
    # Scopes this client may be granted; None = any supported scope.
    scopes: frozenset[str] | None = None
    grant_types: tuple[str, ...] = ("authorization_code", "refresh_token")
    revoked: bool = False
    created_at: float = 0.0
    last_used_at: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def confidential(self) -> bool:
        return self.secret_hash is not None

    def redirect_allowed(self, uri: str) -> bool:
        """Exact string match (OAuth 2.1 §2.3.1), except that a loopback redirect matches on any port (RFC 8252
        §7.3: native apps pick an ephemeral port at run time)."""
        if uri in self.redirect_uris:
            return True
        asked = _loopback_parts(uri)
        return asked is not None and any(_loopback_parts(r) == asked for r in self.redirect_uris)


def _loopback_parts(uri: str) -> tuple[str, str, str, str] | None:
    try:
        parts = urlsplit(uri)
    except ValueError:  # an unclosed or invalid bracketed host: no loopback URI, and no registered one either
        return None
    if parts.scheme != "http" or not is_loopback_host(parts.hostname or ""):
        return None
    return parts.scheme, (parts.hostname or "").lower(), parts.path, parts.query


def client_view(row: AuthClient) -> Client:
    """The registered client in ``row``, its stored metadata parsed."""
    metadata = json.loads(row.metadata_json or "{}")
    grants = metadata.get("grant_types") or ["authorization_code", "refresh_token"]
    return Client(
        client_id=row.client_id,
        kind=row.kind,  # type: ignore[arg-type]
        name=row.name,
        redirect_uris=tuple(json.loads(row.redirect_uris)),
        auth_method=row.auth_method,
        secret_hash=row.secret_hash,
        scopes=frozenset(row.scope.split()) if row.scope is not None else None,
        grant_types=tuple(grants),
        revoked=row.revoked_at is not None,
        created_at=row.created_at,
        last_used_at=row.last_used_at,
        metadata=metadata,
    )


class Clients:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self.clock = clock

    def get(self, client_id: str) -> Client | None:
        with self._read() as session:
            row = session.get(AuthClient, client_id)
            return client_view(row) if row is not None else None

    def save(self, client: Client) -> Client:
        """Insert or replace (config clients at start-up, refreshed metadata documents); keeps last use."""
        with self._write() as session, session.begin():
            row = session.get(AuthClient, client.client_id)
            if row is None:
                row = AuthClient(client_id=client.client_id, created_at=client.created_at or self.clock())
                session.add(row)
            row.kind = client.kind
            row.name = client.name[:200]
            row.secret_hash = client.secret_hash
            row.auth_method = client.auth_method
            row.redirect_uris = json.dumps(list(client.redirect_uris))
            row.scope = " ".join(sorted(client.scopes)) if client.scopes is not None else None
            row.metadata_json = json.dumps({**client.metadata, "grant_types": list(client.grant_types)})
            row.revoked_at = self.clock() if client.revoked else None
            session.flush()
            return client_view(row)

    def list(self) -> list[Client]:
        with self._read() as session:
            return [client_view(r) for r in session.scalars(select(AuthClient).order_by(AuthClient.created_at))]

    def touch(self, client_id: str) -> None:
        with self._write() as session, session.begin():
            session.execute(
                update(AuthClient).where(AuthClient.client_id == client_id).values(last_used_at=self.clock())
            )

    def revoke(self, client_id: str) -> bool:
        with self._write() as session, session.begin():
            row = session.get(AuthClient, client_id)
            if row is None or row.revoked_at is not None:
                return False
            row.revoked_at = self.clock()
            return True

    def delete(self, client_ids: Iterable[str]) -> None:
        with self._write() as session, session.begin():
            session.execute(delete(AuthClient).where(AuthClient.client_id.in_(list(client_ids))))

    def prune_unused(self, older_than_seconds: float) -> int:
        """Forget dynamically registered clients that never obtained a token (Claude registers on every fresh
        connection; most registrations are never used again)."""
        cutoff = self.clock() - older_than_seconds
        with self._write() as session, session.begin():
            done = session.execute(
                delete(AuthClient)
                .where(AuthClient.kind == "dcr", AuthClient.last_used_at.is_(None), AuthClient.created_at < cutoff)
                .returning(AuthClient.client_id)
            )
            return len(done.all())
