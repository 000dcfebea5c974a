"""The mcp connector's proxy against a real upstream on loopback (the official SDK's server, pinned to the 2025
handshake era): an upstream is asked for progress only when the caller asked for it, and the progress it then
reports reaches the caller under the caller's own token."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import pytest
from mcp.server.mcpserver import Context as SdkContext
from mcp.server.mcpserver import MCPServer
from tests.support.loopback_asgi import PostTap, serving

from patchbay.connectors.mcp.bridge import Bridge
from patchbay.connectors.mcp.proxy import Proxy
from patchbay.context import Context
from patchbay.links.credentials import NoCredentials
from patchbay.protocol.scope import CallScope
from patchbay.upstream import Target, UpstreamPool

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:The logging capability is deprecated")]
Scope = MutableMapping[str, Any]
ASGI = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


def sdk_server() -> MCPServer:
    server = MCPServer("sdk-upstream")

    @server.tool()
    async def add(a: int, b: int, ctx: SdkContext) -> int:
        """Adds, reporting progress on the way (the SDK sends it only when the request had a token)."""
        await ctx.report_progress(1, 2)
        return a + b

    return server


class Recording(PostTap):
    """Keeps the ``params._meta`` of every ``tools/call`` POSTed to the app it wraps."""

    def __init__(self, app: ASGI) -> None:
        super().__init__(app)
        self.metas: list[dict[str, Any]] = []

    def seen(self, body: bytes) -> None:
        request = orjson.loads(body)
        if isinstance(request, dict) and request.get("method") == "tools/call":
            self.metas.append(request["params"].get("_meta") or {})


@pytest.fixture
async def proxy() -> AsyncIterator[tuple[Proxy, Recording]]:
    recording = Recording(sdk_server().streamable_http_app())

    async def ignore(method: str, params: dict[str, Any]) -> None:
        pass

    async with serving(recording) as base:
        pool = UpstreamPool(
            "sdk",
            Target("http", url=f"{base}/mcp", protocol="2025-11-25"),
            client_info={"name": "patchbay-test", "version": "0"},
            capabilities={},
            on_notification=ignore,
        )
        try:
            yield Proxy("sdk", pool, NoCredentials(), Bridge(), asyncio.Semaphore(4), 10.0), recording
        finally:
            await pool.close()


def session_call(progress_token: Any, sent: list[dict[str, Any]]) -> Context:
    """A 2025-era tools/call whose messages to the client land in ``sent``."""

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = CallScope("legacy", "2025-11-25", 1, "tools/call", {}, progress_token=progress_token, send=send)
    return Context(scope)


async def test_an_upstream_is_not_asked_for_progress_the_client_did_not_ask_for(
    proxy: tuple[Proxy, Recording],
) -> None:
    front, upstream = proxy
    sent: list[dict[str, Any]] = []
    result = await front.request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}, session_call(None, sent))
    assert result["structuredContent"] == {"result": 5}
    assert len(upstream.metas) == 1 and "progressToken" not in upstream.metas[0]
    assert [m for m in sent if m["method"] == "notifications/progress"] == []


async def test_progress_the_client_asked_for_reaches_it_under_its_own_token(proxy: tuple[Proxy, Recording]) -> None:
    front, upstream = proxy
    sent: list[dict[str, Any]] = []
    ctx = session_call("mine", sent)
    result = await front.request("tools/call", {"name": "add", "arguments": {"a": 2, "b": 3}}, ctx)
    assert result["structuredContent"] == {"result": 5}
    [meta] = upstream.metas
    assert "progressToken" in meta and meta["progressToken"] != "mine"  # the session's own token upstream
    progress = [m["params"] for m in sent if m["method"] == "notifications/progress"]
    assert progress == [{"progressToken": "mine", "progress": 1, "total": 2}]
