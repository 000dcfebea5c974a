"""Human approval end to end: a real `patchbay serve` with sign-in, a [[policy]] rule that holds create_card, callers
signed in through the OAuth pages, and approvers who sign in on the approval page driven over HTTP like a person.

The side effect is read from the store itself: a card exists once, or not at all.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import httpx2 as httpx
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.conftest import run_scenario
from tests.support.forms import next_form
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token

PASSWORD = "correct horse battery"
ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
MODERN = "2026-07-28"
# The seeded kanban board, and a rule that holds every new card for a person's approval.
HELD_CARDS = """
[[connectors]]
name = "kanban"
type = "kanban"
prefix = ""
seed = true

[[policy]]
id = "card-writes"
description = "a person approves every new card"
subjects = ["*"]
tools = ["create_card"]
effect = "approve"
"""
CONFIG = (
    """
[server]
name = "Approvals e2e"

[store]
url = "sqlite:///patchbay.db"

[auth]
mode = "oauth"
"""
    + HELD_CARDS
)
USERS = {"alice": [], "bob": [], "carol": ["writer"], "ada": ["approver"], "dave": ["approver"]}


@dataclass
class Env:
    server: RunningServer
    config: Path
    db: Path
    board_id: int
    column: str
    tokens: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "patchbay", *args, "--config", str(self.config)]
        env = {**os.environ, "COLUMNS": "200"}  # a wide terminal: rich tables keep each row on one line
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, env=env)

    def cards(self, title: str) -> int:
        with sqlite3.connect(self.db) as db:
            (count,) = db.execute("SELECT count(*) FROM kanban_cards WHERE title = ?", (title,)).fetchone()
        return int(count)

    def args(self, title: str) -> dict[str, Any]:
        return {"board_id": self.board_id, "column": self.column, "title": title}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("approvals")
    config = folder / "patchbay.toml"
    config.write_text(CONFIG, encoding="utf-8")
    for name, roles in USERS.items():
        add_user(config, name, PASSWORD, roles)
    with run_patchbay(config, log_dir=folder) as server:

        async def sign_in_all() -> dict[str, str]:
            return {name: await user_token(server.base_url, name, PASSWORD) for name in USERS}

        tokens = anyio.run(sign_in_all)
        db = folder / "patchbay.db"
        with sqlite3.connect(db) as store:
            board_id, column = store.execute(
                "SELECT board_id, name FROM kanban_columns ORDER BY board_id, position LIMIT 1"
            ).fetchone()
        yield Env(server, config, db, board_id, column, tokens)


# -- MCP clients of three kinds ---------------------------------------------------------------------------------


async def _session(http: httpx.AsyncClient, token: str, version: str, caps: dict[str, Any]) -> dict[str, str]:
    headers = {**ACCEPT, "authorization": f"Bearer {token}"}
    init = {"protocolVersion": version, "capabilities": caps, "clientInfo": {"name": "e2e-client", "version": "1"}}
    body = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init}
    response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200, response.text
    headers |= {"mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": version}
    done = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
    assert done.status_code == 202, done.text
    return headers


def call_tool(
    env: Env, user: str, arguments: dict[str, Any], *, version: str = "2025-06-18", caps: Any = None
) -> dict[str, Any]:
    """One tools/call of create_card in a fresh 2025-era session; the JSON-RPC response body."""

    async def run() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=env.server.base_url, timeout=20) as http:
            headers = await _session(http, env.tokens[user], version, caps or {})
            body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call"}
            body["params"] = {"name": "create_card", "arguments": arguments}
            response = await http.post("/mcp", json=body, headers=headers)
            assert response.headers["content-type"].startswith("application/json"), response.text
            reply: dict[str, Any] = response.json()
            return reply

    return anyio.run(run)


def call_modern(env: Env, user: str, arguments: dict[str, Any]) -> dict[str, Any]:
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e-modern", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 7, "method": "tools/call"}
    body["params"] = {"name": "create_card", "arguments": arguments, "_meta": meta}
    headers = {
        **ACCEPT,
        "authorization": f"Bearer {env.tokens[user]}",
        "mcp-protocol-version": MODERN,
        "mcp-method": "tools/call",
        "mcp-name": "create_card",
    }
    response = httpx.post(f"{env.server.base_url}/mcp", json=body, headers=headers, timeout=20)
    assert response.status_code == 200, response.text
    reply: dict[str, Any] = response.json()
    return reply


def held(reply: dict[str, Any]) -> tuple[str, str]:
    """The approval id and link of a call held for approval (a plain client's result)."""
    result = reply["result"]
    # create_card declares an outputSchema: a result without structuredContent must be an error (MCP server/tools).
    assert result["isError"] is True and "structuredContent" not in result, result
    approval = result["_meta"]["patchbay/approval"]
    assert approval["status"] == "pending" and approval["url"] in result["content"][0]["text"]
    return approval["approval_id"], approval["url"]


def ran(reply: dict[str, Any], title: str) -> None:
    result = reply["result"]
    assert result.get("isError") is not True, result
    assert result["structuredContent"]["title"] == title


# -- an approver in a browser ------------------------------------------------------------------------------------


def decide(url: str, username: str, decision: str = "approve", *, csrf: bool = True) -> httpx.Response:
    """Open the approval link, sign in, and press Approve or Deny: what a person does, over HTTP."""
    path = urlsplit(url).path
    base = url[: -len(path)]
    with httpx.Client(base_url=base, timeout=20) as browser:
        page = browser.get(path)
        login = next_form(page.text)
        assert page.status_code == 200 and login is not None and login.has_password, page.text
        signed_in = browser.post(login.action, data=login.filled(username, PASSWORD, ""), follow_redirects=True)
        assert signed_in.status_code == 200, signed_in.text
        form = next_form(signed_in.text)
        assert form is not None and form.is_consent, signed_in.text
        data = {**form.fields, "decision": decision}
        if not csrf:
            del data["csrf"]
        return browser.post(form.action, data=data)


def title() -> str:
    return f"approval e2e {uuid.uuid4().hex[:12]}"


# -- tests ---------------------------------------------------------------------------------------------------------


def test_an_approved_call_runs_its_stored_arguments_once_and_only_for_its_caller(env: Env) -> None:
    name = title()
    approval_id, url = held(call_tool(env, "alice", env.args(name)))
    assert env.cards(name) == 0
    assert held(call_tool(env, "alice", env.args(name)))[0] == approval_id  # asking again: the same request
    page = decide(url, "ada")
    assert page.status_code == 200 and "Approved" in page.text
    assert held(call_tool(env, "bob", env.args(name)))[0] != approval_id  # another user: held, not run
    assert held(call_tool(env, "alice", {**env.args(name), "title": name + " changed"}))[0] != approval_id
    assert env.cards(name) == 0 and env.cards(name + " changed") == 0
    reordered = dict(reversed(list(env.args(name).items())))  # same arguments, other key order: same digest
    ran(call_tool(env, "alice", reordered), name)
    assert env.cards(name) == 1
    replay_id, _ = held(call_tool(env, "alice", env.args(name)))
    assert replay_id != approval_id
    assert env.cards(name) == 1


def test_a_2025_11_25_client_with_url_elicitation_gets_32042_with_the_link(env: Env) -> None:
    name = title()
    caps = {"elicitation": {"form": {}, "url": {}}}
    reply = call_tool(env, "alice", env.args(name), version="2025-11-25", caps=caps)
    error = reply["error"]
    assert error["code"] == -32042
    [elicitation] = error["data"]["elicitations"]
    assert elicitation["mode"] == "url"
    assert elicitation["url"] == f"{env.server.base_url}/approvals/{elicitation['elicitationId']}"
    decide(elicitation["url"], "ada")
    reply = call_tool(env, "alice", env.args(name), version="2025-11-25", caps=caps)
    ran(reply, name)
    assert env.cards(name) == 1


def test_a_2026_client_gets_an_input_required_url_request(env: Env) -> None:
    name = title()
    reply = call_modern(env, "alice", env.args(name))["result"]
    assert reply["resultType"] == "input_required" and reply["requestState"]
    [request] = reply["inputRequests"].values()
    assert request["method"] == "elicitation/create"
    assert request["params"]["mode"] == "url"
    assert request["params"]["url"].startswith(f"{env.server.base_url}/approvals/")
    assert env.cards(name) == 0
    decide(request["params"]["url"], "ada")
    done = call_modern(env, "alice", env.args(name))["result"]
    assert done["resultType"] == "complete" and done["structuredContent"]["title"] == name
    assert env.cards(name) == 1


def test_only_an_approver_other_than_the_caller_with_the_form_token_can_approve(env: Env) -> None:
    name = title()
    approval_id, url = held(call_tool(env, "dave", env.args(name)))
    refused = decide(url, "carol")
    assert refused.status_code == 403 and "approver roles" in refused.text
    own = decide(url, "dave")
    assert own.status_code == 403 and "You made this call yourself" in own.text
    forged = decide(url, "ada", csrf=False)
    assert forged.status_code == 403
    assert held(call_tool(env, "dave", env.args(name)))[0] == approval_id  # still pending after all three
    assert env.cards(name) == 0
    assert decide(url, "ada", "deny").status_code == 200
    denied = call_tool(env, "dave", env.args(name))["result"]
    assert denied["isError"] is True and "ada denied" in denied["content"][0]["text"]
    assert env.cards(name) == 0


def test_an_expired_approval_is_refused(env: Env) -> None:
    name = title()
    approval_id, url = held(call_tool(env, "alice", env.args(name)))
    decide(url, "ada")
    with sqlite3.connect(env.db) as store:
        store.execute("UPDATE gate_approvals SET expires_at = ? WHERE id = ?", (time.time() - 1, approval_id))
    reply = call_tool(env, "alice", env.args(name))
    assert "expired" in reply["result"]["content"][0]["text"]
    assert held(reply)[0] != approval_id
    assert env.cards(name) == 0


def test_the_cli_lists_and_approves_a_held_call(env: Env) -> None:
    name = title()
    approval_id, _ = held(call_tool(env, "bob", env.args(name)))
    listed = env.cli("approvals", "list")
    assert listed.returncode == 0 and approval_id in listed.stdout, listed.stderr
    shown = env.cli("approvals", "show", approval_id)
    assert shown.returncode == 0 and name in shown.stdout
    self_approved = env.cli("approvals", "approve", approval_id, "--by", "bob")
    assert self_approved.returncode == 1 and "another approver" in self_approved.stderr
    approved = env.cli("approvals", "approve", approval_id, "--by", "ops")
    assert approved.returncode == 0, approved.stderr
    ran(call_tool(env, "bob", env.args(name)), name)
    assert env.cards(name) == 1
    again = env.cli("approvals", "approve", approval_id, "--by", "ops")
    assert again.returncode == 1 and "used" in again.stderr


# -- notifications/elicitation/complete to a real SDK client session ------------------------------------------------


async def _url_elicitation_then_decision(env: Env, name: str, decide_it: Any) -> tuple[str, list[str], Any]:
    """A 2025-11-25 session of the official Python SDK client (it declares URL-mode elicitation and keeps its GET
    stream open) calls create_card, gets -32042, has the approval decided by ``decide_it(url, approval_id)`` and
    waits for notifications/elicitation/complete; then calls again. (approval id, completed ids, second outcome)."""
    completed: list[str] = []
    done = anyio.Event()

    async def on_message(message: Any) -> None:
        note = getattr(message, "root", message)
        if getattr(note, "method", None) == "notifications/elicitation/complete":
            completed.append(note.params.elicitation_id)
            done.set()

    async def no_forms(context: Any, params: Any) -> Any:
        raise AssertionError("the approval is never asked for in a client form")

    headers = {"authorization": f"Bearer {env.tokens['alice']}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=20) as http,
        Client(
            streamable_http_client(f"{env.server.base_url}/mcp", http_client=http),
            mode="legacy",
            message_handler=on_message,
            elicitation_callback=no_forms,
        ) as client,
    ):
        with pytest.raises(MCPError) as held_error:
            await client.call_tool("create_card", env.args(name))
        assert held_error.value.code == -32042
        [elicitation] = held_error.value.data["elicitations"]
        approval_id = elicitation["elicitationId"]
        assert completed == []
        await anyio.to_thread.run_sync(decide_it, elicitation["url"], approval_id)
        with anyio.fail_after(15):
            await done.wait()
        try:
            second: Any = await client.call_tool("create_card", env.args(name))
        except MCPError as exc:
            second = exc
    return approval_id, completed, second


def test_a_2025_11_25_session_is_told_when_the_page_approves_its_url_elicitation(env: Env) -> None:
    name = title()

    def approve(url: str, approval_id: str) -> None:
        assert decide(url, "ada").status_code == 200

    approval_id, completed, second = run_scenario(lambda: _url_elicitation_then_decision(env, name, approve))
    assert completed == [approval_id]
    assert second.is_error is False and second.structured_content["title"] == name
    assert env.cards(name) == 1


def test_a_2025_11_25_session_is_told_when_the_cli_denies_its_url_elicitation(env: Env) -> None:
    name = title()

    def deny(url: str, approval_id: str) -> None:
        denied = env.cli("approvals", "deny", approval_id, "--by", "ops")
        assert denied.returncode == 0, denied.stderr

    approval_id, completed, second = run_scenario(lambda: _url_elicitation_then_decision(env, name, deny))
    assert completed == [approval_id]
    assert second.is_error is True and "ops denied" in second.content[0].text
    assert env.cards(name) == 0
