"""A 2026-07-28 upstream's changes reach Patchbay over one ``subscriptions/listen`` stream per pool: against the
official SDK's server on loopback (HTTP), ``patchbay serve --stdio`` (stdio), and through a whole Patchbay front to
an SDK client listening at it, without waiting for ``relist_seconds``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged
from mcp.server.mcpserver import Context, MCPServer
from tests.support.loopback_asgi import serving
from tests.support.waiting import until
from tests.unit.test_upstream_http import Counting

from patchbay.app import create_app
from patchbay.settings import from_dict
from patchbay.upstream import Target, UpstreamPool
from patchbay.upstream.process import ProcessSpec

pytestmark = [pytest.mark.anyio, pytest.mark.filterwarnings("ignore:The logging capability is deprecated")]
CLIENT = {"name": "patchbay-test", "version": "0"}
DEADLINE = 15.0
LISTEN = "subscriptions/listen"
STDIO_TOOLS = Path(__file__).parent / "fixtures" / "tools.py"


def changing_server(*, subscriptions: bool = True) -> MCPServer:
    """An SDK server whose ``grow`` adds a tool and says so, and whose ``touch`` says a resource changed."""
    server = MCPServer("changing", subscriptions=None if subscriptions else False)
    grown: list[str] = []

    @server.tool()
    async def grow(ctx: Context) -> str:
        """Adds a tool named extra_<n>."""
        name = f"extra_{len(grown) + 1}"
        grown.append(name)

        def extra() -> str:
            return name

        server.add_tool(extra, name=name, description="Added by grow.")
        await ctx.notify_tools_changed()
        return name

    @server.tool()
    async def touch(uri: str, ctx: Context) -> str:
        """Says the resource at ``uri`` changed."""
        await ctx.notify_resource_updated(uri)
        return uri

    @server.resource("note://one")
    def one() -> str:
        return "one"

    return server


class Heard:
    """What the pool passes to its on_notification, in order."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()

    async def __call__(self, method: str, params: dict[str, Any]) -> None:
        await self.queue.put((method, params))

    async def next(self, method: str | None = None) -> tuple[str, dict[str, Any]]:
        """The next notification (of ``method``, skipping others), failing after the deadline."""
        async with asyncio.timeout(DEADLINE):
            while True:
                heard = await self.queue.get()
                if method is None or heard[0] == method:
                    return heard


def pool_for(target: Target, heard: Heard, **kwargs: Any) -> UpstreamPool:
    return UpstreamPool("up", target, client_info=CLIENT, capabilities={}, on_notification=heard, **kwargs)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Counting]]:
    counting = Counting(changing_server().streamable_http_app())
    async with serving(counting) as base:
        yield f"{base}/mcp", counting


async def test_one_listen_stream_per_pool_carries_a_list_change(upstream: tuple[str, Counting]) -> None:
    url, counting = upstream
    heard = Heard()
    pool = pool_for(Target("http", url=url), heard)
    try:
        for identity in ("", "user:1", "user:2"):
            await pool.session(identity)
        await until(lambda: pool.listening.acknowledged == 1, "the listen stream to be acknowledged")
        await pool.call("tools/call", {"name": "grow", "arguments": {}}, identity="user:2", timeout=10)
        method, _ = await heard.next()
        assert method == "notifications/tools/list_changed"
        assert counting.methods[LISTEN] == 1
    finally:
        await pool.close()
    assert not pool.listening.streaming


async def test_a_watched_resource_is_added_to_the_stream_and_only_its_updates_arrive(
    upstream: tuple[str, Counting],
) -> None:
    url, counting = upstream
    heard = Heard()
    pool = pool_for(Target("http", url=url), heard)
    try:
        await pool.session()
        await until(lambda: pool.listening.acknowledged == 1, "the first listen stream")
        pool.watch_resource("note://one")
        await until(lambda: pool.listening.acknowledged == 2, "the listen stream with the resource")
        for uri in ("note://other", "note://one"):  # the upstream sends in order: an unwatched one would come first
            await pool.call("tools/call", {"name": "touch", "arguments": {"uri": uri}}, timeout=10)
        method, params = await heard.next()
        assert (method, params["uri"]) == ("notifications/resources/updated", "note://one")
        assert counting.methods[LISTEN] == 2
    finally:
        await pool.close()


def dropping_first_listen(app: Any) -> Any:
    """The first listen stream's connection is dropped right after its acknowledgement."""
    listens = 0

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        nonlocal listens
        headers = dict(scope.get("headers") or [])
        if scope["type"] != "http" or headers.get(b"mcp-method") != LISTEN.encode():
            return await app(scope, receive, send)
        listens += 1
        if listens > 1:
            return await app(scope, receive, send)

        async def cut_after_ack(message: dict[str, Any]) -> None:
            await send(message)
            if message["type"] == "http.response.body" and b"acknowledged" in message.get("body", b""):
                raise ConnectionResetError("dropped by the test")

        with contextlib.suppress(ConnectionResetError):
            await app(scope, receive, cut_after_ack)

    return wrapped


async def test_a_dropped_stream_is_opened_again_and_the_lists_are_read_again() -> None:
    heard = Heard()
    async with serving(dropping_first_listen(changing_server().streamable_http_app())) as base:
        pool = pool_for(Target("http", url=f"{base}/mcp"), heard)
        pool.listening.first_backoff = 0.05
        try:
            await pool.session()
            await until(lambda: pool.listening.acknowledged == 2, "the listen stream to be opened again")
            # What changed while no stream was open is not replayed: every list it covers is re-read.
            methods = {(await heard.next())[0] for _ in range(3)}
            assert methods == {
                "notifications/tools/list_changed",
                "notifications/prompts/list_changed",
                "notifications/resources/list_changed",
            }
            await pool.call("tools/call", {"name": "grow", "arguments": {}}, timeout=10)
            assert (await heard.next())[0] == "notifications/tools/list_changed"
        finally:
            await pool.close()


async def test_after_a_dropped_stream_each_watched_resource_is_announced_as_updated() -> None:
    """An update sent while no stream was open is lost upstream: the client is told to re-read what it watches."""
    heard = Heard()
    async with serving(dropping_first_listen(changing_server().streamable_http_app())) as base:
        pool = pool_for(Target("http", url=f"{base}/mcp"), heard)
        pool.listening.first_backoff = 0.05
        pool.watch_resource("note://one")
        try:
            await pool.session()
            await until(lambda: pool.listening.acknowledged == 2, "the listen stream to be opened again")
            _, params = await heard.next("notifications/resources/updated")
            assert params == {"uri": "note://one"}
        finally:
            await pool.close()


def refusing_listen(app: Any) -> Any:
    """Answers subscriptions/listen as a server without it does (MCP 2026-07-28: HTTP 404 + -32601)."""

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        headers = dict(scope.get("headers") or [])
        if scope["type"] != "http" or headers.get(b"mcp-method") != LISTEN.encode():
            return await app(scope, receive, send)
        request = json.loads((await receive())["body"])
        error = {"code": -32601, "message": f"Method not found: {LISTEN}"}
        body = json.dumps({"jsonrpc": "2.0", "id": request["id"], "error": error}).encode()
        await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    return wrapped


async def test_an_upstream_answering_listen_with_method_not_found_is_asked_once() -> None:
    counting = Counting(refusing_listen(changing_server().streamable_http_app()))
    async with serving(counting) as base:
        pool = pool_for(Target("http", url=f"{base}/mcp"), Heard())
        try:
            await pool.session()
            await until(lambda: pool.listening.unsupported is not None, "the refused listen")
            for identity in ("user:1", "user:2"):
                await pool.call("tools/list", {}, identity=identity, timeout=10)
            assert counting.methods[LISTEN] == 1
            assert f"Method not found: {LISTEN}" in str(pool.listening.unsupported)
        finally:
            await pool.close()


async def test_an_upstream_announcing_no_changes_is_not_asked_to_listen() -> None:
    counting = Counting(changing_server(subscriptions=False).streamable_http_app())
    async with serving(counting) as base:
        pool = pool_for(Target("http", url=f"{base}/mcp"), Heard())
        try:
            session = await pool.session()
            assert not any(section.get("listChanged") for section in session.capabilities.values())
            await pool.call("tools/list", {}, timeout=10)
            assert not pool.listening.streaming
            assert counting.methods[LISTEN] == 0
        finally:
            await pool.close()


async def test_a_listen_stream_keeps_no_session_open_and_resumes_with_the_next(
    upstream: tuple[str, Counting],
) -> None:
    url, counting = upstream
    heard = Heard()
    pool = pool_for(Target("http", url=url), heard, idle_seconds=0.3)
    try:
        await pool.session()
        await until(lambda: pool.listening.acknowledged == 1, "the listen stream")
        await until(
            lambda: pool.protocol_version() == "" and not pool.listening.streaming,
            "the idle session, and its stream with it, to be closed",
        )
        await pool.call("tools/call", {"name": "grow", "arguments": {}}, timeout=10)
        await until(lambda: pool.listening.acknowledged == 2, "a listen stream on the new session")
        assert counting.methods[LISTEN] == 2
        assert (await heard.next())[0] == "notifications/tools/list_changed"
    finally:
        await pool.close()


async def test_a_stdio_upstream_of_2026_sends_its_list_changes_on_the_listen_request(tmp_path: Path) -> None:
    config = tmp_path / "patchbay.toml"
    config.write_text(
        '[server]\nname = "stdio-upstream"\n\n[store]\nurl = "sqlite:///:memory:"\n\n'
        f'[[connectors]]\nname = "fx"\ntype = "python"\npath = {json.dumps(str(STDIO_TOOLS))}\nprefix = ""\n'
    )
    argv = (sys.executable, "-m", "patchbay", "serve", "--stdio", "--config", str(config))
    heard = Heard()
    pool = pool_for(Target("stdio", process=ProcessSpec(argv=argv, cwd=tmp_path, start_timeout=60)), heard)
    try:
        session = await pool.session()
        assert session.modern
        await until(lambda: pool.listening.acknowledged == 1, "the stdio listen request to be acknowledged")
        await pool.call("tools/call", {"name": "toggle_tool", "arguments": {}}, timeout=20)
        method, params = await heard.next()
        assert method == "notifications/tools/list_changed"
        assert isinstance(params["_meta"]["io.modelcontextprotocol/subscriptionId"], int)
    finally:
        await pool.close()


async def test_a_change_upstream_reaches_a_2026_listener_through_the_front_without_a_relist(
    upstream: tuple[str, Counting], tmp_path: Path
) -> None:
    url, _ = upstream
    settings = from_dict(
        {
            "server": {"name": "front"},
            "store": {"url": "sqlite:///:memory:"},
            "connectors": [{"name": "up", "type": "mcp", "url": url, "relist_seconds": 3600}],
        },
        base_dir=tmp_path,
    )
    async with serving(create_app(settings)) as front:
        http = httpx2.AsyncClient(trust_env=False, timeout=DEADLINE)
        async with Client(streamable_http_client(f"{front}/mcp", http_client=http), mode="2026-07-28") as client:
            before = {tool.name for tool in (await client.list_tools()).tools}
            assert "up_grow" in before and "up_extra_1" not in before
            async with client.listen(tools_list_changed=True) as subscription:
                await client.call_tool("up_grow", {})
                event = await _within(anext(aiter(subscription)))
            assert isinstance(event, ToolsListChanged)
            after = {tool.name for tool in (await client.list_tools()).tools}
            assert after - before == {"up_extra_1"}


async def _within(work: Awaitable[Any]) -> Any:
    async with asyncio.timeout(DEADLINE):
        return await work
