"""2025-03-26 batches cannot amplify: the count is capped (server.max_batch_size) and so is the response
(server.max_batch_response_bytes); requests past the response cap are answered with an error and are not run.

reference/mcp-requirements.md R-017; the hardening issue's "Amplification".
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import TOOLS_MODULE, assert_rpc_error, client_for, open_session, request, running, settings_for

pytestmark = pytest.mark.anyio

RESPONSE_CAP = 2048


@contextlib.asynccontextmanager
async def batch_session(tmp: Path, **server: Any) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    async with running(settings_for(tmp, **server)) as app, client_for(app) as http:
        yield http, await open_session(http, "2025-03-26")


def echo(text: str, request_id: int) -> dict[str, Any]:
    return request("tools/call", {"name": "echo", "arguments": {"text": text}}, request_id)


async def test_a_batch_over_the_count_is_one_json_rpc_error_naming_the_setting(tmp_path: Path) -> None:
    async with batch_session(tmp_path, max_batch_size=3) as (http, headers):
        refused = await http.post("/mcp", json=[request("ping", {}, i) for i in range(4)], headers=headers)
        error = assert_rpc_error(refused, 400, -32600)  # one object, not an array of errors
        assert "4 messages" in error["message"] and "server.max_batch_size" in error["message"]
        served = await http.post("/mcp", json=[request("ping", {}, i) for i in range(3)], headers=headers)
        assert served.status_code == 200
        assert sorted(a["id"] for a in served.json()) == [0, 1, 2]


async def test_the_default_count_cap_refuses_a_small_request_asking_for_thousands_of_answers(tmp_path: Path) -> None:
    async with batch_session(tmp_path) as (http, headers):
        many = b"[" + b",".join(b'{"jsonrpc":"2.0","id":%d,"method":"tools/list"}' % i for i in range(2000)) + b"]"
        assert len(many) < 100_000
        response = await http.post("/mcp", content=many, headers=headers)
        assert_rpc_error(response, 400, -32600)
        assert len(response.content) < 1000


async def test_answers_past_the_response_cap_are_errors_and_their_requests_do_not_run(tmp_path: Path) -> None:
    async with batch_session(tmp_path, max_batch_response_bytes=RESPONSE_CAP) as (http, headers):
        tools = sys.modules[TOOLS_MODULE]
        toggled_before = "dynamic" in vars(tools)
        batch = [
            echo("a" * 600, 1),
            echo("b" * 600, 2),
            echo("c" * 900, 3),  # runs, but its answer would cross the cap
            request("tools/call", {"name": "toggle_tool", "arguments": {}}, 4),  # must not run
            {"jsonrpc": "2.0", "method": "notifications/initialized"},
            echo("e", 5),
        ]
        response = await http.post("/mcp", json=batch, headers=headers)
        assert response.status_code == 200, response.text
        assert len(response.content) < RESPONSE_CAP + 3 * 400  # the cap plus one short error per request past it
        answers = {a["id"]: a for a in response.json()}
        assert sorted(answers) == [1, 2, 3, 4, 5]
        assert answers[1]["result"]["content"][0]["text"] == "a" * 600
        assert answers[2]["result"]["content"][0]["text"] == "b" * 600
        assert "this request ran" in answers[3]["error"]["message"]
        for later in (4, 5):
            assert answers[later]["error"]["message"].startswith("Not run")
            assert "server.max_batch_response_bytes" in answers[later]["error"]["message"]
            assert answers[later]["error"]["data"] == {"limit": RESPONSE_CAP}
        assert ("dynamic" in vars(tools)) == toggled_before  # toggle_tool did not run


async def test_a_batch_within_the_response_cap_is_answered_in_full(tmp_path: Path) -> None:
    async with batch_session(tmp_path, max_batch_response_bytes=RESPONSE_CAP) as (http, headers):
        response = await http.post("/mcp", json=[echo("x" * 100, i) for i in range(5)], headers=headers)
        assert [a["result"]["content"][0]["text"] for a in response.json()] == ["x" * 100] * 5


async def test_a_batched_call_that_changes_the_tool_list_reaches_the_runtime(tmp_path: Path) -> None:
    """ctx.lists_changed() works from a call inside a batch too: the catalog is rebuilt, so tools/list shows it."""
    async with batch_session(tmp_path) as (http, headers):
        tools = sys.modules[TOOLS_MODULE]
        had = "dynamic" in vars(tools)
        toggle = request("tools/call", {"name": "toggle_tool", "arguments": {}}, 1)
        try:
            answers = (await http.post("/mcp", json=[toggle, request("ping", {}, 2)], headers=headers)).json()
            assert {a["id"]: a for a in answers}[1]["result"]["content"][0]["text"] == "toggled"
            listed = await http.post("/mcp", json=request("tools/list", {}, 3), headers=headers)
            assert ("dynamic" in [t["name"] for t in listed.json()["result"]["tools"]]) is not had
        finally:
            if ("dynamic" in vars(tools)) is not had:  # leave the shared tools module as it was
                await http.post("/mcp", json=toggle, headers=headers)
