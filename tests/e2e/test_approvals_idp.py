"""Approvers who sign in through the organisation's identity provider: a real `patchbay serve` with
``[auth.upstream]`` pointing at a real OpenID provider on loopback (`oidc-provider`, tests/e2e/scripts/oidc_idp.mjs),
a [[policy]] rule that holds create_card, and approvers driven over HTTP like a person: the approval page's
"Sign in with <IdP>" button, the provider's own sign-in and consent pages, back to the approval.

The provider's accounts are in the group ``mcp-admins`` (mapped to the approver role) unless their id starts with
"plain" (only ``sales``, mapped to nothing that approves). The side effect is read from the store itself.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest

from tests.e2e.test_approvals import HELD_CARDS, PASSWORD
from tests.support.forms import next_form
from tests.support.idp import Provider, run_idp, sign_in_through_idp
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token

pytestmark = pytest.mark.e2e

ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


@dataclass
class Env:
    server: RunningServer
    issuer: str
    db: Path
    board_id: int
    column: str
    token: str  # the caller's, a local account signed in through the OAuth pages

    def args(self, title: str) -> dict[str, Any]:
        return {"board_id": self.board_id, "column": self.column, "title": title}

    def cards(self, title: str) -> int:
        with sqlite3.connect(self.db) as db:
            (count,) = db.execute("SELECT count(*) FROM kanban_cards WHERE title = ?", (title,)).fetchone()
        return int(count)


def config(folder: Path, provider: Provider) -> Path:
    roles = 'role_map = { "mcp-admins" = ["approver"], "sales" = ["sales"] }'
    path = folder / "patchbay.toml"
    path.write_text(
        f"""
[server]
name = "Approvals via IdP e2e"

[store]
url = "sqlite:///{folder / "patchbay.db"}"

[auth]
mode = "oauth"
{provider.upstream_section(more=roles)}
{HELD_CARDS}""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("approvals-idp")
    provider = Provider()
    path = config(folder, provider)
    add_user(path, "carol", PASSWORD)
    with (
        run_patchbay(path, env=provider.patchbay_env, log_dir=folder) as server,
        run_idp(provider, f"{server.base_url}/authorize/callback", folder / "idp.log"),
    ):
        token = anyio.run(user_token, server.base_url, "carol", PASSWORD)
        db = folder / "patchbay.db"
        with sqlite3.connect(db) as store:
            board_id, column = store.execute(
                "SELECT board_id, name FROM kanban_columns ORDER BY board_id, position LIMIT 1"
            ).fetchone()
        yield Env(server, provider.issuer, db, board_id, column, token)


def call(env: Env, arguments: dict[str, Any]) -> dict[str, Any]:
    """One tools/call of create_card by the caller, in a fresh 2025-06-18 session: the JSON-RPC result."""
    with httpx.Client(base_url=env.server.base_url, timeout=20) as http:
        headers = {**ACCEPT, "authorization": f"Bearer {env.token}"}
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}}
        opened = http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}, headers=headers
        )
        headers |= {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-06-18"}
        http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
        params = {"name": "create_card", "arguments": arguments}
        reply = http.post(
            "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}, headers=headers
        )
        result: dict[str, Any] = reply.json()["result"]
        return result


def held_url(result: dict[str, Any]) -> str:
    approval = result["_meta"]["patchbay/approval"]
    # create_card declares an outputSchema: a result without structuredContent must be an error (MCP server/tools).
    assert result["isError"] is True and approval["status"] == "pending", result
    url: str = approval["url"]
    return url


async def decide_through_idp(
    env: Env, url: str, account: str, decision: str = "approve"
) -> tuple[httpx.Response, list[str]]:
    """Open the approval link, press "Sign in with Example IdP", sign in at the provider as ``account``, come back,
    follow the page's link to the approval and press the decision; the decision's response and every page seen."""
    path = url.removeprefix(env.server.base_url)
    async with httpx.AsyncClient(base_url=env.server.base_url, timeout=20) as http:
        browser = await sign_in_through_idp(http, env.server.base_url, env.issuer, path, account)
        page = await http.get(path)
        browser.pages.append(page.text)
        form = next_form(page.text)
        assert form is not None and form.is_consent, page.text
        answer = await http.post(form.action, data={**form.fields, "decision": decision})
        return answer, browser.pages


def title() -> str:
    return f"idp approval {uuid.uuid4().hex[:12]}"


def test_an_approver_signed_in_through_the_idp_approves_a_held_call(env: Env) -> None:
    name = title()
    url = held_url(call(env, env.args(name)))
    answer, pages = anyio.run(decide_through_idp, env, url, "alice")
    assert "Sign in with Example IdP" in pages[0] and 'name="password"' in pages[0]  # as on /authorize: both
    assert answer.status_code == 200 and "Approved" in answer.text, answer.text
    assert "Signed in as <strong>alice@example.com</strong>" in answer.text  # username_claim = "email"
    assert env.cards(name) == 0
    ran = call(env, env.args(name))
    assert ran.get("isError") is not True and ran["structuredContent"]["title"] == name, ran
    assert env.cards(name) == 1


def test_an_idp_user_without_an_approver_role_is_refused(env: Env) -> None:
    name = title()
    url = held_url(call(env, env.args(name)))
    answer, _ = anyio.run(decide_through_idp, env, url, "plain-bob")
    assert answer.status_code == 403 and "none of the approver roles" in answer.text, answer.text
    again = call(env, env.args(name))
    assert held_url(again) == url  # still pending, and nothing ran
    assert env.cards(name) == 0


def test_a_provider_callback_this_browser_did_not_start_is_not_an_approver_sign_in(env: Env) -> None:
    with httpx.Client(base_url=env.server.base_url, timeout=20) as http:
        http.cookies.set("patchbay_approver_idp", "state-a.verifier.nonce.someid", path="/authorize/callback")
        answer = http.get("/authorize/callback", params={"state": "state-b", "code": "x"})
    assert answer.status_code in (400, 403) and "patchbay_approver=" not in answer.headers.get("set-cookie", "")
