"""The operator console in a real browser: Debian's Chromium driven by Playwright against a real `patchbay serve`
with sign-in, manifest review and an approval rule; real MCP clients (the official SDK, plain HTTP) on the other
side of each decision.

Every page visited is screenshotted to build/test-artifacts/console/, checked with axe-core, and must log no console
error and no CSP violation (tests/support/chromium.py).
"""

from __future__ import annotations

import re
import sqlite3
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from playwright.async_api import Page, expect

from tests.e2e.conftest import run_scenario
from tests.support.chromium import ConsoleBrowser, console_browser, require_chromium
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

PASSWORD = "correct horse battery"
USERS = {"admin": ["admin"], "approver": ["approver"], "plain": [], "alice": []}
SCENARIO_TIMEOUT = 120.0
ACCEPT = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
TOOLS = '''
from patchbay import tool


@tool(read_only=True)
def echo(text: str) -> str:
    """Echo the text back."""
    return "echo:" + text
'''
ADDED = '''

@tool(read_only=True)
def shout(text: str) -> str:
    """Say the text loudly."""
    return text.upper()
'''
CONFIG = """
[server]
name = "Console e2e"

[store]
url = "sqlite:///patchbay.db"

[auth]
mode = "oauth"

[manifest]
mode = "review"
poll_seconds = 0.2

[[connectors]]
name = "py"
type = "python"
path = "{tools}"
prefix = ""
watch = true
watch_seconds = 0.2

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


@dataclass
class Env:
    server: RunningServer
    folder: Path
    alice: str  # alice's access token, through a client registered as "alice's client"

    @property
    def db(self) -> Path:
        return self.folder / "patchbay.db"

    def card_args(self, title: str) -> dict[str, Any]:
        with sqlite3.connect(self.db) as store:
            board_id, column = store.execute(
                "SELECT board_id, name FROM kanban_columns ORDER BY board_id, position LIMIT 1"
            ).fetchone()
        return {"board_id": board_id, "column": column, "title": title}

    def cards(self, title: str) -> int:
        with sqlite3.connect(self.db) as store:
            (count,) = store.execute("SELECT count(*) FROM kanban_cards WHERE title = ?", (title,)).fetchone()
        return int(count)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    require_chromium()
    folder = tmp_path_factory.mktemp("console")
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(CONFIG.format(tools=folder / "tools.py"), encoding="utf-8")
    for name, roles in USERS.items():
        add_user(config, name, PASSWORD, roles)
    with run_patchbay(config, log_dir=folder) as server:
        token = run_scenario(lambda: user_token(server.base_url, "alice", PASSWORD, client_name="alice's client"))
        yield Env(server, folder, token)


def browse(
    env: Env,
    user: str | None,
    steps: Callable[[ConsoleBrowser, Page], Awaitable[None]],
    *,
    start: str = "/admin/",
    landing: int = 200,
) -> None:
    """Open a browser, sign ``user`` in on the console page ``start`` (unless None), which then answers
    ``landing``, run ``steps``, then fail on anything the browser reported."""

    async def scenario() -> None:
        async with console_browser(env.server.base_url) as browser:
            page = await browser.new_page()
            if user is not None:
                await browser.open(page, start, status=401)
                await browser.check(page, "sign-in")
                if landing >= 400:
                    browser.expected.append(rf"status of {landing}\b")
                await browser.sign_in(page, user, PASSWORD)
            await steps(browser, page)
            browser.assert_clean()

    run_scenario(scenario, timeout=SCENARIO_TIMEOUT)


# -- MCP clients ---------------------------------------------------------------------------------------------------


async def sdk_tool_names(env: Env, token: str) -> set[str]:
    """tools/list through the official SDK client, signed in with ``token``."""
    headers = {"authorization": f"Bearer {token}"}
    async with (
        httpx.AsyncClient(headers=headers, timeout=30, trust_env=False) as http,
        Client(streamable_http_client(env.server.url, http_client=http)) as client,
    ):
        listed = await client.list_tools()
        return {tool.name for tool in listed.tools}


async def call(env: Env, token: str, name: str, arguments: dict[str, Any]) -> httpx.Response:
    """One stateless (2026-07-28) tools/call over plain HTTP."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "console-e2e", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments, "_meta": meta}}  # fmt: skip
    headers = {**ACCEPT, "authorization": f"Bearer {token}", "mcp-protocol-version": "2026-07-28",
               "mcp-method": "tools/call", "mcp-name": name}  # fmt: skip
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        return await http.post(env.server.url, json=body, headers=headers)


def accept_dialogs(page: Page) -> None:
    """Answer "OK" to the data-confirm questions (console.js asks with window.confirm)."""
    page.on("dialog", lambda dialog: dialog.accept())


# -- tests ---------------------------------------------------------------------------------------------------------


def test_every_console_page_loads_clean_and_accessible_for_an_admin(env: Env) -> None:
    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await expect(page.get_by_role("navigation", name="Console sections")).to_be_visible()
        await browser.check(page, "overview")
        links = page.get_by_role("navigation", name="Console sections").get_by_role("link")
        hrefs = [await links.nth(i).get_attribute("href") for i in range(await links.count())]
        assert hrefs[:2] == ["/admin/", "/admin/connect"], hrefs
        for href in hrefs:
            assert href is not None
            await browser.open(page, href)
            await expect(page.locator("main h1")).to_be_visible()
            await browser.check(page, href.strip("/").replace("/", "-") or "admin")
        await browser.open(page, "/admin/tools/echo")
        await browser.check(page, "admin-tool-echo")

    browse(env, "admin", steps)


def test_the_connect_page_runs_the_doctor_against_the_public_url(env: Env) -> None:
    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/connect")
        await expect(page.get_by_text(f"claude mcp add --transport http console-e2e {env.server.url}")).to_be_visible()
        async with page.expect_navigation(wait_until="load"):
            await page.get_by_role("button", name="Run the doctor").click()
        assert page.url.endswith("/admin/connect#doctor"), page.url
        await expect(page.get_by_role("heading", name=re.compile("Report for"))).to_be_visible()
        for title in ("ChatGPT", "Claude", "OpenAI Responses API", "Anthropic Messages API"):
            await expect(page.locator("caption", has_text=re.compile(f"^{re.escape(title)}: "))).to_have_count(1)
        await browser.check(page, "connect-doctor-report")

    browse(env, "admin", steps)


def test_a_signed_in_person_without_the_admin_role_gets_403(env: Env) -> None:
    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        assert page.url.endswith("/admin/"), page.url
        await expect(page.locator("main")).to_contain_text("does not have the admin role")
        await browser.check(page, "forbidden")
        await browser.open(page, "/admin/config", status=403)

    browse(env, "plain", steps, landing=403)


def test_approving_a_pending_tool_change_changes_tools_list_for_an_sdk_client(env: Env) -> None:
    assert "shout" not in run_scenario(lambda: sdk_tool_names(env, env.alice))
    tools = env.folder / "tools.py"
    tools.write_text(tools.read_text(encoding="utf-8") + ADDED, encoding="utf-8")

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        accept_dialogs(page)

        async def pending() -> bool:
            await browser.open(page, "/admin/changes")
            return await page.get_by_role("heading", name=re.compile(r"\bshout\b")).count() > 0

        await until(pending, "the changes page shows the new tool shout", within=30, every=0.5)
        await browser.check(page, "changes-pending")
        assert "shout" not in await sdk_tool_names(env, env.alice)  # held until approved
        await page.get_by_label("Choose tool shout").check()
        async with page.expect_navigation(wait_until="load"):
            await page.get_by_role("button", name="Approve chosen").click()
        await expect(page.locator("main")).to_contain_text("Approved version")

        async def listed() -> bool:
            return "shout" in await sdk_tool_names(env, env.alice)

        await until(listed, "the SDK client lists shout after the approval", within=20, every=0.2)

    browse(env, "admin", steps)


def test_an_approver_approves_a_held_call_and_it_runs(env: Env) -> None:
    title = f"console e2e {uuid.uuid4().hex[:10]}"
    arguments = env.card_args(title)
    held = run_scenario(lambda: call(env, env.alice, "create_card", arguments)).json()["result"]
    assert held["isError"] is True and held["_meta"]["patchbay/approval"]["status"] == "pending", held
    assert env.cards(title) == 0

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/approvals")
        section = page.locator("section", has_text=title)
        await expect(section).to_contain_text("alice")
        await browser.check(page, "approvals-pending")
        async with page.expect_navigation(wait_until="load"):
            await section.get_by_role("button", name="Approve").click()
        await expect(page.locator("section", has_text=title)).to_have_count(0)

    browse(env, "approver", steps, start="/admin/approvals")
    ran = run_scenario(lambda: call(env, env.alice, "create_card", arguments)).json()["result"]
    assert ran.get("isError") is not True and ran["structuredContent"]["title"] == title, ran
    assert env.cards(title) == 1


def test_an_approver_denies_a_held_call_and_it_never_runs(env: Env) -> None:
    title = f"console e2e denied {uuid.uuid4().hex[:10]}"
    arguments = env.card_args(title)
    held = run_scenario(lambda: call(env, env.alice, "create_card", arguments)).json()["result"]
    assert held["isError"] is True and held["_meta"]["patchbay/approval"]["status"] == "pending", held

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/approvals")
        section = page.locator("section", has_text=title)
        await expect(section).to_contain_text("alice")
        async with page.expect_navigation(wait_until="load"):
            await section.get_by_role("button", name="Deny").click()
        await expect(page.locator("section", has_text=title)).to_have_count(0)
        await browser.check(page, "approvals-denied")

    browse(env, "approver", steps, start="/admin/approvals")
    again = run_scenario(lambda: call(env, env.alice, "create_card", arguments)).json()["result"]
    text = again["content"][0]["text"]
    assert again["isError"] is True and "Not run: approver denied this call of 'create_card'" in text, again
    assert env.cards(title) == 0


def test_trying_a_tool_as_a_user_shows_its_result(env: Env) -> None:
    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/tools/echo")
        await page.get_by_label("Run as user").select_option("alice")
        await page.get_by_label("Arguments (a JSON object)").fill('{"text": "from the console"}')
        async with page.expect_navigation(wait_until="load"):
            await page.get_by_role("button", name="Run echo").click()
        await expect(page.locator("main")).to_contain_text("echo:from the console")
        await browser.check(page, "tool-tried")

    browse(env, "admin", steps)


def test_filtering_the_audit_log_by_tool_shows_only_that_tool(env: Env) -> None:
    run_scenario(lambda: call(env, env.alice, "echo", {"text": "audited"}))

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/audit")
        await page.get_by_label("Tool").fill("echo")
        async with page.expect_navigation(wait_until="load"):
            await page.get_by_role("button", name="Filter").click()
        assert "tool=echo" in page.url, page.url
        rows = page.locator("main table tbody tr")
        await expect(rows.first).to_be_visible()
        texts = await rows.all_inner_texts()
        assert texts and all("echo" in text for text in texts), texts
        await browser.check(page, "audit-filtered")

    browse(env, "admin", steps)


def test_the_audit_live_tail_shows_a_new_call_without_a_reload(env: Env) -> None:
    text = f"live {uuid.uuid4().hex[:10]}"

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/audit?tool=echo")
        await expect(page.locator("#audit-live[data-live]")).to_have_count(1)
        newest = await page.locator("#audit-records tbody tr").first.inner_text()
        loaded = page.url
        reply = await call(env, env.alice, "echo", {"text": text})
        assert reply.status_code == 200, reply.text
        # A row newer than the newest one at load time appears at the top, and the page was not reloaded.
        await expect(page.locator("#audit-records tbody tr").first).not_to_have_text(newest, timeout=20_000)
        await expect(page.locator("#audit-records tbody tr").first).to_contain_text("echo")
        assert page.url == loaded
        await browser.check(page, "audit-live")

    browse(env, "admin", steps)


def test_revoking_a_client_refuses_its_token(env: Env) -> None:
    token = run_scenario(lambda: user_token(env.server.base_url, "alice", PASSWORD, client_name="doomed client"))
    assert run_scenario(lambda: sdk_tool_names(env, token))

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        accept_dialogs(page)
        await browser.open(page, "/admin/access/clients")
        row = page.locator("#clients tr", has_text="doomed client")
        await browser.check(page, "access-clients")
        async with page.expect_navigation(wait_until="load"):
            await row.get_by_role("button", name="Revoke").click()
        await expect(page.locator("#clients tr", has_text="doomed client")).to_contain_text("revoked")
        await browser.check(page, "access-client-revoked")

    browse(env, "admin", steps)
    refused = run_scenario(lambda: call(env, token, "echo", {"text": "still here?"}))
    assert refused.status_code == 401, refused.text


def test_the_main_actions_are_reachable_with_the_keyboard(env: Env) -> None:
    async def focused_after_tabs(page: Page, wanted: str, limit: int = 60) -> int:
        for presses in range(1, limit + 1):
            await page.keyboard.press("Tab")
            label = await page.evaluate("document.activeElement && document.activeElement.textContent.trim()")
            if label == wanted:
                return presses
        raise AssertionError(f"{wanted!r} not reached with {limit} presses of Tab on {page.url}")

    async def steps(browser: ConsoleBrowser, page: Page) -> None:
        await browser.open(page, "/admin/connect")
        assert await focused_after_tabs(page, "Skip to content") == 1
        await page.keyboard.press("Enter")
        assert await page.evaluate("document.activeElement.id") == "main"
        await focused_after_tabs(page, "Run the doctor")
        await browser.open(page, "/admin/audit")
        await focused_after_tabs(page, "Filter")

    browse(env, "admin", steps)
