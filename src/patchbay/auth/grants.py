"""Authorization requests waiting for sign-in, consent, codes and tokens (RFC 6749 §4.1, §6; OAuth 2.1 §4.3.1).

A *grant* is one authorization code and everything issued from it: the first token pair and every refreshed
pair after it share a ``grant_id``. Replaying a used code or a rotated refresh token revokes the whole grant
(OAuth 2.1 §4.1.3 and §4.3.1: the AS "SHOULD revoke" tokens issued from a replayed code; refresh-token
rotation "MUST" detect reuse for public clients).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from patchbay.auth.crypto import ACCESS_PREFIX, CODE_PREFIX, REFRESH_PREFIX, digest, new_secret, pkce_matches
from patchbay.auth.errors import OAuthError
from patchbay.store import writer
from patchbay.store.models import AuthClient, AuthCode, AuthConsent, AuthRequest, AuthToken, AuthUser


@dataclass(frozen=True, slots=True)
class Pending:
    """A validated authorization request (everything needed to issue a code once the person agrees)."""

    client_id: str
    redirect_uri: str
    state: str | None
    code_challenge: str
    scope: str
    resource: str
    csrf_hash: str = ""
    user_id: int | None = None


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    expires_in: int
    scope: str
    refresh_token: str | None = None

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


@dataclass(frozen=True, slots=True)
class AccessInfo:
    """What an access token was issued for (the resource server's view)."""

    client_id: str
    user_id: int
    username: str
    roles: frozenset[str]
    scope: str
    resource: str
    created_at: float
    expires_at: float
    kind: str = "access"
    client_name: str | None = None


@dataclass(frozen=True, slots=True)
class Lifetimes:
    access: int = 3600
    refresh: int = 30 * 86_400
    code: int = 120
    request: int = 600


def _pending(row: AuthRequest) -> Pending:
    return Pending(
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        state=row.state,
        code_challenge=row.code_challenge,
        scope=row.scope,
        resource=row.resource,
        csrf_hash=row.csrf_hash,
        user_id=row.user_id,
    )


class Grants:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time, lifetimes: Lifetimes | None = None):
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self.clock = clock
        self.life = lifetimes or Lifetimes()

    # -- pending authorization requests ------------------------------------------------------------------------

    def open_request(self, pending: Pending) -> str:
        handle = new_secret()
        now = self.clock()
        with self._write() as session, session.begin():
            session.execute(delete(AuthRequest).where(AuthRequest.expires_at < now))
            session.add(
                AuthRequest(
                    id_hash=digest(handle),
                    client_id=pending.client_id,
                    redirect_uri=pending.redirect_uri,
                    state=pending.state,
                    code_challenge=pending.code_challenge,
                    scope=pending.scope,
                    resource=pending.resource,
                    csrf_hash=pending.csrf_hash,
                    expires_at=now + self.life.request,
                )
            )
        return handle

    def request(self, handle: str) -> Pending | None:
        with self._read() as session:
            row = session.get(AuthRequest, digest(handle))
            return _pending(row) if row is not None and row.expires_at > self.clock() else None

    def sign_in(self, handle: str, user_id: int) -> None:
        with self._write() as session, session.begin():
            session.execute(update(AuthRequest).where(AuthRequest.id_hash == digest(handle)).values(user_id=user_id))

    def close_request(self, handle: str) -> None:
        with self._write() as session, session.begin():
            session.execute(delete(AuthRequest).where(AuthRequest.id_hash == digest(handle)))

    def start_upstream(self, handle: str, state: str, verifier: str, nonce: str) -> None:
        with self._write() as session, session.begin():
            session.execute(
                update(AuthRequest)
                .where(AuthRequest.id_hash == digest(handle))
                .values(upstream_state=digest(state), upstream_verifier=verifier, upstream_nonce=nonce)
            )

    def upstream_request(self, state: str) -> tuple[str, Pending, str, str] | None:
        """(id_hash, request, verifier, nonce) for the upstream ``state``; the state is single-use."""
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthRequest).where(AuthRequest.upstream_state == digest(state)))
            if row is None or row.expires_at <= self.clock() or not row.upstream_verifier or not row.upstream_nonce:
                return None
            verifier, nonce = row.upstream_verifier, row.upstream_nonce
            row.upstream_state = row.upstream_verifier = row.upstream_nonce = None
            return row.id_hash, _pending(row), verifier, nonce

    def sign_in_by_hash(self, id_hash: str, user_id: int) -> None:
        with self._write() as session, session.begin():
            session.execute(update(AuthRequest).where(AuthRequest.id_hash == id_hash).values(user_id=user_id))

    # -- consent --------------------------------------------------------------------------------------------

    def consented(self, user_id: int, client_id: str, scope: str) -> bool:
        with self._read() as session:
            row = session.scalar(
                select(AuthConsent).where(AuthConsent.user_id == user_id, AuthConsent.client_id == client_id)
            )
            return row is not None and set(scope.split()) <= set(row.scope.split())

    def remember_consent(self, user_id: int, client_id: str, scope: str) -> None:
        with self._write() as session, session.begin():
            row = session.scalar(
                select(AuthConsent).where(AuthConsent.user_id == user_id, AuthConsent.client_id == client_id)
            )
            if row is None:
                session.add(AuthConsent(user_id=user_id, client_id=client_id, scope=scope, created_at=self.clock()))
            else:
                row.scope = " ".join(sorted(set(row.scope.split()) | set(scope.split())))

    def forget_consent(self, user_id: int, client_id: str | None = None) -> int:
        with self._write() as session, session.begin():
            query = delete(AuthConsent).where(AuthConsent.user_id == user_id)
            if client_id is not None:
                query = query.where(AuthConsent.client_id == client_id)
            return len(session.execute(query.returning(AuthConsent.id)).all())

    # -- codes ------------------------------------------------------------------------------------------------

    def issue_code(self, pending: Pending, user_id: int) -> str:
        code = new_secret(CODE_PREFIX)
        with self._write() as session, session.begin():
            session.add(
                AuthCode(
                    code_hash=digest(code),
                    grant_id=new_secret()[:32],
                    client_id=pending.client_id,
                    user_id=user_id,
                    redirect_uri=pending.redirect_uri,
                    code_challenge=pending.code_challenge,
                    scope=pending.scope,
                    resource=pending.resource,
                    expires_at=self.clock() + self.life.code,
                )
            )
        return code

    def redeem_code(
        self, code: str, client_id: str, redirect_uri: str | None, verifier: str, resource: str | None, refresh: bool
    ) -> TokenSet:
        """Exchange a code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.6, RFC 8707 §2.2).

        Raises:
            OAuthError: invalid_grant (unknown, used, expired, other client, redirect or PKCE mismatch),
                invalid_target (a resource other than the one authorized).
        """
        now = self.clock()
        with self._write() as session, session.begin():
            row = session.get(AuthCode, digest(code))
            if row is None or row.client_id != client_id:
                raise OAuthError("invalid_grant", "the authorization code is invalid or was issued to another client")
            replayed = row.grant_id if row.used_at is not None else None
            if replayed is None:
                self._check_code(row, now, redirect_uri, verifier, resource)
                row.used_at = now
                # A refresh token for clients registered for the refresh_token grant, or asking offline_access.
                refresh = refresh or "offline_access" in row.scope.split()
                return self._issue(session, row.grant_id, client_id, row.user_id, row.scope, row.resource, refresh)
        # Outside the transaction above: the revocation must commit even though the request fails.
        self.revoke_grant(replayed)
        raise OAuthError("invalid_grant", "the authorization code was already used; its tokens are revoked")

    @staticmethod
    def _check_code(row: AuthCode, now: float, redirect_uri: str | None, verifier: str, resource: str | None) -> None:
        if row.expires_at <= now:
            raise OAuthError("invalid_grant", "the authorization code has expired")
        if redirect_uri is not None and redirect_uri != row.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the one in the authorization request")
        if not pkce_matches(verifier, row.code_challenge):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge (PKCE S256)")
        if resource is not None and resource != row.resource:
            raise OAuthError("invalid_target", "resource differs from the one in the authorization request")

    # -- tokens -----------------------------------------------------------------------------------------------

    def _issue(
        self, session: Session, grant_id: str, client_id: str, user_id: int, scope: str, resource: str, refresh: bool
    ) -> TokenSet:
        now = self.clock()
        access = new_secret(ACCESS_PREFIX)
        common = {"grant_id": grant_id, "client_id": client_id, "user_id": user_id, "scope": scope}
        session.add(
            AuthToken(
                token_hash=digest(access),
                kind="access",
                resource=resource,
                created_at=now,
                expires_at=now + self.life.access,
                **common,
            )
        )
        refresh_token = None
        if refresh:
            refresh_token = new_secret(REFRESH_PREFIX)
            session.add(
                AuthToken(
                    token_hash=digest(refresh_token),
                    kind="refresh",
                    resource=resource,
                    created_at=now,
                    expires_at=now + self.life.refresh,
                    **common,
                )
            )
        return TokenSet(access, self.life.access, scope, refresh_token)

    def refresh(self, token: str, client_id: str, scope: str | None, resource: str | None) -> TokenSet:
        """Rotate a refresh token (OAuth 2.1 §4.3). A missing ``scope`` keeps the granted scopes.

        Raises:
            OAuthError: invalid_grant (unknown, expired, revoked, reused, other client), invalid_scope (more
                than was granted), invalid_target (another resource).
        """
        now = self.clock()
        with self._write() as session, session.begin():
            row = session.get(AuthToken, digest(token))
            if row is None or row.kind != "refresh" or row.client_id != client_id:
                raise OAuthError("invalid_grant", "the refresh token is invalid or was issued to another client")
            if row.revoked_at is not None or row.expires_at <= now:
                raise OAuthError("invalid_grant", "the refresh token has expired or was revoked")
            if row.used_at is not None:
                replayed = row.grant_id
            else:
                return self._rotate(session, row, client_id, scope, resource)
        self.revoke_grant(replayed)
        raise OAuthError("invalid_grant", "the refresh token was already used; the grant is revoked")

    def _rotate(
        self, session: Session, row: AuthToken, client_id: str, scope: str | None, resource: str | None
    ) -> TokenSet:
        if not self._user_active(session, row.user_id):
            raise OAuthError("invalid_grant", "the account behind this grant is disabled")
        granted = row.scope.split()
        wanted = granted if scope is None else scope.split()
        if not set(wanted) <= set(granted):
            raise OAuthError("invalid_scope", "a refresh cannot add scopes that were not granted")
        if resource is not None and resource != row.resource:
            raise OAuthError("invalid_target", "resource differs from the one this grant was issued for")
        row.used_at = self.clock()
        return self._issue(session, row.grant_id, client_id, row.user_id, " ".join(wanted), row.resource, True)

    def access(self, token: str) -> AccessInfo | None:
        """The live access token's facts, or None (unknown, expired, revoked, disabled user)."""
        now = self.clock()
        with self._read() as session:
            row = session.get(AuthToken, digest(token))
            if row is None or row.kind != "access" or row.revoked_at is not None or row.expires_at <= now:
                return None
            user = session.get(AuthUser, row.user_id)
            if user is None or user.disabled:
                return None
            # The client's registered name, for policy rules that name clients (cached with the token).
            client = session.get(AuthClient, row.client_id)
            return AccessInfo(
                client_id=row.client_id,
                user_id=row.user_id,
                username=user.username,
                roles=frozenset(user.roles.split()),
                scope=row.scope,
                resource=row.resource,
                created_at=row.created_at,
                expires_at=row.expires_at,
                client_name=client.name if client is not None else None,
            )

    def describe(self, token: str) -> tuple[AccessInfo, bool] | None:
        """Any live token (access or refresh) for introspection: its facts and whether it is active."""
        with self._read() as session:
            row = session.get(AuthToken, digest(token))
            if row is None:
                return None
            user = session.get(AuthUser, row.user_id)
            active = (
                row.revoked_at is None
                and row.expires_at > self.clock()
                and (row.kind == "access" or row.used_at is None)
                and user is not None
                and not user.disabled
            )
            info = AccessInfo(
                client_id=row.client_id,
                user_id=row.user_id,
                username=user.username if user else "",
                roles=frozenset(user.roles.split()) if user else frozenset(),
                scope=row.scope,
                resource=row.resource,
                created_at=row.created_at,
                expires_at=row.expires_at,
                kind=row.kind,
            )
            return info, active

    def revoke(self, token: str, client_id: str) -> bool:
        """RFC 7009 §2.1: revoking a refresh token also revokes the access tokens of its grant."""
        with self._write() as session, session.begin():
            row = session.get(AuthToken, digest(token))
            if row is None or row.client_id != client_id:
                return False
            if row.kind == "refresh":
                self._revoke_grant(session, row.grant_id)
            elif row.revoked_at is None:
                row.revoked_at = self.clock()
            return True

    def revoke_user(self, user_id: int) -> int:
        return self._revoke_where(AuthToken.user_id == user_id)

    def revoke_client(self, client_id: str) -> int:
        return self._revoke_where(AuthToken.client_id == client_id)

    def _revoke_where(self, condition: object) -> int:
        with self._write() as session, session.begin():
            done = session.execute(
                update(AuthToken)
                .where(condition, AuthToken.revoked_at.is_(None))  # type: ignore[arg-type]
                .values(revoked_at=self.clock())
                .returning(AuthToken.token_hash)
            )
            return len(done.all())

    def revoke_grant(self, grant_id: str) -> None:
        with self._write() as session, session.begin():
            self._revoke_grant(session, grant_id)

    def _revoke_grant(self, session: Session, grant_id: str) -> None:
        session.execute(
            update(AuthToken)
            .where(AuthToken.grant_id == grant_id, AuthToken.revoked_at.is_(None))
            .values(revoked_at=self.clock())
        )

    @staticmethod
    def _user_active(session: Session, user_id: int) -> bool:
        user = session.get(AuthUser, user_id)
        return user is not None and not user.disabled

    def grants_of(self, user_ids: Iterable[int]) -> int:
        with self._read() as session:
            rows = session.scalars(
                select(AuthToken.grant_id).where(AuthToken.user_id.in_(list(user_ids)), AuthToken.revoked_at.is_(None))
            )
            return len(set(rows))
