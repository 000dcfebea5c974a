"""[[limits]] on resources/read and prompts/get through the real dispatch path, and Retry-After on HTTP: the
Streamable HTTP answers of both eras and the legacy /messages, read by a real HTTP client from a real server.

Rates in the dispatch tests run on an injected clock, so they count calls, never wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import JSON_POST, call_modern, live_server, open_session, parse_sse, request
from tests.support.limits import READS, TOOLS, tools_module

from patchbay.app import Runtime
from patchbay.auth.principal import Principal
from patchbay.errors import RpcError
from patchbay.gate.limits import RETRY_META, Limits
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
ADA = Principal("user:ada", "user", frozenset({"mcp"}), username="ada", client_id="c-1")


def config(limits: list[dict[str, Any]]) -> dict[str, Any]:
    connectors = [
        {"name": "crm", "type": "python", "path": str(TOOLS), "prefix": ""},
        {"name": "docs", "type": "python", "path": str(READS), "prefix": ""},
    ]
    return {"connectors": connectors, "limits": limits}


@contextlib.asynccontextmanager
async def runtime_with(limits: list[dict[str, Any]]) -> AsyncIterator[Runtime]:
    runtime = Runtime(from_dict(config(limits), source="limits.toml"))
    assert isinstance(runtime.dispatcher.limits, Limits)
    runtime.dispatcher.limits.clock = lambda: 1000.0  # a clock that never moves: budgets only drain
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def read(runtime: Runtime, method: str, name: str) -> dict[str, Any] | RpcError:
    """The result of one resources/read (``name`` a URI) or prompts/get, or the JSON-RPC error refusing it."""
    params = {"uri": name} if method == "resources/read" else {"name": name, "arguments": {"topic": "q3"}}
    try:
        return await runtime.dispatcher.dispatch(
            method, params, CallScope("legacy", "2025-11-25", 1, method, {}, principal=ADA)
        )
    except RpcError as exc:
        return exc


async def ran(runtime: Runtime, count: int, method: str, name: str) -> list[bool]:
    return [not isinstance(await read(runtime, method, name), RpcError) for _ in range(count)]


async def call_tool(runtime: Runtime, name: str, **args: Any) -> dict[str, Any]:
    scope = CallScope("legacy", "2025-11-25", 1, "tools/call", {}, principal=ADA)
    return await runtime.dispatcher.dispatch("tools/call", {"name": name, "arguments": args}, scope)


async def test_a_rate_on_resource_uris_refuses_reads_over_it_and_leaves_tools_alone() -> None:
    async with runtime_with([{"id": "pages", "per": "user", "resources": ["docs://pages/*"], "rate": "2/hour"}]) as rt:
        assert await ran(rt, 3, "resources/read", "docs://pages/intro") == [True, True, False]
        refused = await read(rt, "resources/read", "docs://pages/other")
        assert isinstance(refused, RpcError)
        assert refused.message == (
            "'docs://pages/other' was not run: rate limited by pages (2 calls/hour per user); retry after 1800 s."
        )
        assert refused.data == {RETRY_META: 1_800_000}
        assert await ran(rt, 3, "resources/read", "docs://report") == [True] * 3  # another URI
        assert [(await call_tool(rt, "lookup"))["isError"] for _ in range(3)] == [False] * 3  # no tools named
        assert tools_module("docs", "reads").RAN["page"] == 2  # the refused reads never ran


async def test_a_rate_on_prompts_refuses_prompts_over_it() -> None:
    async with runtime_with([{"per": "user", "prompts": ["bri*"], "rate": "1/minute"}]) as rt:
        assert await ran(rt, 2, "prompts/get", "brief") == [True, False]
        assert await ran(rt, 2, "resources/read", "docs://report") == [True, True]
        assert tools_module("docs", "reads").RAN["brief"] == 1


async def test_a_connector_concurrency_cap_covers_its_resources_and_prompts() -> None:
    async with runtime_with([{"per": "connector", "connectors": ["docs"], "concurrency": 1}]) as rt:
        docs = tools_module("docs", "reads")
        first = asyncio.create_task(read(rt, "resources/read", "docs://held"))
        deadline = time.monotonic() + 10
        while docs.HOLDING != ["held"]:
            assert time.monotonic() < deadline, "the first read never started"
            await asyncio.sleep(0.005)
        for method, name in [("resources/read", "docs://report"), ("prompts/get", "brief")]:
            refused = await read(rt, method, name)
            assert isinstance(refused, RpcError), method
            assert "too many calls at once: limits[0] (1 concurrent call per connector) is full" in refused.message
        assert (await call_tool(rt, "lookup"))["isError"] is False  # crm's tools are outside docs' cap
        docs.RELEASE.set()
        assert not isinstance(await first, RpcError)
        assert await ran(rt, 2, "prompts/get", "brief") == [True, True]  # the slot came back


async def test_a_cap_that_names_tools_leaves_the_connectors_resources_alone() -> None:
    async with runtime_with([{"per": "connector", "tools": ["lookup"], "concurrency": 1}]) as rt:
        limits = rt.dispatcher.limits
        assert isinstance(limits, Limits) and limits.limits[0].connector_wide is False
        assert await ran(rt, 2, "resources/read", "docs://report") == [True, True]


# -- Retry-After over real HTTP ----------------------------------------------------------------------------------


def _retry_after(response: httpx.Response, retry_ms: int) -> int:
    seconds = int(response.headers["retry-after"])
    assert seconds == max(1, math.ceil(retry_ms / 1000)), (seconds, retry_ms)
    return seconds


async def test_over_http_a_refused_request_says_retry_after_in_its_eras_way(tmp_path: Path) -> None:
    limits = [
        {"per": "user", "tools": ["lookup"], "rate": "1/hour"},
        {"per": "user", "resources": ["docs://report"], "rate": "1/hour"},
    ]
    settings = from_dict({**config(limits), "store": {"url": "sqlite:///:memory:"}}, base_dir=tmp_path)
    with live_server(settings) as server:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as client:
            # 2026-07-28: a tool refusal is a tool result the model sees (200); the resources/read error is 429.
            first = await call_modern(client, "tools/call", {"name": "lookup", "arguments": {}})
            assert first.status_code == 200 and "retry-after" not in first.headers
            tool = await call_modern(client, "tools/call", {"name": "lookup", "arguments": {}})
            assert tool.status_code == 200 and tool.json()["result"]["isError"] is True
            assert 3590 <= _retry_after(tool, tool.json()["result"]["_meta"][RETRY_META]) <= 3600
            assert (await call_modern(client, "resources/read", {"uri": "docs://report"})).status_code == 200
            resource = await call_modern(client, "resources/read", {"uri": "docs://report"})
            assert resource.status_code == 429, resource.text
            error = resource.json()["error"]
            assert "rate limited" in error["message"]
            _retry_after(resource, error["data"][RETRY_META])

            # 2025 era: every JSON-RPC answer rides on 200 (its SDK clients throw on other statuses).
            session = await open_session(client)
            legacy_tool = await client.post("/mcp", json=request("tools/call", {"name": "lookup"}), headers=session)
            assert legacy_tool.status_code == 200 and legacy_tool.json()["result"]["isError"] is True
            _retry_after(legacy_tool, legacy_tool.json()["result"]["_meta"][RETRY_META])
            body = request("resources/read", {"uri": "docs://report"})
            legacy_read = await client.post("/mcp", json=body, headers=session)
            assert legacy_read.status_code == 200 and "rate limited" in legacy_read.json()["error"]["message"]
            _retry_after(legacy_read, legacy_read.json()["error"]["data"][RETRY_META])

            # A client that accepts only SSE gets the header on its one-event stream.
            sse_only = {**session, "accept": "text/event-stream"}
            streamed = await client.post("/mcp", json=request("tools/call", {"name": "lookup"}), headers=sse_only)
            assert streamed.headers["content-type"].startswith("text/event-stream")
            result = json.loads(parse_sse(streamed.text)[-1].data)["result"]
            _retry_after(streamed, result["_meta"][RETRY_META])


async def test_legacy_messages_are_accepted_before_they_are_judged_so_the_retry_time_rides_in_the_result(
    tmp_path: Path,
) -> None:
    settings = from_dict(
        {**config([{"per": "user", "tools": ["lookup"], "rate": "1/hour"}]), "store": {"url": "sqlite:///:memory:"}},
        base_dir=tmp_path,
    )
    with live_server(settings) as server:
        base = f"http://127.0.0.1:{server.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as client, client.stream("GET", "/sse") as stream:
            lines = stream.aiter_lines()
            endpoint = await _event_data(lines, "endpoint")
            answers = []
            for n in (1, 2):
                posted = await client.post(
                    endpoint, json=request("tools/call", {"name": "lookup"}, f"m{n}"), headers=JSON_POST
                )
                assert posted.status_code == 202 and "retry-after" not in posted.headers
                answers.append(await _event_data(lines, "message"))
    results = [json.loads(a)["result"] for a in answers]
    assert [r["isError"] for r in results] == [False, True]
    assert 3_590_000 <= results[1]["_meta"][RETRY_META] <= 3_600_000


async def _event_data(lines: AsyncIterator[str], event: str) -> str:
    """The data of the next SSE event named ``event`` (others are skipped)."""
    name = None
    async for line in lines:
        if line.startswith("event:"):
            name = line.partition(":")[2].strip()
        elif line.startswith("data:") and name == event:
            return line.partition(":")[2].strip()
    raise AssertionError(f"the stream ended before a {event!r} event")
