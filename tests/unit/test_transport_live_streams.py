"""Streams that need a real socket: 2026-07-28 subscriptions/listen and cancellation by closing the stream.

reference/mcp-requirements.md §2.6 items 9 and 10, §3.2; conformance-scenarios §4.1 step 13.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2 as httpx
from fixtures.wire import (
    JSON_POST,
    TOOLS_MODULE,
    initialize_body,
    live_server,
    modern_request,
    request,
    settings_for,
)

SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


async def next_message(lines: Any) -> dict[str, Any]:
    """The next SSE event's JSON data, skipping keep-alive comments."""
    data: list[str] = []
    async for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            return dict(json.loads("\n".join(data)))
    raise AssertionError("the stream ended")


@contextlib.asynccontextmanager
async def listening(
    http: httpx.AsyncClient, url: str, notifications: dict[str, bool], **request: Any
) -> AsyncIterator[tuple[httpx.Response, Any, dict[str, Any]]]:
    """A subscriptions/listen stream once it is acknowledged: the response, its lines and the acknowledgement."""
    body, headers = modern_request("subscriptions/listen", {"notifications": notifications}, **request)
    async with http.stream("POST", url, json=body, headers=headers) as stream:
        lines = stream.aiter_lines()
        with anyio.fail_after(5):
            ack = await next_message(lines)
        assert ack["method"] == "notifications/subscriptions/acknowledged"
        yield stream, lines, ack


def test_listen_acknowledges_first_and_tags_list_changes_with_the_subscription(tmp_path: Path) -> None:
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                listen = listening(http, server.url, {"toolsListChanged": True}, request_id="sub-1")
                async with listen as (stream, lines, ack):
                    assert stream.status_code == 200
                    assert stream.headers["content-type"].startswith("text/event-stream")
                    assert stream.headers["x-accel-buffering"] == "no"
                    assert ack["params"]["_meta"][SUBSCRIPTION_ID]
                    trigger, trigger_headers = modern_request("tools/call", {"name": "toggle_tool", "arguments": {}})
                    toggled = await http.post(server.url, json=trigger, headers=trigger_headers)
                    assert toggled.json()["result"]["content"][0]["text"] == "toggled"
                    with anyio.fail_after(5):
                        changed = await next_message(lines)
                    assert changed["method"] == "notifications/tools/list_changed"
                    assert changed["params"]["_meta"][SUBSCRIPTION_ID] == ack["params"]["_meta"][SUBSCRIPTION_ID]
                    assert "id" not in changed

        anyio.run(scenario)


def test_a_2025_era_call_that_changes_the_tool_list_tells_the_listeners(tmp_path: Path) -> None:
    """ctx.lists_changed() works from a 2025-era call as well: the server learns of it and open streams are told."""
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:

        async def scenario() -> None:
            async with (
                httpx.AsyncClient(timeout=10) as http,
                listening(http, server.url, {"toolsListChanged": True}) as (_, lines, _ack),
            ):
                trigger = request("tools/call", {"name": "toggle_tool", "arguments": {}}, "toggle-25")
                toggled = await http.post(server.url, json=trigger, headers=JSON_POST)
                assert toggled.json()["result"]["content"][0]["text"] == "toggled"
                with anyio.fail_after(5):
                    changed = await next_message(lines)
                assert changed["method"] == "notifications/tools/list_changed"

        anyio.run(scenario)


def test_listen_sends_only_the_kinds_asked_for(tmp_path: Path) -> None:
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:

        async def scenario() -> None:
            async with (
                httpx.AsyncClient(timeout=10) as http,
                listening(http, server.url, {"promptsListChanged": True}) as (_, lines, _ack),
            ):
                trigger, trigger_headers = modern_request("tools/call", {"name": "toggle_tool", "arguments": {}})
                await http.post(server.url, json=trigger, headers=trigger_headers)
                # A tools change must not reach this stream: it gets keep-alives, then we leave.
                with anyio.move_on_after(1.0):
                    message = await next_message(lines)
                    raise AssertionError(f"unexpected notification {message}")

        anyio.run(scenario)


def test_closing_the_stream_cancels_a_2026_call(tmp_path: Path) -> None:
    """§2.6 item 10: on HTTP, the client closing the response stream is cancellation."""
    with live_server(settings_for(tmp_path)) as server:
        tools = sys.modules[TOOLS_MODULE]

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as group:
                body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}})
                group.start_soon(functools.partial(http.post, server.url, json=body, headers=headers))
                started = await anyio.to_thread.run_sync(tools.HANG_STARTED.wait, 5.0)
                assert started, "the tool never started"
                group.cancel_scope.cancel()  # drops the connection mid-request
            cancelled = await anyio.to_thread.run_sync(tools.HANG_CANCELLED.wait, 5.0)
            assert cancelled, "the server kept running a call whose client had gone"

        anyio.run(scenario)


def test_a_sessions_get_stream_is_primed_kept_alive_and_told_of_list_changes(tmp_path: Path) -> None:
    """docs/protocol.md: a 2025-11-25 GET stream starts with a priming event (``retry: 1000``), sends keep-alive
    comments while idle (server.sse_keepalive_seconds) and carries the server's list_changed notifications."""
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                opened = await http.post(server.url, json=initialize_body(), headers=JSON_POST)
                session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
                await http.post(
                    server.url,
                    json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers={**JSON_POST, **session},
                )
                async with http.stream("GET", server.url, headers={**session, "accept": "text/event-stream"}) as get:
                    assert get.status_code == 200
                    lines = get.aiter_lines()
                    with anyio.fail_after(5):
                        assert [await anext(lines) for _ in range(3)][1] == "retry: 1000"
                        while await anext(lines) != ": keep-alive":
                            pass
                    trigger = request("tools/call", {"name": "toggle_tool", "arguments": {}}, "toggle-get")
                    toggled = await http.post(server.url, json=trigger, headers={**JSON_POST, **session})
                    assert toggled.json()["result"]["content"][0]["text"] == "toggled"
                    with anyio.fail_after(5):
                        changed = await next_message(lines)
                    assert changed["method"] == "notifications/tools/list_changed"

        anyio.run(scenario)
