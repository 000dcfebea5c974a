"""The openapi connector end to end: a real `patchbay serve` with sign-in on publishes a real REST service
(tests/support/rest_api.py, its own OpenAPI 3.1 description) as tools, driven by the official MCP Python SDK client.

The service records every request it receives, so each call is checked on the API's side of the wire: the path,
query, headers and body exactly as the spec says, the API's own credential per its security scheme, and never the
token the client signed in to Patchbay with, nor any header the client sent.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import jsonschema
import mcp_types as types
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.conftest import patchbay_cli, run_scenario
from tests.support.rest_api import (
    API_KEY,
    BASIC_PASSWORD,
    BASIC_USER,
    BEARER_TOKEN,
    PNG,
    SPEC_PATH,
    RestApi,
    serving,
)
from tests.support.servers import RunningServer, run_patchbay
from tests.support.user_tokens import add_user, user_token

pytestmark = pytest.mark.e2e

PASSWORD = "openapi e2e password 123"
LEGACY = "legacy"
MODERN = "2026-07-28"
# Sent by the MCP client on every request: it must never reach the API (no inbound header is copied).
INBOUND_MARKER = "inbound-marker-6d0c"
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")

TOOL_NAMES = {
    "tickets_list_tickets",
    "tickets_create_ticket",
    "tickets_get_ticket",
    "tickets_replace_ticket",
    "tickets_update_ticket",
    "tickets_delete_ticket",
    "tickets_add_comment",
    "tickets_upload_attachment",
    "tickets_get_ticket_badge",
    "tickets_get_ticket_summary",
    "tickets_list_customers",
    "tickets_create_customer",
    "tickets_get_stats",
    "tickets_get_preferences",
    "tickets_check_busy",
    "tickets_get_broken",
}
SEARCH_NAMES = {"big_search_operations", "big_describe_operation", "big_call_operation"}
# What the HTTP method says about an operation (issue 14, "Annotations from HTTP semantics").
HINTS_BY_METHOD = {
    "GET": (True, False, True),
    "PUT": (False, True, True),
    "DELETE": (False, True, True),
    "POST": (False, True, False),
    "PATCH": (False, True, False),
}
METHOD_OF = {
    "replace_ticket": "PUT",
    "delete_ticket": "DELETE",
    "update_ticket": "PATCH",
    "create_ticket": "POST",
    "add_comment": "POST",
    "upload_attachment": "POST",
    "create_customer": "POST",
}


@dataclass(frozen=True)
class Env:
    api: RestApi
    server: RunningServer
    token: str  # alice's access token to Patchbay


def write_config(folder: Path, api: RestApi) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "OpenAPI e2e"

[store]
url = "sqlite:///{folder / "patchbay.db"}"

[auth]
mode = "oauth"

[outbound]
allow_private_network = true

[[connectors]]
name = "tickets"
type = "openapi"
spec = "{api.spec_url}"
mode = "tools"
open_world = false
auth = {{ type = "bearer", token_env = "TICKETS_TOKEN" }}
security.apiKey = {{ type = "api_key", value_env = "TICKETS_API_KEY" }}
security.basic = {{ type = "basic", username = "{BASIC_USER}", password_env = "TICKETS_STATS_PASSWORD" }}

[[connectors]]
name = "big"
type = "openapi"
spec = "{SPEC_PATH}"
base_url = "{api.api_url}"
mode = "search"
auth = {{ type = "bearer", token_env = "TICKETS_TOKEN" }}

[[connectors]]
name = "wrong"
type = "openapi"
spec = "{SPEC_PATH}"
base_url = "{api.api_url}"
mode = "tools"
include = {{ operations = ["getTicket"] }}
auth = {{ type = "bearer", token = "not-the-service-token" }}
""",
        encoding="utf-8",
    )
    return config


SECRETS = {"TICKETS_TOKEN": BEARER_TOKEN, "TICKETS_API_KEY": API_KEY, "TICKETS_STATS_PASSWORD": BASIC_PASSWORD}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    folder = tmp_path_factory.mktemp("openapi")
    with serving() as api:
        config = write_config(folder, api)
        add_user(config, "alice", PASSWORD)
        with run_patchbay(config, env=SECRETS, log_dir=folder) as server:
            token = run_scenario(lambda: user_token(server.base_url, "alice", PASSWORD))
            yield Env(api=api, server=server, token=token)


def client(env: Env, era: str = LEGACY) -> tuple[httpx2.AsyncClient, Client]:
    headers = {"authorization": f"Bearer {env.token}", "x-client-secret": INBOUND_MARKER}
    http = httpx2.AsyncClient(headers=headers, timeout=60, trust_env=False)
    return http, Client(streamable_http_client(env.server.url, http_client=http), mode=era)


async def call(env: Env, tool: str, arguments: dict[str, Any], era: str = LEGACY) -> types.CallToolResult:
    http, mcp = client(env, era)
    async with http, mcp:
        return await mcp.call_tool(tool, arguments)


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(item.text for item in result.content if isinstance(item, types.TextContent))


def ok(result: types.CallToolResult) -> Any:
    """The result's data: its structuredContent, else its JSON text (an array response has no outputSchema)."""
    assert result.is_error is False, text_of(result)
    if result.structured_content is not None:
        return result.structured_content
    return json.loads(text_of(result))


# -- tools/list -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_every_operation_is_a_tool_with_all_hints_a_title_and_valid_schemas(env: Env, era: str) -> None:
    async def scenario() -> list[dict[str, Any]]:
        http, mcp = client(env, era)
        async with http, mcp:
            listed = await mcp.list_tools()
            return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in listed.tools]

    tools = {tool["name"]: tool for tool in run_scenario(scenario)}
    assert set(tools) == TOOL_NAMES | SEARCH_NAMES | {"wrong_get_ticket"}
    for name, tool in tools.items():
        annotations = tool["annotations"]
        assert all(isinstance(annotations.get(hint), bool) for hint in HINTS), (name, annotations)
        assert tool.get("title") or annotations.get("title"), name
        jsonschema.Draft202012Validator.check_schema(tool["inputSchema"])
        assert tool["inputSchema"]["type"] == "object", name
        if "outputSchema" in tool:
            jsonschema.Draft202012Validator.check_schema(tool["outputSchema"])
            assert tool["outputSchema"]["type"] == "object", name
    for name in TOOL_NAMES:
        method = METHOD_OF.get(name.removeprefix("tickets_"), "GET")
        annotations = tools[name]["annotations"]
        hints = (annotations["readOnlyHint"], annotations["destructiveHint"], annotations["idempotentHint"])
        assert hints == HINTS_BY_METHOD[method], (name, annotations)
        assert annotations["openWorldHint"] is False, name  # open_world = false
    assert tools["wrong_get_ticket"]["annotations"]["openWorldHint"] is True  # the default
    listing = tools["tickets_list_tickets"]["inputSchema"]["properties"]
    assert {"page", "per_page", "status", "labels", "filter"} <= set(listing)
    assert listing["labels"]["type"] == "array"
    create = tools["tickets_create_ticket"]["inputSchema"]
    assert {"title", "labels", "customer", "comments"} <= set(create["properties"])
    assert "title" in create["required"]
    # The recursive Comment stays a reference into $defs, never expanded forever.
    assert any(key for key in create.get("$defs", {}) if "Comment" in key), create


# -- calls ----------------------------------------------------------------------------------------------------


def new_ticket(title: str) -> dict[str, Any]:
    reply = {"author": "bo", "text": "seen it", "replies": []}
    return {
        "title": title,
        "description": "The printer on floor 3 is out of toner.",
        "priority": "high",
        "labels": ["e2e", "printer"],
        "customer": {"id": 7, "name": "Acme"},
        "comments": [{"author": "ada", "text": "first", "replies": [reply]}],
    }


@pytest.mark.parametrize("era", [LEGACY, MODERN])
def test_create_get_list_update_replace_delete_send_what_the_spec_says(env: Env, era: str) -> None:
    title = f"toner {uuid.uuid4().hex[:8]}"
    body = new_ticket(title)
    api = env.api

    async def scenario() -> None:
        http, mcp = client(env, era)
        async with http, mcp:
            created = ok(await mcp.call_tool("tickets_create_ticket", body))
            ticket_id = created["id"]
            [sent] = [r for r in api.to("POST", "/tickets") if r.body and r.json().get("title") == title]
            assert sent.json() == body
            assert sent.header("content-type", "").startswith("application/json")
            assert sent.header("authorization") == f"Bearer {BEARER_TOKEN}"
            assert created == {**body, "id": ticket_id, "status": "open"}

            assert ok(await mcp.call_tool("tickets_get_ticket", {"ticket_id": ticket_id})) == created

            listed = ok(
                await mcp.call_tool(
                    "tickets_list_tickets",
                    {"per_page": 5, "status": "open", "labels": ["e2e", "printer"], "filter": {"priority": "high"}},
                )
            )
            assert ticket_id in [item["id"] for item in listed["items"]]
            query = sorted(api.to("GET", "/tickets")[-1].query_pairs())
            expected = [("filter[priority]", "high"), ("labels", "e2e"), ("labels", "printer")]
            assert query == sorted([*expected, ("per_page", "5"), ("status", "open")])

            # The patch body has minProperties: 1, a rule about the whole object, so it is one `body` argument
            # (docs/openapi.md, "Inputs").
            patched = ok(
                await mcp.call_tool("tickets_update_ticket", {"ticket_id": ticket_id, "body": {"status": "pending"}})
            )
            assert patched["status"] == "pending"
            assert api.to("PATCH", f"/tickets/{ticket_id}")[-1].json() == {"status": "pending"}

            replaced = ok(await mcp.call_tool("tickets_replace_ticket", {"ticket_id": ticket_id, "title": "new"}))
            assert (replaced["title"], replaced["labels"]) == ("new", [])
            assert api.to("PUT", f"/tickets/{ticket_id}")[-1].json() == {"title": "new"}

            deleted = await mcp.call_tool("tickets_delete_ticket", {"ticket_id": ticket_id})
            assert deleted.is_error is False, text_of(deleted)
            gone = await mcp.call_tool("tickets_get_ticket", {"ticket_id": ticket_id})
            assert gone.is_error is True
            assert f"no ticket {ticket_id}" in text_of(gone)

    run_scenario(scenario, timeout=90)


def test_a_header_parameter_and_a_cookie_parameter_are_sent_as_such(env: Env) -> None:
    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult]:
        http, mcp = client(env)
        async with http, mcp:
            tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
            [request_id_arg] = [
                p for p in tools["tickets_list_tickets"].input_schema["properties"] if "request" in p.lower()
            ]
            listed = await mcp.call_tool("tickets_list_tickets", {request_id_arg: "req-42"})
            prefs = await mcp.call_tool("tickets_get_preferences", {"theme": "dark"})
            return listed, prefs

    listed, prefs = run_scenario(scenario)
    ok(listed)
    assert env.api.to("GET", "/tickets")[-1].header("x-request-id") == "req-42"
    assert ok(prefs) == {"theme": "dark"}
    assert env.api.to("GET", "/preferences")[-1].header("cookie") == "theme=dark"


def test_form_and_multipart_bodies_are_encoded_as_the_spec_says(env: Env) -> None:
    async def scenario() -> tuple[Any, Any]:
        http, mcp = client(env)
        async with http, mcp:
            customer = ok(await mcp.call_tool("tickets_create_customer", {"name": "Ann & Co", "vip": True}))
            ticket = ok(await mcp.call_tool("tickets_create_ticket", {"title": "with file"}))
            arguments = {"ticket_id": ticket["id"], "file": "hello world\n", "filename": "notes.txt"}
            attached = ok(await mcp.call_tool("tickets_upload_attachment", arguments))
            return customer, attached

    customer, attached = run_scenario(scenario)
    assert customer["name"] == "Ann & Co" and customer["vip"] is True
    [form] = [r for r in env.api.to("POST", "/customers") if b"Ann" in r.body]
    assert form.header("content-type", "").startswith("application/x-www-form-urlencoded")
    assert sorted(parse_qsl(form.body.decode())) == [("name", "Ann & Co"), ("vip", "true")]
    assert attached == {"filename": "notes.txt", "size": 12, "content_type": "text/plain"}
    upload = [r for r in env.api.received if r.path.endswith("/attachments")][-1]
    assert upload.header("content-type", "").startswith("multipart/form-data; boundary=")


def test_text_and_binary_responses_become_text_and_a_resource(env: Env) -> None:
    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult, int]:
        http, mcp = client(env)
        async with http, mcp:
            ticket = ok(await mcp.call_tool("tickets_create_ticket", {"title": "badge me"}))
            summary = await mcp.call_tool("tickets_get_ticket_summary", {"ticket_id": ticket["id"]})
            badge = await mcp.call_tool("tickets_get_ticket_badge", {"ticket_id": ticket["id"]})
            return summary, badge, ticket["id"]

    summary, badge, ticket_id = run_scenario(scenario)
    assert summary.is_error is False
    assert text_of(summary) == f"#{ticket_id} [open] badge me"
    assert badge.is_error is False, text_of(badge)
    [resource] = [item for item in badge.content if isinstance(item, types.EmbeddedResource)]
    assert isinstance(resource.resource, types.BlobResourceContents)
    assert resource.resource.mime_type == "image/png"
    assert base64.b64decode(resource.resource.blob) == PNG


def test_each_security_scheme_gets_its_own_credential(env: Env) -> None:
    async def scenario() -> tuple[Any, Any]:
        http, mcp = client(env)
        async with http, mcp:
            ok(await mcp.call_tool("tickets_create_customer", {"name": "Zed Ltd"}))
            customers = ok(await mcp.call_tool("tickets_list_customers", {"q": "zed"}))
            stats = ok(await mcp.call_tool("tickets_get_stats", {}))
            return customers, stats

    customers, stats = run_scenario(scenario)
    assert [c["name"] for c in customers] == ["Zed Ltd"]
    api_key_request = env.api.to("GET", "/customers")[-1]
    assert ("api_key", API_KEY) in api_key_request.query_pairs()
    assert api_key_request.header("authorization") is None
    basic = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    assert env.api.to("GET", "/admin/stats")[-1].header("authorization") == f"Basic {basic}"
    assert stats["customers"] >= 1


# -- errors ---------------------------------------------------------------------------------------------------


def test_api_errors_come_back_as_tool_errors_with_the_apis_message(env: Env) -> None:
    async def scenario() -> list[types.CallToolResult]:
        http, mcp = client(env)
        async with http, mcp:
            return [
                await mcp.call_tool("tickets_create_ticket", {"title": "bad", "labels": ["forbidden"]}),
                await mcp.call_tool("tickets_get_broken", {}),
                await mcp.call_tool("wrong_get_ticket", {"ticket_id": 1}),
                await mcp.call_tool("tickets_get_ticket", {"ticket_id": "one"}),
            ]

    invalid, broken, unauthorised, bad_argument = run_scenario(scenario)
    assert invalid.is_error is True
    assert "label 'forbidden' is reserved" in text_of(invalid)
    assert "labels[0]" in text_of(invalid)
    assert broken.is_error is True
    assert "500" in text_of(broken)
    assert len(env.api.to("GET", "/broken")) == 1, "a 500 is not retried"
    assert unauthorised.is_error is True
    assert "401" in text_of(unauthorised)
    assert "not-the-service-token" not in text_of(unauthorised)
    # A bad argument never reaches the API: the message names it.
    assert bad_argument.is_error is True
    assert "ticket_id" in text_of(bad_argument)
    assert not [r for r in env.api.received if r.path == "/api/tickets/one"]


def test_429_is_retried_after_the_retry_after_the_api_sent(env: Env) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    result = run_scenario(lambda: call(env, "tickets_check_busy", {"key": key}))
    assert ok(result) == {"key": key, "attempts": 2}
    assert len(env.api.to("GET", f"/busy/{key}")) == 2


# -- no passthrough -------------------------------------------------------------------------------------------


def test_the_clients_token_and_headers_never_reach_the_api(env: Env) -> None:
    # Calls of its own, so that this holds whichever tests ran before it.
    ok(run_scenario(lambda: call(env, "tickets_list_tickets", {"page": 1}, MODERN)))
    ok(run_scenario(lambda: call(env, "tickets_create_ticket", {"title": "no passthrough"})))
    assert env.api.received
    for request in env.api.received:
        seen = json.dumps([request.path, request.query, request.headers]) + request.body.decode("latin-1")
        assert env.token not in seen, request
        assert INBOUND_MARKER not in seen, request
        names = {name for name, _ in request.headers}
        assert not {n for n in names if n.startswith("mcp-") or n == "x-client-secret"}, names
        authorization = request.header("authorization")
        assert (
            authorization is None
            or BEARER_TOKEN in authorization
            or authorization.startswith("Basic ")
            or ("not-the-service-token" in authorization)
        ), authorization


# -- search mode ----------------------------------------------------------------------------------------------


def test_search_mode_finds_describes_and_calls_an_operation(env: Env) -> None:
    title = f"via search {uuid.uuid4().hex[:6]}"

    async def scenario() -> tuple[types.CallToolResult, types.CallToolResult, types.CallToolResult]:
        http, mcp = client(env, MODERN)
        async with http, mcp:
            found = await mcp.call_tool("big_search_operations", {"query": "create a new ticket"})
            described = await mcp.call_tool("big_describe_operation", {"name": "create_ticket"})
            called = await mcp.call_tool("big_call_operation", {"name": "create_ticket", "arguments": {"title": title}})
            return found, described, called

    found, described, called = run_scenario(scenario)
    assert found.is_error is False, text_of(found)
    found_names = [operation["name"] for operation in ok(found)["operations"]]
    assert found_names[0] == "create_ticket", found_names
    description = ok(described)
    assert (description["method"], description["path"]) == ("POST", "/tickets")
    assert "title" in description["inputSchema"]["properties"]
    assert called.is_error is False, text_of(called)
    [sent] = [r for r in env.api.to("POST", "/tickets") if r.json().get("title") == title]
    assert sent.json() == {"title": title}
    assert sent.header("authorization") == f"Bearer {BEARER_TOKEN}"


# -- configuration errors -------------------------------------------------------------------------------------


def test_a_missing_token_variable_stops_the_start_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(
        f'[store]\nurl = "sqlite:///{tmp_path / "pb.db"}"\n'
        f'[[connectors]]\nname = "tickets"\ntype = "openapi"\nspec = "{SPEC_PATH}"\n'
        'base_url = "http://127.0.0.1:9/api"\nauth = { type = "bearer", token_env = "PATCHBAY_TEST_NO_SUCH_TOKEN" }\n',
        encoding="utf-8",
    )
    environ = {key: value for key, value in os.environ.items() if key != "PATCHBAY_TEST_NO_SUCH_TOKEN"}
    started = patchbay_cli("serve", "-c", str(config), "--port", "0", cwd=tmp_path, env=environ)
    assert started.returncode == 2, started.describe()
    output = started.stdout + started.stderr
    assert "connectors[tickets]" in output and "auth.token_env" in output, started.describe()
    assert "PATCHBAY_TEST_NO_SUCH_TOKEN" in output, started.describe()
