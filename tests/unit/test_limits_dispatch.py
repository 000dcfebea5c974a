"""[[limits]], timeouts and result caps through the real dispatch path (a started runtime, python connectors).

Rates run on an injected clock, so each test counts calls against the budget, never wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fixtures.wire import META_INFO, call_modern, client_for, running
from tests.support.clock import Clock
from tests.support.limits import TOOLS, tools_module
from tests.support.waiting import until

from patchbay.app import Runtime
from patchbay.auth.principal import Principal
from patchbay.gate.calls import Call
from patchbay.gate.limits import RETRY_META, Limits
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio


def config(limits: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    connectors = [
        {"name": "crm", "type": "python", "path": str(TOOLS), "prefix": "", **extra.pop("crm", {})},
        {"name": "other", "type": "python", "path": str(TOOLS), "prefix": "other_"},
    ]
    return {"connectors": connectors, "limits": limits, **extra}


@contextlib.asynccontextmanager
async def runtime_with(limits: list[dict[str, Any]], **extra: Any) -> AsyncIterator[tuple[Runtime, Clock]]:
    runtime = Runtime(from_dict(config(limits, **extra), source="limits.toml"))
    clock = Clock()
    assert isinstance(runtime.dispatcher.limits, Limits)
    runtime.dispatcher.limits.clock = clock
    await runtime.start()
    try:
        yield runtime, clock
    finally:
        await runtime.stop()


def person(name: str, client: str = "c-1") -> Principal:
    return Principal(f"user:{name}", "user", frozenset({"mcp"}), username=name, client_id=client)


async def call(
    runtime: Runtime, tool: str, who: Principal | None = None, client_info: dict[str, Any] | None = None, **args: Any
) -> dict[str, Any]:
    scope = CallScope("legacy", "2025-11-25", 1, "tools/call", {}, client_info=client_info, principal=who)
    return await runtime.dispatcher.dispatch("tools/call", {"name": tool, "arguments": args}, scope)


async def outcomes(runtime: Runtime, count: int, tool: str, who: Principal | None, **args: Any) -> list[bool]:
    """Whether each of ``count`` calls ran (True) or was refused by a limit (False)."""
    results = [await call(runtime, tool, who, **args) for _ in range(count)]
    return [not result["isError"] for result in results]


def refusal(result: dict[str, Any]) -> tuple[str, int]:
    assert result["isError"] is True
    return result["content"][0]["text"], result["_meta"][RETRY_META]


async def test_a_user_over_their_rate_is_refused_with_the_retry_time_while_the_rate_itself_goes_through() -> None:
    async with runtime_with([{"per": "user", "rate": "60/minute"}]) as (runtime, clock):
        ada, bob = person("ada"), person("bob")
        assert await outcomes(runtime, 60, "lookup", ada) == [True] * 60
        text, retry_ms = refusal(await call(runtime, "lookup", ada))
        assert text == "'lookup' was not run: rate limited by limits[0] (60 calls/minute per user); retry after 1 s."
        assert retry_ms == 1000
        assert await outcomes(runtime, 60, "other_lookup", bob) == [True] * 60  # bob has his own budget
        clock.now += 1.0  # one interval refills one call
        assert await outcomes(runtime, 2, "update", ada, id=1) == [True, False]
        assert tools_module("crm").RAN["lookup"] == 60  # the refused calls never ran
        assert tools_module("crm").RAN["update"] == 1


async def test_writes_per_client_are_counted_across_the_clients_users_and_reads_are_not() -> None:
    limits = [{"per": "client", "kinds": ["write"], "rate": "10/minute"}]
    async with runtime_with(limits) as (runtime, clock):
        ada, bob, ada_elsewhere = person("ada"), person("bob"), person("ada", client="c-2")
        assert await outcomes(runtime, 6, "update", ada, id=1) == [True] * 6
        assert await outcomes(runtime, 5, "other_update", bob, id=2) == [True] * 4 + [False]
        text, retry_ms = refusal(await call(runtime, "update", ada, id=3))
        assert "rate limited by limits[0] (10 calls/minute per client); retry after 6 s" in text
        assert retry_ms == 6000
        assert await outcomes(runtime, 20, "lookup", ada) == [True] * 20  # reads are outside the limit
        assert await outcomes(runtime, 11, "update", ada_elsewhere, id=4) == [True] * 10 + [False]
        clock.now += 6.0
        assert await outcomes(runtime, 2, "update", bob, id=5) == [True, False]


async def test_a_daily_quota_on_one_tool_allows_exactly_the_quota_per_user() -> None:
    limits = [{"id": "search-quota", "per": "user", "tools": ["search"], "rate": "1000/day"}]
    async with runtime_with(limits) as (runtime, clock):
        ada = person("ada")
        ran = await outcomes(runtime, 1005, "search", ada, query="q")
        assert ran == [True] * 1000 + [False] * 5
        text, retry_ms = refusal(await call(runtime, "search", ada, query="q"))
        assert "rate limited by search-quota (1,000 calls/day per user); retry after 87 s" in text
        assert retry_ms == 86_400
        assert await outcomes(runtime, 3, "other_search", ada, query="q") == [True] * 3  # another tool
        assert await outcomes(runtime, 3, "search", person("bob"), query="q") == [True] * 3
        clock.now += 86.4 * 2
        assert await outcomes(runtime, 3, "search", ada, query="q") == [True, True, False]


async def test_anonymous_callers_share_one_budget() -> None:
    async with runtime_with([{"per": "user", "rate": "3/hour"}]) as (runtime, _):
        assert await outcomes(runtime, 4, "lookup", None) == [True] * 3 + [False]


async def test_a_call_refused_by_a_later_limit_does_not_spend_the_earlier_budgets() -> None:
    limits = [{"per": "user", "rate": "5/minute"}, {"per": "tool", "tools": ["update"], "rate": "1/minute"}]
    async with runtime_with(limits) as (runtime, _):
        ada = person("ada")
        assert await outcomes(runtime, 4, "update", ada, id=1) == [True, False, False, False]
        assert await outcomes(runtime, 5, "lookup", ada) == [True] * 4 + [False]


async def test_a_limit_for_some_subjects_leaves_the_others_alone() -> None:
    limits = [{"per": "user", "subjects": ["user:ada"], "rate": "1/minute"}]
    async with runtime_with(limits) as (runtime, _):
        assert await outcomes(runtime, 2, "lookup", person("ada")) == [True, False]
        assert await outcomes(runtime, 5, "lookup", person("bob")) == [True] * 5


async def test_a_full_concurrency_cap_refuses_at_once_and_frees_its_slots_when_calls_end() -> None:
    limits = [{"per": "connector", "connectors": ["crm"], "concurrency": 2}]
    async with runtime_with(limits) as (runtime, _):
        crm, ada = tools_module("crm"), person("ada")
        held = [asyncio.create_task(call(runtime, "hold", ada, label=str(i))) for i in range(2)]
        await until(lambda: len(crm.HOLDING) == 2, "two calls holding crm's slots")
        text, retry_ms = refusal(await call(runtime, "lookup", person("bob")))
        assert text == (
            "'lookup' was not run: too many calls at once: limits[0] (2 concurrent calls per connector) is full; "
            "retry after 1 s."
        )
        assert retry_ms == 1000
        assert await outcomes(runtime, 3, "other_lookup", ada) == [True] * 3  # another connector's calls go on
        assert crm.RAN["lookup"] == 0
        crm.RELEASE.set()
        assert [(await task)["content"][0]["text"] for task in held] == ["released 0", "released 1"]
        assert await outcomes(runtime, 3, "lookup", ada) == [True] * 3
        limits_object = runtime.dispatcher.limits
        assert isinstance(limits_object, Limits) and len(limits_object.gauges) == 0  # nothing left counted


async def test_a_cancelled_call_gives_its_concurrency_slot_back() -> None:
    limits = [{"per": "tool", "tools": ["hold"], "concurrency": 1}]
    async with runtime_with(limits) as (runtime, _):
        crm = tools_module("crm")
        first = asyncio.create_task(call(runtime, "hold", person("ada"), label="first"))
        await until(lambda: crm.HOLDING == ["first"], "the first call to hold the slot")
        assert (await call(runtime, "hold", person("bob"), label="second"))["isError"] is True
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        second = asyncio.create_task(call(runtime, "hold", person("bob"), label="second"))
        await until(lambda: crm.HOLDING == ["second"], "the freed slot to be taken")
        crm.RELEASE.set()
        assert (await second)["isError"] is False


async def test_a_slow_call_is_cancelled_at_its_tool_timeout_and_the_caller_is_told() -> None:
    crm_keys = {"timeout_seconds": 30, "tool_timeouts": {"wait_forever": 0.05}}
    async with runtime_with([], crm=crm_keys) as (runtime, _):
        result = await call(runtime, "wait_forever", person("ada"))
        assert result["isError"] is True
        assert result["content"][0]["text"] == "'wait_forever' did not finish within 0.05 seconds and was stopped."
        assert tools_module("crm").CANCELLED == ["wait_forever"]  # the handler itself saw the cancellation


async def test_timeouts_come_from_the_tool_then_the_connector_then_the_gate() -> None:
    crm_keys = {"timeout_seconds": 30, "tool_timeouts": {"search": 120}}
    async with runtime_with([], crm=crm_keys, gate={"call_timeout_seconds": 45}) as (runtime, _):
        limits = runtime.dispatcher.limits
        assert isinstance(limits, Limits)

        def timeout(name: str, method: str = "tools/call") -> float | None:
            scope = CallScope("legacy", "2025-11-25", 1, method, {})
            return limits.timeout(Call(method, name, scope, {}, 0.0, 0.0))

        assert timeout("search") == 120 and timeout("lookup") == 30
        assert timeout("other_search") == 45 and timeout("file:///x", "resources/read") == 45


async def test_a_large_result_is_cut_for_chatgpt_and_claude_but_not_for_a_client_without_a_profile() -> None:
    async with runtime_with([]) as (runtime, _):
        ada = person("ada")
        for name, limit in [("openai-mcp", 100_000), ("Anthropic/ClaudeAI", 150_000)]:
            result = await call(runtime, "big", ada, {"name": name, "version": "1"}, size=400_000)
            assert result["_meta"]["patchbay/truncated"]["limitBytes"] == limit
            assert result["isError"] is False and len(result["content"]) == 2
            assert f"limit of {limit:,} bytes" in result["content"][1]["text"]
        whole = await call(runtime, "big", ada, {"name": "mcp-inspector", "version": "1"}, size=400_000)
        assert whole["content"] == [{"type": "text", "text": "x" * 400_000}] and "_meta" not in whole


async def test_a_structured_result_over_the_cap_is_an_error_that_says_what_was_left_out() -> None:
    async with runtime_with([], gate={"client_result_bytes": {"chatgpt": 20_000}}) as (runtime, _):
        result = await call(runtime, "big_rows", person("ada"), {"name": "openai-mcp"}, count=1000)
        assert result["isError"] is True and "structuredContent" not in result
        assert "limit of 20,000 bytes" in result["content"][-1]["text"]
        assert "structured result" in result["content"][-1]["text"]


async def test_over_http_a_chatgpt_named_client_gets_the_cut_result_and_others_the_whole(tmp_path: Any) -> None:
    settings = from_dict(config([{"per": "user", "rate": "2/minute"}]), base_dir=tmp_path)
    async with running(settings) as app, client_for(app) as client:
        chatgpt = {META_INFO: {"name": "openai-mcp", "version": "1.0.0"}}
        params = {"name": "big", "arguments": {"size": 300_000}}
        cut = (await call_modern(client, "tools/call", params, **chatgpt)).json()["result"]
        assert cut["_meta"]["patchbay/truncated"]["limitBytes"] == 100_000
        assert len(cut["content"][0]["text"]) < 100_000
        whole = (await call_modern(client, "tools/call", params)).json()["result"]
        assert whole["content"][0]["text"] == "x" * 300_000
        refused = (await call_modern(client, "tools/call", params)).json()["result"]
        assert refused["isError"] is True and 0 < refused["_meta"][RETRY_META] <= 30_000  # the real clock runs
        assert refused["content"][0]["text"].endswith("retry after 30 s.")
