"""The credential store's repository: linked accounts, client registrations and pending links.

Blocking SQLAlchemy calls (run them in a worker thread from async code); writes go through the store's single
writer path. Secrets are sealed and opened here, each bound to its row's purpose, so nothing outside this module
handles a sealed value.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, text
from sqlalchemy.orm import sessionmaker

from patchbay.links.models import LinkAccount, LinkClient, LinkPending
from patchbay.store import writer
from patchbay.vault import Vault

# The auth tables' revocation generation (migration auth_0002); every branch is migrated before links are used.
BUMP_GENERATION = "UPDATE auth_revocation_epoch SET generation = generation + 1 WHERE id = 1"


@dataclass(frozen=True, slots=True)
class Tokens:
    """What an authorization server answered (RFC 6749 §5.1), with ``expires_at`` as epoch seconds."""

    access_token: str
    refresh_token: str | None
    expires_at: float | None
    scopes: str = ""
    token_type: str = "Bearer"  # noqa: S105 - the scheme name, not a secret


@dataclass(frozen=True, slots=True)
class Account:
    connector: str
    subject: str
    issuer: str
    tokens: Tokens
    updated_at: float


@dataclass(frozen=True, slots=True)
class AccountView:
    """A linked account without its secrets: what ``patchbay links list`` shows."""

    connector: str
    subject: str
    issuer: str
    scopes: str
    expires_at: float | None
    refreshable: bool
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Registration:
    client_id: str
    client_secret: str | None
    method: str  # cimd | dcr | configured


@dataclass(frozen=True, slots=True)
class Pending:
    connector: str
    subject: str
    issuer: str
    verifier: str


def state_hash(state: str) -> str:
    return hashlib.sha256(state.encode()).hexdigest()


def _account_context(connector: str, subject: str, kind: str) -> str:
    return f"link:{connector}:{subject}:{kind}"


def _client_context(connector: str, issuer: str) -> str:
    return f"link-client:{connector}:{issuer}"


class LinkStore:
    def __init__(self, engine: Engine, vault: Vault, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.vault = vault
        self.clock = clock
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)

    # -- linked accounts ----------------------------------------------------------------------------------------

    def account(self, connector: str, subject: str) -> Account | None:
        """The account ``subject`` linked for ``connector``, tokens opened. Raises VaultError (wrong key)."""
        with self._read() as session:
            row = session.scalars(
                select(LinkAccount).where(LinkAccount.connector == connector, LinkAccount.subject == subject)
            ).first()
        if row is None:
            return None
        access = self.vault.open_text(row.access_token, context=_account_context(connector, subject, "access"))
        refresh = None
        if row.refresh_token is not None:
            context = _account_context(connector, subject, "refresh")
            refresh = self.vault.open_text(row.refresh_token, context=context)
        tokens = Tokens(access, refresh, row.expires_at, row.scopes, row.token_type)
        return Account(connector, subject, row.issuer, tokens, row.updated_at)

    def save_account(self, connector: str, subject: str, issuer: str, tokens: Tokens) -> None:
        """Store (or replace) ``subject``'s tokens for ``connector``, sealed."""
        now = self.clock()
        access = self.vault.seal_text(tokens.access_token, context=_account_context(connector, subject, "access"))
        refresh = None
        if tokens.refresh_token is not None:
            context = _account_context(connector, subject, "refresh")
            refresh = self.vault.seal_text(tokens.refresh_token, context=context)
        with self._write() as session, session.begin():
            row = session.scalars(
                select(LinkAccount).where(LinkAccount.connector == connector, LinkAccount.subject == subject)
            ).first()
            if row is None:
                row = LinkAccount(connector=connector, subject=subject, created_at=now)
                session.add(row)
            row.issuer = issuer
            row.access_token = access
            row.refresh_token = refresh
            row.token_type = tokens.token_type
            row.expires_at = tokens.expires_at
            row.scopes = tokens.scopes
            row.updated_at = now

    def accounts(self, subject: str | None = None, connector: str | None = None) -> list[AccountView]:
        query = select(LinkAccount).order_by(LinkAccount.subject, LinkAccount.connector)
        if subject is not None:
            query = query.where(LinkAccount.subject == subject)
        if connector is not None:
            query = query.where(LinkAccount.connector == connector)
        with self._read() as session:
            rows = session.scalars(query).all()
        return [
            AccountView(
                r.connector,
                r.subject,
                r.issuer,
                r.scopes,
                r.expires_at,
                r.refresh_token is not None,
                r.created_at,
                r.updated_at,
            )
            for r in rows
        ]

    def remove_accounts(self, subject: str, connector: str | None = None) -> list[str]:
        """Forget ``subject``'s links (to one connector or all); the connectors whose link was removed.

        Removing raises the store's revocation generation in the same transaction (``patchbay.auth.epoch``), so
        a serving process that keeps the opened tokens in memory stops using them on its next call. Not a trigger
        as for the auth tables: a trigger on one migration branch naming another branch's table breaks SQLite's
        table rebuilds whenever the branches migrate in another order, and this is the one path that removes.
        """
        query = select(LinkAccount).where(LinkAccount.subject == subject)
        if connector is not None:
            query = query.where(LinkAccount.connector == connector)
        with self._write() as session, session.begin():
            rows = session.scalars(query).all()
            for row in rows:
                session.delete(row)
            if rows:
                session.flush()
                session.execute(text(BUMP_GENERATION))
            return sorted(r.connector for r in rows)

    # -- client registrations -----------------------------------------------------------------------------------

    def registration(self, connector: str, issuer: str) -> Registration | None:
        with self._read() as session:
            row = session.scalars(
                select(LinkClient).where(LinkClient.connector == connector, LinkClient.issuer == issuer)
            ).first()
        if row is None:
            return None
        secret = None
        if row.client_secret is not None:
            secret = self.vault.open_text(row.client_secret, context=_client_context(connector, issuer))
        return Registration(row.client_id, secret, row.method)

    def save_registration(self, connector: str, issuer: str, registration: Registration) -> None:
        secret = None
        if registration.client_secret is not None:
            secret = self.vault.seal_text(registration.client_secret, context=_client_context(connector, issuer))
        with self._write() as session, session.begin():
            session.execute(delete(LinkClient).where(LinkClient.connector == connector, LinkClient.issuer == issuer))
            session.add(
                LinkClient(
                    connector=connector,
                    issuer=issuer,
                    client_id=registration.client_id,
                    client_secret=secret,
                    method=registration.method,
                    created_at=self.clock(),
                )
            )

    # -- pending authorizations ---------------------------------------------------------------------------------

    def add_pending(self, state: str, pending: Pending, ttl_seconds: float) -> None:
        digest = state_hash(state)
        now = self.clock()
        verifier = self.vault.seal_text(pending.verifier, context=f"link-state:{digest}")
        with self._write() as session, session.begin():
            session.execute(delete(LinkPending).where(LinkPending.expires_at <= now))
            session.add(
                LinkPending(
                    state_hash=digest,
                    connector=pending.connector,
                    subject=pending.subject,
                    issuer=pending.issuer,
                    verifier=verifier,
                    expires_at=now + ttl_seconds,
                )
            )

    def take_pending(self, state: str) -> Pending | None:
        """The authorization ``state`` names, removed so it is used once; None when unknown or expired."""
        digest = state_hash(state)
        with self._write() as session, session.begin():
            row = session.get(LinkPending, digest)
            if row is None:
                return None
            session.delete(row)
        if row.expires_at <= self.clock():
            return None
        verifier = self.vault.open_text(row.verifier, context=f"link-state:{digest}")
        return Pending(row.connector, row.subject, row.issuer, verifier)

    # -- key rotation ---------------------------------------------------------------------------------------------

    def reseal(self) -> int:
        """Seal every stored secret again under the vault's first key; the number of values re-sealed.

        Raises:
            VaultError: a value sealed under a key no longer configured (nothing is changed).
        """
        count = 0
        with self._write() as session, session.begin():
            for account in session.scalars(select(LinkAccount)).all():
                for kind in ("access", "refresh"):
                    attr = f"{kind}_token"
                    value = getattr(account, attr)
                    if value is not None and self.vault.needs_reseal(value):
                        context = _account_context(account.connector, account.subject, kind)
                        setattr(account, attr, self.vault.reseal(value, context=context))
                        count += 1
            for client in session.scalars(select(LinkClient)).all():
                if client.client_secret is not None and self.vault.needs_reseal(client.client_secret):
                    context = _client_context(client.connector, client.issuer)
                    client.client_secret = self.vault.reseal(client.client_secret, context=context)
                    count += 1
            for pending in session.scalars(select(LinkPending)).all():
                if self.vault.needs_reseal(pending.verifier):
                    context = f"link-state:{pending.state_hash}"
                    pending.verifier = self.vault.reseal(pending.verifier, context=context)
                    count += 1
        return count
