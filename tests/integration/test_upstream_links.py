"""``auth = "user_oauth"`` upstreams end to end: a real `patchbay serve` with sign-in in front of a second real
Patchbay with OAuth on as the upstream. People sign in to the front with OAuth, link their accounts through the
real link pages like a person, and call the upstream's ``whoami`` tool, which says whose token it was given."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import run_scenario
from tests.integration.test_upstream_mcp import readyz
from tests.support.browser import Browser
from tests.support.oauth_upstream import PASSWORD, run_oauth_upstream
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token

pytestmark = pytest.mark.e2e

PEOPLE = ("alice", "bob")


def add_people(config: Path) -> None:
    for user in PEOPLE:
        add_user(config, user, PASSWORD)


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_oauth_upstream(tmp_path_factory.mktemp("upstream"), PEOPLE) as server:
        yield server


FRONT = """
[server]
name = "Front"
connector_retry_max_seconds = 1

[store]
url = "sqlite:///__DB__"

[auth]
mode = "oauth"

[outbound]
allow_private_network = true

[[connectors]]
name = "up"
type = "mcp"
url = "__URL__"
auth = "user_oauth"
"""


@pytest.fixture
def front(tmp_path: Path, upstream: RunningServer) -> Iterator[RunningServer]:
    config = tmp_path / "patchbay.toml"
    config.write_text(FRONT.replace("__DB__", str(tmp_path / "front.db")).replace("__URL__", upstream.url))
    add_people(config)
    with run_patchbay(config, log_dir=tmp_path, start_timeout=60) as server:
        yield server


async def link(front: RunningServer, upstream: RunningServer, name: str) -> str:
    """Open the front's link page, sign in there and at the upstream, agree: the final page's text."""
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        browser = Browser(http, (front.base_url, upstream.base_url), name, PASSWORD)
        outcome = await browser.authorize(f"{front.base_url}/links/to/up")
    assert outcome.location is None, f"left the flow at {outcome.location}"
    return outcome.html


def as_person(front: RunningServer, token: str, **kwargs: Any) -> Client:
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, trust_env=False, timeout=30)
    return Client(streamable_http_client(front.url, http_client=http), mode="legacy", **kwargs)


def upstream_subject(result: types.CallToolResult) -> str | None:
    assert result.is_error is False, result
    structured = result.structured_content
    return structured.get("subject") if isinstance(structured, dict) else None


def test_before_anyone_links_only_connect_is_published_and_the_first_link_lists_the_tools(
    front: RunningServer, upstream: RunningServer
) -> None:
    assert readyz(front)["connectors"]["up"]["ok"] is True
    assert "no account is linked yet" in readyz(front)["connectors"]["up"]["detail"]

    async def scenario() -> tuple[list[types.Tool], types.CallToolResult, str, list[types.Tool], str | None]:
        token = await user_token(front.base_url, "alice", PASSWORD)
        changed = anyio.Event()

        async def on_message(message: Any) -> None:
            if getattr(message, "method", None) == "notifications/tools/list_changed":
                changed.set()

        async with as_person(front, token, message_handler=on_message) as client:
            before = (await client.list_tools()).tools
            offered = await client.call_tool("up_connect", {})
            page = await link(front, upstream, "alice")
            with anyio.fail_after(20):
                await changed.wait()
            after = (await client.list_tools()).tools
            whoami = upstream_subject(await client.call_tool("up_whoami", {}))
        return before, offered, page, after, whoami

    before, offered, page, after, whoami = run_scenario(scenario, timeout=90)
    [connect] = before
    assert connect.name == "up_connect"
    assert connect.description == "Link your up account to use its tools."
    assert connect.annotations is not None and connect.annotations.read_only_hint is True
    assert offered.is_error is False
    link_url = f"{front.base_url}/links/to/up"
    assert link_url in offered.content[0].text  # type: ignore[union-attr]
    assert offered.meta == {"patchbay/link": link_url}
    assert "Linked" in page
    names = {t.name for t in after}
    assert {"up_whoami", "up_search", "up_write_doc"} <= names
    assert "up_connect" not in names
    assert whoami == "user:alice"  # the upstream saw alice's own upstream token
    assert readyz(front)["connectors"]["up"]["ok"] is True


def test_each_person_reaches_the_upstream_with_their_own_linked_account_only(
    front: RunningServer, upstream: RunningServer
) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await user_token(front.base_url, "alice", PASSWORD)
        bob = await user_token(front.base_url, "bob", PASSWORD)
        seen: dict[str, Any] = {}
        listed = anyio.Event()

        async def on_message(message: Any) -> None:
            if getattr(message, "method", None) == "notifications/tools/list_changed":
                listed.set()

        async with as_person(front, alice, message_handler=on_message) as as_alice, as_person(front, bob) as as_bob:
            await link(front, upstream, "alice")
            with anyio.fail_after(20):
                await listed.wait()
            seen["alice"] = upstream_subject(await as_alice.call_tool("up_whoami", {}))
            seen["bob unlinked"] = await as_bob.call_tool("up_whoami", {})
            await link(front, upstream, "bob")
            seen["bob"] = upstream_subject(await as_bob.call_tool("up_whoami", {}))
            seen["alice again"] = upstream_subject(await as_alice.call_tool("up_whoami", {}))
        return seen

    seen = run_scenario(scenario, timeout=120)
    assert seen["alice"] == "user:alice"
    unlinked: types.CallToolResult = seen["bob unlinked"]
    # bob is offered the link, never a call made with alice's account; whoami declares an output schema, so the
    # link comes as an error result (a success would need structured content)
    assert unlinked.structured_content is None and unlinked.is_error is True
    assert f"{front.base_url}/links/to/up" in unlinked.content[0].text  # type: ignore[union-attr]
    assert unlinked.meta == {"patchbay/link": f"{front.base_url}/links/to/up"}
    assert seen["bob"] == "user:bob"
    assert seen["alice again"] == "user:alice"
