"""Local accounts: argon2id password hashes, lockout after repeated failures (see ``patchbay.auth.lockout``),
people from an upstream IdP, and the browser sessions of the sign-in pages."""

from __future__ import annotations

import functools
import hashlib
import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine, delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from patchbay.auth.crypto import digest, new_secret
from patchbay.store import writer
from patchbay.store.models import AuthBrowserSession, AuthUser

_hasher = PasswordHasher()
USERNAME_MAX = 200
# A browser that signed in to an account is exempt from that account's lock for this long (device cookie).
DEVICE_SECONDS = 90 * 86_400


@functools.cache
def dummy_hash() -> str:
    """Verified against when the username does not exist, so a wrong name costs as long as a wrong password.

    Made once per process, not at import (it costs a hash); ``AuthServer.start`` makes it before the sign-in page
    serves, so not even the first unknown name answers slower.
    """
    return _hasher.hash("patchbay-timing-equaliser")


@dataclass(frozen=True, slots=True)
class UserView:
    id: int
    username: str
    display_name: str
    email: str | None
    roles: frozenset[str]
    disabled: bool
    locked_until: float | None
    federated: bool
    created_at: float


LoginOutcome = Literal["ok", "invalid", "locked", "throttled", "disabled"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one sign-in attempt came to. Only ``ok`` and ``disabled`` (after a right password) may be told apart
    by the person signing in; the rest are for the log."""

    outcome: LoginOutcome
    user: UserView | None = None
    known: bool = False
    """The username names a local account (for the log only)."""
    locked_now: bool = False
    """This failure locked the account."""
    device: str | None = None
    """On success: the device cookie that exempts this browser from the account's lock."""


def user_view(row: AuthUser) -> UserView:
    """The account in ``row`` as callers see it (no password hash)."""
    return UserView(
        id=row.id,
        username=row.username,
        display_name=row.display_name,
        email=row.email,
        roles=frozenset(row.roles.split()),
        disabled=row.disabled,
        locked_until=row.locked_until,
        federated=row.subject is not None,
        created_at=row.created_at,
    )


class Users:
    def __init__(
        self, engine: Engine, clock: Callable[[], float] = time.time, max_attempts: int = 5, lockout: float = 900
    ) -> None:
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._write = sessionmaker(writer(engine), expire_on_commit=False)
        self.clock = clock
        self.max_attempts = max_attempts
        self.lockout = lockout

    def add(
        self,
        username: str,
        password: str,
        *,
        roles: Iterable[str] = (),
        email: str | None = None,
        display_name: str = "",
    ) -> UserView:
        """Raises ValueError when the name is taken or empty, or the password is shorter than 8 characters."""
        username = username.strip()
        if not username or len(username) > USERNAME_MAX:
            raise ValueError(f"a username is 1 to {USERNAME_MAX} characters")
        if len(password) < 8:
            raise ValueError("a password needs at least 8 characters")
        with self._write() as session, session.begin():
            if session.scalar(select(AuthUser.id).where(AuthUser.username == username)) is not None:
                raise ValueError(f"a user named {username!r} already exists")
            row = AuthUser(
                username=username,
                password_hash=_hasher.hash(password),
                display_name=display_name or username,
                email=email,
                roles=" ".join(sorted(set(roles))),
                disabled=False,
                failed_logins=0,
                created_at=self.clock(),
            )
            session.add(row)
            session.flush()
            return user_view(row)

    def list(self) -> list[UserView]:
        with self._read() as session:
            return [user_view(r) for r in session.scalars(select(AuthUser).order_by(AuthUser.username))]

    def get(self, user_id: int) -> UserView | None:
        with self._read() as session:
            row = session.get(AuthUser, user_id)
            return user_view(row) if row is not None else None

    def by_name(self, username: str) -> UserView | None:
        with self._read() as session:
            row = session.scalar(select(AuthUser).where(AuthUser.username == username))
            return user_view(row) if row is not None else None

    def set_disabled(self, username: str, disabled: bool) -> UserView | None:
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthUser).where(AuthUser.username == username))
            if row is None:
                return None
            row.disabled = disabled
            if disabled:
                session.execute(delete(AuthBrowserSession).where(AuthBrowserSession.user_id == row.id))
            return user_view(row)

    def set_roles(self, username: str, roles: Iterable[str]) -> UserView | None:
        """Replace a user's roles; None when there is no such user. The store's triggers raise the revocation
        generation, so tokens already issued carry the new roles on their next request (``patchbay.auth.epoch``).
        A federated user's roles are set again from the provider's claims at their next sign-in."""
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthUser).where(AuthUser.username == username))
            if row is None:
                return None
            row.roles = " ".join(sorted(set(roles)))
            return user_view(row)

    def verify(
        self, username: str, password: str, *, device: str | None = None, address_blocked: bool = False
    ) -> Attempt:
        """Check a password. Every attempt computes exactly one argon2 hash and makes one write, whether the
        account exists, is locked, or the address is throttled, so none of them answers faster. Attempts refused
        during a lock or a throttle are not counted; a valid ``device`` cookie for the account passes its lock."""
        now = self.clock()
        name = username.strip()[:USERNAME_MAX]
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthUser).where(AuthUser.username == name))
            local = row is not None and row.password_hash is not None
            right = _check(row.password_hash if row is not None and row.password_hash else dummy_hash(), password)
            if row is None or row.password_hash is None or address_blocked:
                _same_write(session, name)
                return Attempt("throttled" if address_blocked else "invalid", known=local)
            trusted = device is not None and _device_ok(row, device, now)
            if row.locked_until is not None and row.locked_until > now and not trusted:
                _same_write(session, name)
                return Attempt("locked", known=True)
            if not right:
                row.failed_logins += 1
                if row.failed_logins < self.max_attempts:
                    return Attempt("invalid", known=True)
                row.locked_until = now + self.lockout
                row.failed_logins = 0
                return Attempt("invalid", known=True, locked_now=True)
            if row.disabled:
                _same_write(session, name)
                return Attempt("disabled", known=True)
            row.failed_logins = 0
            row.locked_until = None
            if _hasher.check_needs_rehash(row.password_hash):
                row.password_hash = _hasher.hash(password)
            return Attempt("ok", user_view(row), known=True, device=_device_cookie(row.id, row.password_hash, now))

    def upsert_federated(
        self, subject: str, username: str, email: str | None, display_name: str, roles: Iterable[str]
    ) -> UserView:
        """The local record of someone who signed in upstream; roles follow the IdP's claims on every sign-in."""
        with self._write() as session, session.begin():
            row = session.scalar(select(AuthUser).where(AuthUser.subject == subject))
            if row is None:
                taken = session.scalar(select(AuthUser.id).where(AuthUser.username == username))
                row = AuthUser(
                    username=username if taken is None else subject[:USERNAME_MAX],
                    password_hash=None,
                    subject=subject,
                    disabled=False,
                    failed_logins=0,
                    created_at=self.clock(),
                )
                session.add(row)
            row.email = email
            row.display_name = display_name or username
            row.roles = " ".join(sorted(set(roles)))
            session.flush()
            return user_view(row)

    # -- browser sessions of the sign-in pages ---------------------------------------------------------------

    def open_browser_session(self, user_id: int, seconds: float) -> str:
        cookie = new_secret()
        with self._write() as session, session.begin():
            session.execute(delete(AuthBrowserSession).where(AuthBrowserSession.expires_at < self.clock()))
            session.add(AuthBrowserSession(id_hash=digest(cookie), user_id=user_id, expires_at=self.clock() + seconds))
        return cookie

    def browser_session_user(self, cookie: str | None) -> UserView | None:
        if not cookie:
            return None
        with self._read() as session:
            row = session.get(AuthBrowserSession, digest(cookie))
            if row is None or row.expires_at <= self.clock():
                return None
            user = session.get(AuthUser, row.user_id)
            return user_view(user) if user is not None and not user.disabled else None

    def close_browser_session(self, cookie: str | None) -> bool:
        """End the browser session ``cookie`` names (sign-out), so the cookie no longer signs anyone in even if a
        copy of it outlives the browser's; False when there was no such session."""
        if not cookie:
            return False
        with self._write() as session, session.begin():
            done = session.execute(delete(AuthBrowserSession).where(AuthBrowserSession.id_hash == digest(cookie)))
            return bool(done.rowcount)  # type: ignore[attr-defined]

    def unlock(self, username: str) -> bool:
        with self._write() as session, session.begin():
            done = session.execute(
                update(AuthUser)
                .where(AuthUser.username == username)
                .values(locked_until=None, failed_logins=0)
                .returning(AuthUser.id)
            )
            return done.first() is not None


def _same_write(session: Session, name: str) -> None:
    # The write a counted failure makes, matching no change: refusals cost what a counted failure costs.
    session.execute(update(AuthUser).where(AuthUser.username == name).values(failed_logins=AuthUser.failed_logins))


def _device_mac(user_id: int, password_hash: str, issued: int) -> str:
    # Keyed by the account's password hash: a secret only the server holds, and changing the password (or a
    # rehash) retires every device cookie of the account.
    message = f"patchbay-device\0{user_id}\0{issued}".encode()
    return hmac.new(password_hash.encode(), message, hashlib.sha256).hexdigest()[:40]


def _device_cookie(user_id: int, password_hash: str, now: float) -> str:
    issued = int(now)
    return f"{user_id}.{issued}.{_device_mac(user_id, password_hash, issued)}"


def _device_ok(row: AuthUser, cookie: str, now: float) -> bool:
    user_id, _, rest = cookie.partition(".")
    issued, _, mac = rest.partition(".")
    if not (user_id.isascii() and user_id.isdigit() and issued.isascii() and issued.isdigit()) or len(issued) > 12:
        return False
    if int(user_id) != row.id or not 0 <= now - int(issued) <= DEVICE_SECONDS or row.password_hash is None:
        return False
    return hmac.compare_digest(mac.encode(), _device_mac(row.id, row.password_hash, int(issued)).encode())


def _check(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
