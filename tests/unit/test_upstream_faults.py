"""The upstream client against a small hand-written 2025-era server on loopback that can forget its sessions,
hang, refuse credentials and record what it receives: session loss → re-initialise and retry, cancellation sent
upstream on timeout, per-identity headers, the era probe falling back and cached, and the pinned address."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from tests.support.loopback_asgi import serving

from patchbay.outbound import Fetcher, Refused
from patchbay.upstream import Target, UpstreamPool, UpstreamTimeout, UpstreamUnauthorized

pytestmark = pytest.mark.anyio
CLIENT = {"name": "patchbay-test", "version": "0"}


@dataclass
class Upstream:
    """A 2025-era Streamable HTTP server reduced to what the faults need."""

    sessions: set[str] = field(default_factory=set)
    methods: list[str] = field(default_factory=list)
    echoes: int = 0
    cancelled: list[Any] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    cancel_seen: asyncio.Event = field(default_factory=asyncio.Event)
    hung: asyncio.Event = field(default_factory=asyncio.Event)  # a "hang" call arrived
    listens: bool = False  # offer the GET stream (one list_changed notification on it)

    async def mcp(self, request: Request) -> Response:
        sid = request.headers.get("mcp-session-id", "")
        if request.method == "GET":
            if not self.listens or sid not in self.sessions:
                return Response(status_code=405)
            return StreamingResponse(self._stream(), media_type="text/event-stream")
        if request.method == "DELETE":
            self.sessions.discard(sid)
            return Response()
        self.hosts.add(request.headers["host"])
        self.authorizations.append(request.headers.get("authorization", ""))
        if request.headers.get("authorization") == "Bearer expired":
            return Response(status_code=401, headers={"www-authenticate": 'Bearer error="invalid_token"'})
        body = await request.json()
        method = body.get("method")
        self.methods.append(method)
        rid = body.get("id")
        if method == "initialize":
            sid = secrets.token_urlsafe(8)
            self.sessions.add(sid)
            result = {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}, "serverInfo": {"name": "faults"}}
            return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result}, headers={"mcp-session-id": sid})
        if sid not in self.sessions:
            # What the SDK answers: 400 without a session, 404 for one it no longer knows.
            error = {"jsonrpc": "2.0", "id": rid, "error": {"code": -32001, "message": "Session not found"}}
            return JSONResponse(error, status_code=404 if sid else 400)
        if rid is None:
            if method == "notifications/cancelled":
                self.cancelled.append(body["params"]["requestId"])
                self.cancel_seen.set()
            return Response(status_code=202)
        if body["params"]["name"] == "hang":
            self.hung.set()
            await self.release.wait()
        self.echoes += 1
        result = {"content": [{"type": "text", "text": "echo"}], "isError": False}
        return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": result})

    async def _stream(self) -> AsyncIterator[bytes]:
        yield b'id: 1\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'
        await self.release.wait()


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[str, Upstream]]:
    state = Upstream()
    app = Starlette(routes=[Route("/mcp", state.mcp, methods=["GET", "POST", "DELETE"])])
    async with serving(app) as base:
        try:
            yield base, state
        finally:
            state.release.set()


def pool_for(url: str, fetcher: Fetcher | None = None, notes: asyncio.Queue[str] | None = None) -> UpstreamPool:
    async def on_notification(method: str, params: dict[str, Any]) -> None:
        if notes is not None:
            notes.put_nowait(method)

    return UpstreamPool(
        "faults",
        Target("http", url=url),
        client_info=CLIENT,
        capabilities={},
        on_notification=on_notification,
        fetcher_factory=(lambda: fetcher) if fetcher is not None else None,
    )


async def echo(pool: UpstreamPool, **kwargs: Any) -> str:
    answer = await pool.call("tools/call", {"name": "echo"}, timeout=5, **kwargs)
    return str(answer["content"][0]["text"])


async def test_a_lost_session_is_reinitialised_and_the_undelivered_call_retried(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        assert await echo(pool) == "echo"
        state.sessions.clear()  # the upstream restarted
        assert await echo(pool) == "echo"
        assert state.methods.count("initialize") == 2 and state.echoes == 2
        assert state.methods.count("tools/call") == 3  # one refused with 404, then the retry
    finally:
        await pool.close()
    assert state.sessions == set()  # DELETE on close


async def test_the_era_probe_falls_back_to_initialize_once_per_upstream(upstream: tuple[str, Upstream]) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        for identity in ("", "user:1", "user:2"):
            await echo(pool, identity=identity)
        assert state.methods.count("server/discover") == 1 and state.methods.count("initialize") == 3
    finally:
        await pool.close()


async def test_a_timeout_sends_notifications_cancelled_with_the_upstream_id(upstream: tuple[str, Upstream]) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        session = await pool.session()
        with pytest.raises(UpstreamTimeout):
            await session.request("tools/call", {"name": "hang"}, timeout=0.3)
        hung_id = session._next_id - 1
        async with asyncio.timeout(5):
            await state.cancel_seen.wait()
        assert state.cancelled == [hung_id]
        assert state.echoes == 0
    finally:
        await pool.close()


async def test_a_shorter_deadline_given_later_fires_first_and_leaves_the_task_uncancelled(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        session = await pool.session()
        patient = asyncio.ensure_future(session.request("tools/call", {"name": "hang"}, timeout=60))
        async with asyncio.timeout(10):  # bounds the test only: the 0.3 s deadline must fire long before
            with pytest.raises(UpstreamTimeout):
                await session.request("tools/call", {"name": "hang"}, timeout=0.3)
        task = asyncio.current_task()
        assert task is not None and task.cancelling() == 0  # the deadline took its own cancellation back
        assert not patient.done()
        state.release.set()
        async with asyncio.timeout(10):
            assert (await patient)["content"][0]["text"] == "echo"
    finally:
        await pool.close()


async def test_a_deadline_later_than_an_answered_calls_still_fires(upstream: tuple[str, Upstream]) -> None:
    base, _ = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        session = await pool.session()
        await session.request("tools/call", {"name": "echo"}, timeout=0.3)  # its deadline sets the timer
        async with asyncio.timeout(10):
            with pytest.raises(UpstreamTimeout):
                await session.request("tools/call", {"name": "hang"}, timeout=0.5)
    finally:
        await pool.close()


async def test_the_callers_own_timeout_and_cancellation_are_not_taken_for_the_upstreams(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        session = await pool.session()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await session.request("tools/call", {"name": "hang"}, timeout=60)
        async with asyncio.timeout(10):
            await state.cancel_seen.wait()
        state.cancel_seen.clear()
        state.hung.clear()
        waiting = asyncio.ensure_future(session.request("tools/call", {"name": "hang"}, timeout=60))
        async with asyncio.timeout(10):
            await state.hung.wait()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        async with asyncio.timeout(10):
            await state.cancel_seen.wait()
        assert len(state.cancelled) == 2 and session.pending == {}  # both cancelled upstream
    finally:
        await pool.close()


async def test_each_identity_sends_only_its_own_headers_and_gets_its_own_session(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        await echo(pool, identity="user:1", headers={"Authorization": "Bearer one"})
        await echo(pool, identity="user:2", headers={"Authorization": "Bearer two"})
        await echo(pool, identity="user:1", headers={"Authorization": "Bearer one-refreshed"})
        assert state.authorizations[-1] == "Bearer one-refreshed"
        assert set(state.authorizations) == {"Bearer one", "Bearer two", "Bearer one-refreshed"}
        assert state.methods.count("initialize") == 2
        assert (await pool.session("user:1")) is not (await pool.session("user:2"))
    finally:
        await pool.close()


async def test_refused_credentials_are_reported_as_unauthorized_without_retrying(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    pool = pool_for(f"{base}/mcp")
    try:
        with pytest.raises(UpstreamUnauthorized) as refused:
            await echo(pool, headers={"Authorization": "Bearer expired"})
        assert refused.value.www_authenticate == 'Bearer error="invalid_token"'
        assert "expired" not in str(refused.value)
        assert len(state.authorizations) == 1
        assert pool.health()[0] is False and "401" in pool.health()[1]
    finally:
        await pool.close()


async def test_the_configured_host_is_resolved_once_pinned_and_re_resolved_after_a_failed_connect(
    upstream: tuple[str, Upstream],
) -> None:
    base, state = upstream
    port = httpx.URL(base).port
    answers = [["127.0.0.2"], ["127.0.0.1"]]  # nothing listens on 127.0.0.2: the first connect fails
    asked: list[str] = []

    async def resolve(host: str, port: int) -> list[str]:
        asked.append(host)
        return answers.pop(0) if answers else ["127.0.0.1"]

    pool = pool_for(f"http://upstream.test:{port}/mcp", Fetcher(resolve=resolve))
    try:
        for _ in range(5):
            assert await echo(pool) == "echo"
        assert asked == ["upstream.test", "upstream.test"]
        assert state.hosts == {f"upstream.test:{port}"}
        # Any other origin is vetted by the outbound policy (public https only by default).
        client = pool._opener.client()
        with pytest.raises(Refused):
            await client.get(f"{base}/mcp")
    finally:
        await pool.close()


async def test_unsolicited_notifications_on_the_get_stream_reach_the_pool(upstream: tuple[str, Upstream]) -> None:
    base, state = upstream
    state.listens = True
    notes: asyncio.Queue[str] = asyncio.Queue()
    pool = pool_for(f"{base}/mcp", notes=notes)
    try:
        await pool.session()
        async with asyncio.timeout(5):
            assert await notes.get() == "notifications/tools/list_changed"
    finally:
        await pool.close()
