"""Password guessing: throttled per address and per account, answered alike, logged without the password."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures.authflow import PASSWORD, Flow, add_user, client_for, running
from tests.support.browser import Outcome

from patchbay.auth import users as users_module

pytestmark = pytest.mark.anyio

WRONG = "not the password 1"


def _error(outcome: Outcome) -> str:
    html = outcome.html
    start = html.index('id="login-error">') + len('id="login-error">')
    return html[start : html.index("</p>", start)]


class HashCount:
    """Counts argon2 verifications: the costly step every answer must take exactly once."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = users_module._check

        def counted(hashed: str, password: str) -> bool:
            self.calls += 1
            return real(hashed, password)

        monkeypatch.setattr(users_module, "_check", counted)

    def during(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


async def test_unknown_and_known_accounts_get_the_same_answer_at_the_same_cost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hashes = HashCount(monkeypatch)
    auth = {"login_attempts": 2, "login_attempts_per_address": 100}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        answers: dict[str, Outcome] = {}
        costs: dict[str, int] = {}
        for case, (name, password) in {
            "unknown": ("nobody", WRONG),
            "wrong": ("alice", WRONG),
            "locking": ("alice", WRONG),
            "locked-wrong": ("alice", WRONG),
            "locked-right": ("alice", PASSWORD),
        }.items():
            hashes.during()
            answers[case] = await flow.sign_in(username=name, password=password)
            costs[case] = hashes.during()
    assert {a.status for a in answers.values()} == {401}
    assert all(a.location is None for a in answers.values())
    assert len({_error(a) for a in answers.values()}) == 1
    assert costs == dict.fromkeys(answers, 1)


async def test_attempts_during_a_lock_do_not_extend_it(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    auth = {"login_attempts": 2, "lockout_seconds": 600, "login_attempts_per_address": 100}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        app.runtime.auth.core.clock = lambda: now[0]
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        for _ in range(2):
            await flow.sign_in(password=WRONG)
        for _ in range(5):  # an attacker keeps guessing through the lock
            now[0] += 100
            assert (await flow.sign_in(password=WRONG)).status == 401
        now[0] += 101  # 601 s after the lock began
        assert "code" in (await flow.sign_in()).params


async def test_a_browser_that_signed_in_before_is_not_held_by_the_account_lock(tmp_path: Path) -> None:
    auth = {"login_attempts": 2, "login_attempts_per_address": 100}
    async with running(tmp_path, auth=auth) as app, client_for(app) as owner, client_for(app) as stranger:
        await add_user(app)
        owner_flow, stranger_flow = Flow(owner), Flow(stranger)
        await owner_flow.register()
        stranger_flow.client_id = owner_flow.client_id
        assert "code" in (await owner_flow.sign_in()).params
        owner.cookies.delete("patchbay_session", path="/authorize")  # signed out, the device cookie stays
        for _ in range(3):
            assert (await stranger_flow.sign_in(password=WRONG)).status == 401
        assert (await stranger_flow.sign_in()).status == 401  # locked for the stranger, right password or not
        assert "code" in (await owner_flow.sign_in()).params


async def test_an_address_is_throttled_whatever_accounts_it_tries(tmp_path: Path) -> None:
    auth = {"login_attempts": 100, "login_attempts_per_address": 3}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        await add_user(app, "bob")
        flow = Flow(http)
        await flow.register()
        for name in ("carol", "dave", "erin"):  # spraying names: no account reaches its own limit
            assert (await flow.sign_in(username=name, password=WRONG)).status == 401
        refused = await flow.sign_in(username="bob", password=PASSWORD)
        assert refused.status == 401 and refused.location is None
        assert app.runtime.auth.core.users.by_name("bob").locked_until is None  # the account itself is fine
        app.runtime.auth.authorization.throttle.failures.clear()  # the window passed
        assert "code" in (await flow.sign_in(username="bob", password=PASSWORD)).params


async def test_failures_and_locks_are_logged_without_the_password(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret_guess = "Tr0ub4dor&3-guess"
    auth = {"login_attempts": 2, "login_attempts_per_address": 3}
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        for _ in range(3):
            await flow.sign_in(password=secret_guess)
    messages = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"]
    assert any("sign-in failed: user='alice'" in m for m in messages)
    assert any("account locked: user='alice'" in m for m in messages)
    assert any("sign-in throttled: address=" in m for m in messages)
    assert not any(secret_guess in m for m in messages)
    assert not any(PASSWORD in m for m in messages)


def test_the_timing_equaliser_hash_is_not_made_at_import() -> None:
    """No import-time state: importing the users module costs no argon2 hash (CLI commands and API-key servers
    never need it); the oauth server makes it at start."""
    code = "import patchbay.auth.users as u; print(u.dummy_hash.cache_info().currsize)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == "0"


async def test_each_refused_sign_in_is_logged_once_with_the_name_cut_at_100_characters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    auth = {"login_attempts": 2, "login_attempts_per_address": 3, "lockout_seconds": 600}
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    long_name = "n" * 99 + "xy"
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        await flow.sign_in(username=f"  {long_name} ", password=WRONG)  # unknown account
        await flow.sign_in(password=WRONG)
        await flow.sign_in(password=WRONG)  # the account locks, and the address reaches its limit
        await flow.sign_in(password=PASSWORD)  # the address is throttled: refused, and not counted again
        await flow.sign_in(password=PASSWORD)
    messages = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"]
    shown = repr("n" * 99 + "x")
    refused = "sign-in refused: user='alice' address=127.0.0.1 outcome=throttled"
    assert messages == [
        f"sign-in failed: user={shown} known=False address=127.0.0.1 outcome=invalid",
        "sign-in failed: user='alice' known=True address=127.0.0.1 outcome=invalid",
        "sign-in failed: user='alice' known=True address=127.0.0.1 outcome=invalid",
        "sign-in throttled: address=127.0.0.1 made 3 failed sign-ins within 600 s",
        "account locked: user='alice' for 600 s after 2 wrong passwords in a row (last from address=127.0.0.1)",
        refused,
        refused,
    ]
