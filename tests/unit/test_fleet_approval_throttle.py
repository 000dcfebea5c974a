"""The approval page's own sign-in throttle (auth.mode = none) in a fleet: failures on any replica count against
one budget per address, so N replicas do not give a password guesser N times the tries (docs/approvals.md)."""

from __future__ import annotations

from pathlib import Path

import httpx2 as httpx
import pytest
from tests.support.forms import next_form
from tests.unit.fixtures.fleet_streams import fleet_settings, two_replicas

from patchbay.auth.users import Users
from patchbay.gate.approval_store import HeldCall
from patchbay.store import create_engine

pytestmark = pytest.mark.anyio

PASSWORD = "approver pass 42"
TRIES = 3


def _held(app: object, folder: Path) -> str:
    approvals = app.runtime.dispatcher.approvals  # type: ignore[attr-defined]
    call = HeldCall("anonymous", "anonymous", "c1", None, "ticks", "a" * 64, "0" * 64, {}, "policy[0]", "r")
    approval_id = str(approvals.store.create(call, 900.0).id)
    engine = create_engine(f"sqlite:///{folder / 'store.db'}")
    try:
        Users(engine, max_attempts=100, lockout=900).add("ada", PASSWORD, roles=("approver",))
    finally:
        engine.dispose()
    return approval_id


async def _sign_in(http: httpx.AsyncClient, page_url: str, password: str) -> int:
    page = await http.get(page_url)
    login = next_form(page.text)
    assert login is not None and login.has_password, page.text
    action = httpx.URL(page_url).join(login.action)
    answer = await http.post(action, data=login.filled("ada", password, ""))
    return answer.status_code


async def test_approval_page_sign_in_failures_on_any_replica_share_one_budget(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = fleet_settings(
        tmp_path,
        redis_url,
        redis_prefix,
        auth={"mode": "none", "login_attempts_per_address": TRIES},
        policy=[{"subjects": ["*"], "tools": ["ticks"], "effect": "approve"}],
    )
    async with two_replicas(settings) as (a, b):
        await a.app.runtime.dispatcher.approvals.run(lambda: None)  # migrates the store both replicas share
        approval_id = _held(a.app, tmp_path)
        async with (
            httpx.AsyncClient(timeout=10, trust_env=False) as http_a,
            httpx.AsyncClient(timeout=10, trust_env=False) as http_b,
        ):
            clients = [(http_a, f"{a.base}/approvals/{approval_id}"), (http_b, f"{b.base}/approvals/{approval_id}")]
            # TRIES wrong passwords, alternating replicas: neither replica alone saw TRIES of them.
            wrong = [await _sign_in(*clients[i % 2], "not the password") for i in range(TRIES)]
            right_on_b = await _sign_in(*clients[1], PASSWORD)
            right_on_a = await _sign_in(*clients[0], PASSWORD)

    assert wrong == [401] * TRIES
    assert (right_on_a, right_on_b) == (401, 401)  # the address is throttled on every replica
