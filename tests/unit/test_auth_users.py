"""The local account store (``patchbay.auth.users.Users``) on a real SQLite store, without an app: what an account
holds, each outcome of a sign-in (lockout to the second, the device cookie that passes a lock, the address
throttle), the people an upstream IdP signs in, and the browser sessions of the sign-in pages."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fixtures.hashing import CHEAP, cheap_hashes  # noqa: F401 (an autouse fixture)
from sqlalchemy import Engine, event, select, update
from tests.support.clock import Clock

from patchbay.auth.users import DEVICE_SECONDS, Attempt, Users, UserView
from patchbay.store import create_engine, upgrade, writer
from patchbay.store.models import AuthBrowserSession, AuthUser

NOW = 1_800_000_000.0
PASSWORD = "correct horse battery"
WRONG = "not the password 1"
# A rehash is tested against argon2 parameters that differ from the tests' cheap ones (fixtures.hashing).
OLDER = PasswordHasher(time_cost=2, memory_cost=8, parallelism=1)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    upgrade(made)
    yield made
    made.dispose()


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


@pytest.fixture
def users(engine: Engine, clock: Clock) -> Users:
    return Users(engine, clock)  # the defaults: 5 wrong passwords in a row lock the account for 900 s


@pytest.fixture
def alice(users: Users) -> UserView:
    return users.add("alice", PASSWORD, roles=("sales", "ops"))


def stored(engine: Engine, username: str) -> Any:
    with engine.connect() as connection:
        return connection.execute(select(AuthUser).where(AuthUser.username == username)).one()


def set_hash(engine: Engine, username: str, password_hash: str | None) -> None:
    with engine.begin() as connection:
        connection.execute(update(AuthUser).where(AuthUser.username == username).values(password_hash=password_hash))


def sessions(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(connection.execute(select(AuthBrowserSession).order_by(AuthBrowserSession.expires_at)).all())


def device_cookie(user_id: int, password_hash: str, issued: int, shown: str | None = None, uid: str = "") -> str:
    """A ``patchbay_device`` cookie as the store issues it: ``<user id>.<issued, unix seconds>.<mac>``, the mac the
    first 40 hex digits of HMAC-SHA256 keyed by the account's password hash. Browsers keep it for 90 days, so its
    form outlives an upgrade. ``shown``/``uid`` write the issued time / user id differently, same value."""
    message = f"patchbay-device\0{user_id}\0{issued}".encode()
    mac = hmac.new(password_hash.encode(), message, hashlib.sha256).hexdigest()[:40]
    return f"{uid or user_id}.{shown if shown is not None else issued}.{mac}"


def fail(users: Users, times: int, username: str = "alice") -> list[Attempt]:
    return [users.verify(username, WRONG) for _ in range(times)]


# -- accounts -----------------------------------------------------------------------------------------------------


def test_a_new_account_is_stored_with_a_hash_sorted_unique_roles_and_the_time_it_was_made(
    users: Users, engine: Engine
) -> None:
    view = users.add("  alice ", PASSWORD, roles=["sales", "ops", "sales"], email="alice@example.com")
    assert view == UserView(
        id=view.id,
        username="alice",
        display_name="alice",
        email="alice@example.com",
        roles=frozenset({"ops", "sales"}),
        disabled=False,
        locked_until=None,
        federated=False,
        created_at=NOW,
    )
    row = stored(engine, "alice")
    assert row.roles == "ops sales" and row.failed_logins == 0 and row.subject is None
    assert row.password_hash != PASSWORD and CHEAP.verify(row.password_hash, PASSWORD)
    assert users.get(view.id) == view and users.by_name("alice") == view


def test_a_display_name_given_is_kept_and_no_roles_is_an_empty_set(users: Users) -> None:
    view = users.add("bob", PASSWORD, display_name="Bob Builder")
    assert (view.display_name, view.roles, view.email) == ("Bob Builder", frozenset(), None)
    assert users.by_name("bob") == view


@pytest.mark.parametrize("username", ["", "   ", "n" * 201, " " + "n" * 201])
def test_a_username_is_1_to_200_characters_after_trimming(users: Users, username: str) -> None:
    with pytest.raises(ValueError) as refused:
        users.add(username, PASSWORD)
    assert str(refused.value) == "a username is 1 to 200 characters"
    assert users.list() == []


def test_the_shortest_and_longest_usernames_and_passwords_are_accepted(users: Users) -> None:
    assert users.add("n" * 200, "p" * 8).username == "n" * 200
    assert users.add(" a ", "p" * 8).username == "a"
    assert users.verify("n" * 200, "p" * 8).outcome == "ok"


def test_a_password_needs_at_least_8_characters(users: Users) -> None:
    with pytest.raises(ValueError) as refused:
        users.add("alice", "p" * 7)
    assert str(refused.value) == "a password needs at least 8 characters"
    assert users.list() == []


def test_a_taken_username_is_refused_and_the_first_account_is_kept(users: Users, alice: UserView) -> None:
    assert users.add("bob", PASSWORD).username == "bob"  # another name is free
    with pytest.raises(ValueError) as refused:
        users.add(" alice", "another password")
    assert str(refused.value) == "a user named 'alice' already exists"
    assert users.list() == [alice, users.by_name("bob")]
    assert users.verify("alice", PASSWORD).outcome == "ok"


def test_accounts_are_listed_by_username_and_unknown_ones_are_none(users: Users, clock: Clock) -> None:
    for name in ("carol", "alice", "bob"):
        clock.now += 1
        users.add(name, PASSWORD)
    listed = users.list()
    assert [u.username for u in listed] == ["alice", "bob", "carol"]
    assert [u.created_at for u in listed] == [NOW + 2, NOW + 3, NOW + 1]
    assert users.get(max(u.id for u in listed) + 1) is None
    assert users.by_name("dave") is None
    assert users.by_name("alice ") is None  # looked up as given
    assert users.get(listed[1].id) == listed[1]


def test_roles_are_replaced_sorted_and_deduplicated(users: Users, alice: UserView, engine: Engine) -> None:
    bob = users.add("bob", PASSWORD, roles=["viewer"])
    changed = users.set_roles("alice", ["admin", "approver", "admin"])
    assert changed is not None and changed.roles == frozenset({"admin", "approver"})
    assert changed == UserView(**{**_fields(alice), "roles": frozenset({"admin", "approver"})})
    assert stored(engine, "alice").roles == "admin approver"
    assert users.by_name("alice") == changed and users.by_name("bob") == bob
    assert users.set_roles("nobody", ["admin"]) is None
    assert users.set_roles("alice", []) == UserView(**{**_fields(alice), "roles": frozenset()})


def _fields(view: UserView) -> dict[str, Any]:
    return {name: getattr(view, name) for name in UserView.__slots__}


def test_disabling_ends_only_that_users_browser_sessions_and_enabling_ends_none(users: Users, alice: UserView) -> None:
    bob = users.add("bob", PASSWORD)
    alices, bobs = users.open_browser_session(alice.id, 3600), users.open_browser_session(bob.id, 3600)
    enabled = users.set_disabled("alice", False)
    assert enabled == alice
    assert users.browser_session_user(alices) == alice
    disabled = users.set_disabled("alice", True)
    assert disabled == UserView(**{**_fields(alice), "disabled": True})
    assert users.by_name("alice") == disabled
    assert users.browser_session_user(bobs) == bob
    users.set_disabled("alice", False)
    assert users.browser_session_user(alices) is None  # ended, not just hidden while disabled
    assert users.set_disabled("nobody", True) is None


# -- signing in ---------------------------------------------------------------------------------------------------


def test_the_right_password_signs_in_with_a_device_cookie(users: Users, alice: UserView, engine: Engine) -> None:
    clock_now = int(NOW)
    attempt = users.verify(" alice ", PASSWORD)
    device = device_cookie(alice.id, stored(engine, "alice").password_hash, clock_now)
    assert attempt == Attempt("ok", alice, known=True, locked_now=False, device=device)


def test_each_refusal_before_the_password_counts(users: Users, alice: UserView, engine: Engine) -> None:
    users.upsert_federated("https://idp.example sub-1", "fred", None, "", [])
    assert users.verify("nobody", PASSWORD) == Attempt("invalid", None, known=False)
    assert users.verify("fred", PASSWORD) == Attempt("invalid", None, known=False)  # no password to sign in with
    assert users.verify("fred", "") == Attempt("invalid", None, known=False)
    assert users.verify("alice", PASSWORD, address_blocked=True) == Attempt("throttled", None, known=True)
    assert users.verify("nobody", PASSWORD, address_blocked=True) == Attempt("throttled", None, known=False)
    assert users.verify("alice", WRONG) == Attempt("invalid", None, known=True)
    assert users.verify("alice", "") == Attempt("invalid", None, known=True)
    assert stored(engine, "alice").failed_logins == 2


def test_a_stored_value_that_is_no_hash_signs_nobody_in(users: Users, alice: UserView, engine: Engine) -> None:
    set_hash(engine, "alice", "!disabled-by-hand")
    assert users.verify("alice", PASSWORD) == Attempt("invalid", None, known=True)
    assert users.verify("alice", "!disabled-by-hand") == Attempt("invalid", None, known=True)


def test_the_fifth_wrong_password_in_a_row_locks_the_account_for_900_seconds(
    users: Users, alice: UserView, clock: Clock
) -> None:
    assert fail(users, 4) == [Attempt("invalid", known=True)] * 4
    assert users.by_name("alice") == alice
    assert fail(users, 1) == [Attempt("invalid", known=True, locked_now=True)]
    assert users.by_name("alice") == UserView(**{**_fields(alice), "locked_until": NOW + 900})
    clock.now = NOW + 899.999
    assert users.verify("alice", PASSWORD) == Attempt("locked", known=True)
    assert users.verify("alice", WRONG) == Attempt("locked", known=True)
    clock.now = NOW + 900
    assert users.verify("alice", PASSWORD).outcome == "ok"
    assert users.by_name("alice") == alice


def test_the_limit_and_the_lock_length_are_the_stores_settings(engine: Engine, clock: Clock) -> None:
    users = Users(engine, clock, max_attempts=2, lockout=60)
    alice = users.add("alice", PASSWORD)
    assert fail(users, 2) == [Attempt("invalid", known=True), Attempt("invalid", known=True, locked_now=True)]
    assert users.by_name("alice") == UserView(**{**_fields(alice), "locked_until": NOW + 60})
    clock.now = NOW + 60
    assert users.verify("alice", PASSWORD).outcome == "ok"


def test_attempts_during_a_lock_are_not_counted_and_the_count_starts_again_after(
    users: Users, alice: UserView, clock: Clock, engine: Engine
) -> None:
    fail(users, 5)
    clock.now = NOW + 100
    assert fail(users, 10) == [Attempt("locked", known=True)] * 10
    assert stored(engine, "alice").failed_logins == 0
    assert users.by_name("alice").locked_until == NOW + 900  # type: ignore[union-attr]  # never extended
    clock.now = NOW + 900
    assert fail(users, 4) == [Attempt("invalid", known=True)] * 4
    assert users.by_name("alice").locked_until == NOW + 900  # type: ignore[union-attr]
    assert fail(users, 1) == [Attempt("invalid", known=True, locked_now=True)]
    assert users.by_name("alice").locked_until == NOW + 1800  # type: ignore[union-attr]


def test_throttled_attempts_are_not_counted(users: Users, alice: UserView, engine: Engine) -> None:
    fail(users, 4)
    for password in (WRONG, PASSWORD):
        assert users.verify("alice", password, address_blocked=True) == Attempt("throttled", known=True)
    assert stored(engine, "alice").failed_logins == 4
    assert users.by_name("alice") == alice
    assert fail(users, 1) == [Attempt("invalid", known=True, locked_now=True)]


def test_a_right_password_starts_the_count_again(users: Users, alice: UserView, engine: Engine) -> None:
    fail(users, 4)
    assert users.verify("alice", PASSWORD).outcome == "ok"
    assert stored(engine, "alice").failed_logins == 0
    assert fail(users, 4) == [Attempt("invalid", known=True)] * 4
    assert users.by_name("alice") == alice


def test_a_disabled_account_says_so_only_after_the_right_password(
    users: Users, alice: UserView, engine: Engine
) -> None:
    users.set_disabled("alice", True)
    assert users.verify("alice", PASSWORD) == Attempt("disabled", None, known=True)
    assert fail(users, 4) == [Attempt("invalid", known=True)] * 4
    assert users.verify("alice", PASSWORD) == Attempt("disabled", None, known=True)
    assert stored(engine, "alice").failed_logins == 4  # a refusal of a disabled account resets nothing
    assert fail(users, 1) == [Attempt("invalid", known=True, locked_now=True)]
    assert users.verify("alice", PASSWORD) == Attempt("locked", known=True)


class UserWrites:
    """The UPDATEs of ``auth_users`` the store runs, each with the number of rows it matched."""

    def __init__(self, engine: Engine) -> None:
        self.target = writer(engine)
        self.seen: list[int] = []
        event.listen(self.target, "after_cursor_execute", self._record)

    def _record(self, *args: Any) -> None:
        cursor, statement = args[1], args[2]
        if statement.lstrip().upper().startswith("UPDATE AUTH_USERS"):
            self.seen.append(cursor.rowcount)

    def during(self) -> list[int]:
        seen, self.seen = self.seen, []
        return seen

    def close(self) -> None:
        event.remove(self.target, "after_cursor_execute", self._record)


def test_every_refusal_writes_the_accounts_row_as_a_counted_failure_does(
    users: Users, alice: UserView, engine: Engine
) -> None:
    writes = UserWrites(engine)
    try:
        assert users.verify("alice", WRONG).outcome == "invalid"
        assert writes.during() == [1]
        assert users.verify("alice", PASSWORD, address_blocked=True).outcome == "throttled"
        assert writes.during() == [1]
        assert users.verify("nobody", PASSWORD).outcome == "invalid"
        assert writes.during() == [0]
        fail(users, 4)
        writes.during()
        assert users.verify("alice", PASSWORD).outcome == "locked"
        assert writes.during() == [1]
        users.unlock("alice")
        users.set_disabled("alice", True)
        writes.during()
        assert users.verify("alice", PASSWORD).outcome == "disabled"
        assert writes.during() == [1]
    finally:
        writes.close()
    assert stored(engine, "alice").failed_logins == 0


def test_a_password_hashed_with_other_parameters_is_rehashed_on_sign_in(
    users: Users, alice: UserView, engine: Engine
) -> None:
    current = stored(engine, "alice").password_hash
    assert users.verify("alice", PASSWORD).outcome == "ok"
    assert stored(engine, "alice").password_hash == current  # up to date: kept
    old = OLDER.hash(PASSWORD)
    set_hash(engine, "alice", old)
    old_device = device_cookie(alice.id, old, int(NOW))
    attempt = users.verify("alice", PASSWORD)
    rehashed = stored(engine, "alice").password_hash
    assert rehashed != old and not CHEAP.check_needs_rehash(rehashed) and CHEAP.verify(rehashed, PASSWORD)
    assert attempt.device == device_cookie(alice.id, rehashed, int(NOW))  # bound to the new hash
    fail(users, 5)
    assert users.verify("alice", PASSWORD, device=old_device).outcome == "locked"  # the rehash retired it
    assert users.verify("alice", PASSWORD, device=attempt.device).outcome == "ok"


# -- the device cookie --------------------------------------------------------------------------------------------


def test_the_device_cookie_passes_its_own_accounts_lock_only(users: Users, alice: UserView, engine: Engine) -> None:
    bob = users.add("bob", PASSWORD)
    mine = users.verify("alice", PASSWORD).device
    bobs = users.verify("bob", PASSWORD).device
    assert mine is not None and bobs is not None
    fail(users, 5)
    assert users.verify("alice", PASSWORD) == Attempt("locked", known=True)
    assert users.verify("alice", PASSWORD, device=bobs) == Attempt("locked", known=True)
    forged = device_cookie(alice.id, stored(engine, "bob").password_hash, int(NOW))  # bob's key, alice's id
    assert users.verify("alice", PASSWORD, device=forged) == Attempt("locked", known=True)
    passed = users.verify("alice", PASSWORD, device=mine)
    assert passed.outcome == "ok" and passed.user == alice and passed.device == mine
    assert users.by_name("alice") == alice  # the success lifted the lock
    fail(users, 5, "bob")
    assert users.verify("bob", PASSWORD, device=mine) == Attempt("locked", known=True)
    assert users.verify("bob", PASSWORD, device=bobs).user == bob


def test_the_device_cookie_does_not_make_a_wrong_password_right(users: Users, alice: UserView) -> None:
    mine = users.verify("alice", PASSWORD).device
    fail(users, 5)
    assert users.verify("alice", WRONG, device=mine) == Attempt("invalid", known=True)


def test_the_device_cookie_lasts_90_days_to_the_second(users: Users, alice: UserView, clock: Clock) -> None:
    assert DEVICE_SECONDS == 90 * 86_400
    mine = users.verify("alice", PASSWORD).device
    clock.now = NOW + DEVICE_SECONDS
    fail(users, 5)
    assert users.verify("alice", PASSWORD, device=mine).outcome == "ok"
    clock.now = NOW + DEVICE_SECONDS + 1
    fail(users, 5)
    assert users.verify("alice", PASSWORD, device=mine) == Attempt("locked", known=True)


def test_a_password_changed_by_hand_retires_the_device_cookie(users: Users, alice: UserView, engine: Engine) -> None:
    mine = users.verify("alice", PASSWORD).device
    set_hash(engine, "alice", CHEAP.hash(PASSWORD))  # the same password, hashed again: a new key
    fail(users, 5)
    assert users.verify("alice", PASSWORD, device=mine) == Attempt("locked", known=True)


ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
ISSUED = int(NOW)


@pytest.mark.parametrize(
    ("case", "passes"),
    [
        ("as issued", True),
        ("issued this second", True),
        ("issued as 12 digits", True),
        ("issued as 13 digits", False),
        ("issued a second in the future", False),
        ("issued in arabic-indic digits", False),
        ("user id in arabic-indic digits", False),
        ("user id not a number", False),
        ("issued not a number", False),
        ("no mac", False),
        ("mac cut short", False),
        ("not a cookie", False),
        ("", False),
    ],
)
def test_only_a_well_formed_device_cookie_passes_the_lock(
    users: Users, alice: UserView, engine: Engine, clock: Clock, case: str, passes: bool
) -> None:
    clock.now = NOW + 30
    users.verify("alice", PASSWORD)
    assert alice.id < 10
    key = stored(engine, "alice").password_hash
    good = device_cookie(alice.id, key, ISSUED)
    cookie = {
        "as issued": good,
        "issued this second": device_cookie(alice.id, key, ISSUED + 30),
        "issued as 12 digits": device_cookie(alice.id, key, ISSUED, shown=f"{ISSUED:012d}"),
        "issued as 13 digits": device_cookie(alice.id, key, ISSUED, shown=f"{ISSUED:013d}"),
        "issued a second in the future": device_cookie(alice.id, key, ISSUED + 31),
        "issued in arabic-indic digits": device_cookie(alice.id, key, ISSUED, shown=str(ISSUED).translate(ARABIC)),
        "user id in arabic-indic digits": device_cookie(alice.id, key, ISSUED, uid=str(alice.id).translate(ARABIC)),
        "user id not a number": device_cookie(alice.id, key, ISSUED, uid="x"),
        "issued not a number": device_cookie(alice.id, key, ISSUED, shown="1.8e9"),
        "no mac": good.rpartition(".")[0],
        "mac cut short": good[:-1],
        "not a cookie": "alice",
        "": "",
    }[case]
    fail(users, 5)
    expected = "ok" if passes else "locked"
    assert users.verify("alice", PASSWORD, device=cookie).outcome == expected


# -- unlock -------------------------------------------------------------------------------------------------------


def test_unlock_lifts_the_lock_and_the_count_and_says_whether_the_user_exists(
    users: Users, alice: UserView, engine: Engine
) -> None:
    bob = users.add("bob", PASSWORD)
    fail(users, 5)
    fail(users, 4, "bob")
    assert users.unlock("alice") is True
    assert users.by_name("alice") == alice
    assert users.verify("alice", PASSWORD).outcome == "ok"
    assert stored(engine, "bob").failed_logins == 4  # only the one named
    fail(users, 4)
    assert users.unlock("alice") is True
    assert fail(users, 4) == [Attempt("invalid", known=True)] * 4
    assert users.unlock("nobody") is False
    assert users.by_name("bob") == bob


# -- federated people ---------------------------------------------------------------------------------------------

SUBJECT = "https://idp.example/oidc 248289761001"


def test_someone_signed_in_upstream_gets_a_federated_account_without_a_password(users: Users, engine: Engine) -> None:
    view = users.upsert_federated(SUBJECT, "jane@example.com", "jane@example.com", "Jane Doe", ["b", "a", "b"])
    assert view == UserView(
        id=view.id,
        username="jane@example.com",
        display_name="Jane Doe",
        email="jane@example.com",
        roles=frozenset({"a", "b"}),
        disabled=False,
        locked_until=None,
        federated=True,
        created_at=NOW,
    )
    row = stored(engine, "jane@example.com")
    assert (row.subject, row.password_hash, row.roles, row.failed_logins) == (SUBJECT, None, "a b", 0)
    assert users.by_name("jane@example.com") == view


def test_each_sign_in_upstream_updates_the_same_account(users: Users, clock: Clock, engine: Engine) -> None:
    first = users.upsert_federated(SUBJECT, "jane", "jane@example.com", "Jane", ["sales", "ops"])
    users.add("john", PASSWORD)
    clock.now = NOW + 60
    again = users.upsert_federated(SUBJECT, "jane.doe", None, "", ["admin"])
    assert again == UserView(
        id=first.id,
        username="jane",  # the account keeps its name
        display_name="jane.doe",  # no display name: the username the provider sent
        email=None,
        roles=frozenset({"admin"}),
        disabled=False,
        locked_until=None,
        federated=True,
        created_at=NOW,
    )
    assert len(users.list()) == 2 and stored(engine, "jane").roles == "admin"
    other = users.upsert_federated(SUBJECT + "2", "jim", None, "", [])
    assert other.id != first.id and other.display_name == "jim" and users.by_name("jane") == again


def test_a_disabled_federated_account_stays_disabled_on_sign_in(users: Users) -> None:
    users.upsert_federated(SUBJECT, "jane", None, "Jane", [])
    users.set_disabled("jane", True)
    assert users.upsert_federated(SUBJECT, "jane", None, "Jane", []).disabled is True


def test_a_taken_username_falls_back_to_the_subject_cut_at_200_characters(users: Users) -> None:
    alice = users.add("alice", PASSWORD)
    long_subject = "https://idp.example/oidc " + "s" * 300
    view = users.upsert_federated(long_subject, "alice", "a@example.com", "", ["sales"])
    assert view.username == long_subject[:200] and len(view.username) == 200
    assert view.display_name == "alice" and view.federated and view.id != alice.id
    assert users.by_name("alice") == alice
    assert users.upsert_federated(SUBJECT, "alice", None, "", []).username == SUBJECT


# -- browser sessions ---------------------------------------------------------------------------------------------


def test_a_browser_session_signs_its_user_in_until_it_expires_to_the_second(
    users: Users, alice: UserView, clock: Clock, engine: Engine
) -> None:
    bob = users.add("bob", PASSWORD)
    cookie = users.open_browser_session(alice.id, 3600)
    other = users.open_browser_session(bob.id, 3600)
    assert cookie != other and len(cookie) == 43
    assert [(s.user_id, s.expires_at) for s in sessions(engine)] == [(alice.id, NOW + 3600), (bob.id, NOW + 3600)]
    assert cookie not in {s.id_hash for s in sessions(engine)}  # stored as its digest
    assert users.browser_session_user(cookie) == alice
    assert users.browser_session_user(other) == bob
    clock.now = NOW + 3599.999
    assert users.browser_session_user(cookie) == alice
    clock.now = NOW + 3600
    assert users.browser_session_user(cookie) is None
    assert users.browser_session_user("unknown") is None
    assert users.browser_session_user("") is None
    assert users.browser_session_user(None) is None


def test_opening_a_session_sweeps_the_expired_ones(users: Users, alice: UserView, clock: Clock, engine: Engine) -> None:
    users.open_browser_session(alice.id, 10)
    users.open_browser_session(alice.id, 20)
    clock.now = NOW + 15
    kept = users.open_browser_session(alice.id, 5)
    assert [s.expires_at for s in sessions(engine)] == [NOW + 20, NOW + 20]
    assert users.browser_session_user(kept) == alice


def test_a_disabled_or_deleted_user_has_no_browser_session(
    users: Users, alice: UserView, engine: Engine, tmp_path: Path
) -> None:
    cookie = users.open_browser_session(alice.id, 3600)
    with engine.begin() as connection:  # an operator's change by hand, which ends no session
        connection.execute(update(AuthUser).where(AuthUser.id == alice.id).values(disabled=True))
    assert users.browser_session_user(cookie) is None
    with engine.begin() as connection:
        connection.execute(update(AuthUser).where(AuthUser.id == alice.id).values(disabled=False))
    assert users.browser_session_user(cookie) == alice
    # The sqlite3 shell leaves foreign keys off by default, so an operator's DELETE keeps the account's sessions.
    shell = sqlite3.connect(tmp_path / "store.db")
    with shell:
        shell.execute("DELETE FROM auth_users WHERE id = ?", (alice.id,))
    shell.close()
    assert len(sessions(engine)) == 1
    assert users.browser_session_user(cookie) is None


def test_closing_a_browser_session_ends_it_once_and_only_it(users: Users, alice: UserView) -> None:
    cookie = users.open_browser_session(alice.id, 3600)
    other = users.open_browser_session(alice.id, 3600)
    assert users.close_browser_session(cookie) is True
    assert users.browser_session_user(cookie) is None
    assert users.browser_session_user(other) == alice
    assert users.close_browser_session(cookie) is False
    assert users.close_browser_session("unknown") is False
    assert users.close_browser_session("") is False
    assert users.close_browser_session(None) is False
    assert users.browser_session_user(other) == alice
