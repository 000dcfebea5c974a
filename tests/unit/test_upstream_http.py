"""The upstream client over Streamable HTTP (both eras) and legacy HTTP+SSE, against the official SDK's server on
loopback: era detection once per upstream, progress and logs tied to their call, MRTR surfaced as InputNeeded, and
no handshake per call."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import pytest
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import InputRequiredResult
from tests.support.loopback_asgi import PostTap, serving

from patchbay.upstream import InputNeeded, Target, UpstreamPool
from patchbay.upstream.target import Protocol

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:The logging capability is deprecated")]
CLIENT = {"name": "patchbay-test", "version": "0"}
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def sdk_server() -> MCPServer:
    server = MCPServer("sdk-upstream")

    @server.tool()
    async def add(a: int, b: int, ctx: Context) -> int:
        """Adds, reporting progress and a log line on the way."""
        await ctx.report_progress(1, 2)
        await ctx.info("adding")
        return a + b

    @server.tool()
    async def confirm(ctx: Context) -> str | InputRequiredResult:
        """Asks the client first (MRTR in 2026-07-28)."""
        if ctx.input_responses:
            return f"answered {sorted(ctx.input_responses)} with {ctx.request_state}"
        ask = {
            "method": "elicitation/create",
            "params": {"mode": "form", "message": "Sure?", "requestedSchema": {"type": "object", "properties": {}}},
        }
        return InputRequiredResult(input_requests={"ok": ask}, request_state="state-1")  # type: ignore[dict-item]

    return server


class Counting(PostTap):
    """Counts the JSON-RPC methods POSTed to the app it wraps."""

    def __init__(self, app: ASGI) -> None:
        super().__init__(app)
        self.methods: Counter[str] = Counter()

    def seen(self, body: bytes) -> None:
        with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
            self.methods[orjson.loads(body).get("method") or "response"] += 1


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Counting]]:
    counting = Counting(sdk_server().streamable_http_app())
    async with serving(counting) as base:
        yield f"{base}/mcp", counting


def pool_for(url: str, protocol: Protocol = "auto", kind: str = "http") -> UpstreamPool:
    async def ignore(method: str, params: dict[str, Any]) -> None:
        pass

    return UpstreamPool(
        "sdk",
        Target(kind, url=url, protocol=protocol),  # type: ignore[arg-type]
        client_info=CLIENT,
        capabilities={},
        on_notification=ignore,
    )


async def test_auto_detects_a_2026_upstream_once_and_never_initialises(upstream: tuple[str, Counting]) -> None:
    url, counting = upstream
    pool = pool_for(url)
    try:
        for identity in ("", "user:1", "user:2"):
            answer = await pool.call(
                "tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}, identity=identity, timeout=10
            )
            assert answer["structuredContent"] == {"result": 5}
        session = await pool.session()
        assert (session.protocol_version, session.server_info["name"]) == ("2026-07-28", "sdk-upstream")
        assert counting.methods["server/discover"] == 1 and counting.methods["initialize"] == 0
        assert counting.methods["tools/call"] == 3
    finally:
        await pool.close()


async def test_a_pinned_2025_upstream_is_initialised_once_per_identity_and_reused(
    upstream: tuple[str, Counting],
) -> None:
    url, counting = upstream
    pool = pool_for(url, "2025-11-25")
    try:
        for _ in range(5):
            await pool.call("tools/list", {}, timeout=10)
        await pool.call("tools/list", {}, identity="user:1", timeout=10)
        assert counting.methods["initialize"] == 2 and counting.methods["notifications/initialized"] == 2
        assert counting.methods["server/discover"] == 0
        assert (await pool.session()).protocol_version == "2025-11-25"
    finally:
        await pool.close()


async def test_progress_and_logs_on_a_2025_response_stream_reach_their_call(upstream: tuple[str, Counting]) -> None:
    url, _ = upstream
    pool = pool_for(url, "2025-11-25")
    progress: list[dict[str, Any]] = []
    logs: list[dict[str, Any]] = []

    async def on_progress(params: dict[str, Any]) -> None:
        progress.append(params)

    async def on_message(method: str, params: dict[str, Any]) -> None:
        logs.append(params)

    try:
        answer = await pool.call(
            "tools/call",
            {"name": "add", "arguments": {"a": 1, "b": 1}, "_meta": {"progressToken": "theirs"}},
            timeout=10,
            on_progress=on_progress,
            on_message=on_message,
        )
        assert answer["structuredContent"] == {"result": 2}
        assert [(p["progress"], p["total"]) for p in progress] == [(1, 2)]
        assert progress[0]["progressToken"] != "theirs"
        assert [(entry["level"], entry["data"]) for entry in logs] == [("info", "adding")]
    finally:
        await pool.close()


async def test_input_required_from_a_2026_upstream_is_input_needed_and_the_retry_completes(
    upstream: tuple[str, Counting],
) -> None:
    url, _ = upstream
    pool = pool_for(url)
    try:
        with pytest.raises(InputNeeded) as needed:
            await pool.call("tools/call", {"name": "confirm", "arguments": {}}, timeout=10)
        assert needed.value.requests["ok"]["method"] == "elicitation/create"
        assert needed.value.request_state  # the SDK seals the tool's state; it comes back as sent
        retry = {
            "name": "confirm",
            "arguments": {},
            "inputResponses": {"ok": {"action": "accept", "content": {}}},
            "requestState": needed.value.request_state,
        }
        answer = await pool.call("tools/call", retry, timeout=10)
        assert answer["content"][0]["text"] == "answered ['ok'] with state-1"
    finally:
        await pool.close()


async def test_legacy_sse_upstream_answers_on_its_stream() -> None:
    counting = Counting(sdk_server().sse_app())
    async with serving(counting) as base:
        pool = pool_for(f"{base}/sse", kind="sse")
        try:
            for _ in range(3):
                answer = await pool.call("tools/call", {"name": "add", "arguments": {"a": 4, "b": 5}}, timeout=10)
                assert answer["structuredContent"] == {"result": 9}
            session = await pool.session()
            assert session.protocol_version in ("2025-11-25", "2024-11-05") and not session.modern
            assert counting.methods["initialize"] == 1 and counting.methods["server/discover"] == 0
        finally:
            await pool.close()
