"""Per-user OAuth to a REST API (``type = "openapi"``, ``auth = { type = "user_oauth" }``), end to end.

The API is a second, real Patchbay with its own OAuth 2.1 server (tests/support/oauth_upstream.py). Its 2026-07-28
MCP endpoint is a plain stateless HTTP API (``POST /mcp``, routing headers, a JSON body, a JSON answer), described
by tests/fixtures/openapi/patchbay_whoami.yaml. A real ``patchbay serve`` with sign-in on publishes that operation
as a tool; people sign in to it, link their own account at the API like a person (tests/support/browser.py) and
call ``whoami``, which answers with the identity of the token the API was given.

The front's people (alice, bob, carol, dave) and the API's (ada, cid) have different names, so an answer naming
``user:ada`` can only come from the token of the account alice linked, never from the front's own token. The tests
share one front and one API, each test with its own people.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from patchbay.links.hub import LinkHub
from patchbay.links.store import LinkStore
from patchbay.settings import load
from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.browser import Browser
from tests.support.oauth_upstream import PASSWORD, run_oauth_upstream
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token

pytestmark = pytest.mark.e2e

SPEC = Path(__file__).resolve().parents[1] / "fixtures" / "openapi" / "patchbay_whoami.yaml"
TOOL = "api_whoami"
MODERN = "2026-07-28"
# What the model sends: every argument the spec declares is a const (the API's request is fixed).
WHOAMI = {
    "MCP_Protocol_Version": MODERN,
    "Mcp_Method": "tools/call",
    "Mcp_Name": "whoami",
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "whoami",
        "arguments": {},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}},
    },
}

# What an operator writes: the spec (its server is the API), per-person OAuth, nothing about the API's OAuth server
# (found from the API's RFC 9728 metadata) and no [outbound] exception (the API is the host the operator named).
FRONT = """
[server]
name = "Front"

[store]
url = "sqlite:///__DB__"

[auth]
mode = "oauth"

[[connectors]]
name = "api"
type = "openapi"
spec = "whoami.openapi.yaml"
auth = { type = "user_oauth" }
open_world = false
operations.whoami = { annotations = { readOnlyHint = true } }
"""


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_oauth_upstream(tmp_path_factory.mktemp("api"), ("ada", "cid")) as server:
        yield server


@dataclass(frozen=True)
class Front:
    server: RunningServer
    config: Path

    @property
    def link_url(self) -> str:
        return f"{self.server.base_url}/links/to/api"


@pytest.fixture(scope="module")
def front(tmp_path_factory: pytest.TempPathFactory, upstream: RunningServer) -> Iterator[Front]:
    """One front for the module; each test has its own people, so no test sees another's links."""
    folder = tmp_path_factory.mktemp("front")
    spec = SPEC.read_text(encoding="utf-8").replace('default: "8000"', f'default: "{upstream.port}"')
    assert f'default: "{upstream.port}"' in spec  # the spec's server is the API this module started
    (folder / "whoami.openapi.yaml").write_text(spec, encoding="utf-8")
    config = folder / "patchbay.toml"
    config.write_text(FRONT.replace("__DB__", str(folder / "front.db")), encoding="utf-8")
    for person in ("alice", "bob", "carol", "dave"):
        add_user(config, person, PASSWORD)
    with run_patchbay(config, log_dir=folder, start_timeout=60) as server:
        yield Front(server, config)


async def link(front: Front, upstream: RunningServer, person: str, account: str) -> str:
    """``person`` signs in to the front's link page, then as ``account`` at the API and agrees: the last page."""
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        at_front = Browser(http, (front.server.base_url,), person, PASSWORD)
        left = await at_front.authorize(front.link_url)
        assert left.location is not None and left.location.startswith(f"{upstream.base_url}/authorize?"), left
        at_api = Browser(http, (front.server.base_url, upstream.base_url), account, PASSWORD)
        outcome = await at_api.authorize(left.location)
    assert outcome.location is None, f"left the flow at {outcome.location}"
    return outcome.html


@contextlib.contextmanager
def front_links(front: Front) -> Iterator[LinkStore]:
    """The front's credential store, opened as ``patchbay links`` opens it (its key beside the database)."""
    hub = LinkHub(load(front.config))
    try:
        yield hub.store
    finally:
        hub.close()


def as_person(front: Front, token: str) -> Client:
    """The official SDK client, 2025 era, declaring no URL elicitation (a plain client)."""
    http = httpx2.AsyncClient(headers={"authorization": f"Bearer {token}"}, trust_env=False, timeout=30)
    return Client(streamable_http_client(front.server.url, http_client=http), mode="legacy")


async def call_modern(front: Front, token: str, capabilities: dict[str, Any]) -> dict[str, Any]:
    """One stateless 2026-07-28 tools/call to the front: its JSON-RPC answer."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities,
    }
    body = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": TOOL, "arguments": WHOAMI, "_meta": meta},
    }
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": TOOL,
    }
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        answer = await http.post(front.server.url, json=body, headers=headers)
    assert answer.headers["content-type"].startswith("application/json"), answer.text
    return answer.json()  # type: ignore[no-any-return]


async def call_2025_11_25(front: Front, token: str, capabilities: dict[str, Any]) -> dict[str, Any]:
    """initialize (2025-11-25, declaring ``capabilities``), then tools/call in that session: its JSON-RPC answer."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": capabilities,
            "clientInfo": {"name": "t", "version": "1"},
        },
    }
    async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
        opened = await http.post(front.server.url, json=init, headers=headers)
        assert opened.status_code == 200, opened.text
        headers |= {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-11-25"}
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post(front.server.url, json=note, headers=headers)).status_code == 202
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": TOOL, "arguments": WHOAMI}}
        answer = await http.post(front.server.url, json=call, headers=headers)
    return answer.json()  # type: ignore[no-any-return]


def link_text(result: types.CallToolResult) -> str:
    [block] = result.content
    assert isinstance(block, types.TextContent), block
    return block.text


def api_identity(result: types.CallToolResult) -> dict[str, Any]:
    """The identity in the API's answer (structuredContent of its JSON-RPC result), as the front passed it on."""
    assert result.is_error is False, result
    answer = result.structured_content
    assert isinstance(answer, dict) and answer["id"] == 1, answer
    identity = answer["result"]["structuredContent"]
    assert isinstance(identity, dict), answer
    return identity


def test_before_linking_every_kind_of_client_is_offered_the_front_s_link_page(
    front: Front, upstream: RunningServer
) -> None:
    async def scenario() -> dict[str, Any]:
        token = await user_token(front.server.base_url, "carol", PASSWORD)
        seen: dict[str, Any] = {}
        async with as_person(front, token) as client:
            [tool] = (await client.list_tools()).tools
            seen["tool"] = tool
            seen["plain"] = await client.call_tool(TOOL, WHOAMI)
        seen["2025-11-25"] = await call_2025_11_25(front, token, {"elicitation": {"url": {}}})
        seen["modern"] = await call_modern(front, token, {"elicitation": {"url": {}}})
        seen["modern plain"] = await call_modern(front, token, {})
        return seen

    seen = run_scenario(scenario, timeout=90)
    tool: types.Tool = seen["tool"]
    assert tool.name == TOOL
    assert tool.annotations is not None and tool.annotations.read_only_hint is True
    assert tool.output_schema is not None  # from the spec's 200 answer
    # A plain client: a tool result the model reads to the person, the link also in _meta. The tool declares an
    # output schema and the link has no structured content, so it comes as an error result (MCP 2025-06-18
    # server/tools: only an error may leave structuredContent out).
    plain: types.CallToolResult = seen["plain"]
    assert plain.is_error is True and plain.structured_content is None
    assert front.link_url in link_text(plain)
    assert plain.meta == {"patchbay/link": front.link_url}
    # 2025-11-25 with URL elicitation: -32042 carrying the link (MCP 2025-11-25 client/elicitation, URL mode).
    error = seen["2025-11-25"]["error"]
    assert error["code"] == -32042, error
    [asked] = error["data"]["elicitations"]
    assert asked["mode"] == "url" and asked["url"] == front.link_url
    # 2026-07-28 with URL elicitation: input_required naming the link (MCP 2026-07-28 basic/patterns/mrtr).
    modern = seen["modern"]["result"]
    assert modern["resultType"] == "input_required", modern
    [request] = modern["inputRequests"].values()
    assert request["method"] == "elicitation/create"
    assert request["params"]["mode"] == "url" and request["params"]["url"] == front.link_url
    # 2026-07-28 without it: the link in the tool result.
    modern_plain = seen["modern plain"]["result"]
    assert modern_plain["resultType"] == "complete" and modern_plain["isError"] is True
    assert front.link_url in modern_plain["content"][0]["text"]
    assert modern_plain["_meta"]["patchbay/link"] == front.link_url


def test_a_linked_person_calls_the_api_as_their_own_account_until_the_link_is_revoked(
    front: Front, upstream: RunningServer
) -> None:
    async def linked_calls() -> dict[str, Any]:
        alice = await user_token(front.server.base_url, "alice", PASSWORD)
        bob = await user_token(front.server.base_url, "bob", PASSWORD)
        seen: dict[str, Any] = {}
        async with as_person(front, alice) as as_alice, as_person(front, bob) as as_bob:
            seen["page"] = await link(front, upstream, "alice", "ada")
            seen["alice"] = await as_alice.call_tool(TOOL, WHOAMI)
            seen["bob"] = await as_bob.call_tool(TOOL, WHOAMI)
        seen["alice modern"] = await call_modern(front, alice, {"elicitation": {"url": {}}})
        async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
            # The API is a real resource server: the front's token for alice is not one it issued for itself.
            headers = {"Authorization": f"Bearer {alice}", "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call"}
            body = {key: WHOAMI[key] for key in ("jsonrpc", "id", "method", "params")}
            seen["front token at the api"] = (await http.post(upstream.url, json=body, headers=headers)).status_code
        return seen

    seen = run_scenario(linked_calls, timeout=120)
    assert "Linked" in seen["page"] and "alice" in seen["page"]
    identity = api_identity(seen["alice"])
    # The API saw ada's token, issued by its own OAuth server to the front as a client: the linked account.
    assert identity["subject"] == "user:ada" and identity["kind"] == "user"
    assert identity["client_id"] not in (None, "")
    assert seen["alice modern"]["result"]["structuredContent"]["result"]["structuredContent"]["subject"] == "user:ada"
    assert seen["front token at the api"] == 401
    # bob has no link: he is offered the link page, never a call made with ada's account.
    unlinked: types.CallToolResult = seen["bob"]
    assert unlinked.is_error is True and unlinked.structured_content is None
    assert front.link_url in link_text(unlinked)

    revoked = patchbay_cli("links", "revoke", "--user", "alice", "-c", str(front.config))
    assert revoked.returncode == 0, revoked.describe()

    async def after_revoking() -> types.CallToolResult:
        token = await user_token(front.server.base_url, "alice", PASSWORD)
        async with as_person(front, token) as client:
            return await client.call_tool(TOOL, WHOAMI)

    again = run_scenario(after_revoking, timeout=60)
    assert again.is_error is True and again.structured_content is None
    assert front.link_url in link_text(again)
    assert again.meta == {"patchbay/link": front.link_url}


def test_an_access_token_the_api_revoked_is_renewed_with_the_linked_refresh_token(
    front: Front, upstream: RunningServer
) -> None:
    async def scenario() -> dict[str, Any]:
        dave = await user_token(front.server.base_url, "dave", PASSWORD)
        seen: dict[str, Any] = {}
        async with as_person(front, dave) as client:
            await link(front, upstream, "dave", "cid")
            seen["first"] = await client.call_tool(TOOL, WHOAMI)
            with front_links(front) as links:
                seen["before"] = before = links.account("api", "user:dave")
                assert before is not None
                registration = links.registration("api", before.issuer)
            assert registration is not None
            async with httpx2.AsyncClient(trust_env=False, timeout=30) as http:
                # RFC 7009: the API's own OAuth server revokes cid's access token (the refresh token stays valid).
                form = {"token": before.tokens.access_token, "client_id": registration.client_id}
                assert (await http.post(f"{upstream.base_url}/revoke", data=form)).status_code == 200
                headers = {
                    "Authorization": f"Bearer {before.tokens.access_token}",
                    "MCP-Protocol-Version": MODERN,
                    "Mcp-Method": "tools/call",
                }
                body = {key: WHOAMI[key] for key in ("jsonrpc", "id", "method", "params")}
                seen["revoked"] = (await http.post(upstream.url, json=body, headers=headers)).status_code
            seen["second"] = await client.call_tool(TOOL, WHOAMI)
        with front_links(front) as links:
            seen["after"] = links.account("api", "user:dave")
        return seen

    seen = run_scenario(scenario, timeout=120)
    assert api_identity(seen["first"])["subject"] == "user:cid"
    assert seen["revoked"] == 401
    # The API refused the token the front held; the front renewed it with cid's refresh token and called again.
    assert api_identity(seen["second"])["subject"] == "user:cid"
    before, after = seen["before"], seen["after"]
    assert after is not None and after.tokens.access_token != before.tokens.access_token
    assert after.tokens.refresh_token not in (None, before.tokens.refresh_token)  # rotated there, replaced here
