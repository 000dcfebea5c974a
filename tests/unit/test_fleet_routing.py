"""Two Patchbay replicas on loopback (uvicorn), one Redis, one secret: a 2025 session's requests, answers,
cancellations and GET stream work whichever replica each HTTP request lands on."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import orjson
import pytest
import redis.asyncio as aioredis
from fixtures.fleet_streams import SECRET, open_session
from fixtures.fleet_streams import fleet as pair
from fixtures.wire import TOOLS_FILE, request
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

from patchbay.fleet.sessions import FleetSessionStore, SealedIds
from patchbay.transport import streams as streams_module

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def fleet(base: Path, url: str, prefix: str) -> AsyncIterator[tuple[str, str, httpx.AsyncClient]]:
    """The replicas' /mcp URLs, serving tests/unit/fixtures/tools.py, bridged by the bus, and a client."""
    async with pair(base, url, prefix, tools=TOOLS_FILE) as (a, b, http):
        yield a.mcp, b.mcp, http


@contextlib.asynccontextmanager
async def slow_keepalive(base: Path, url: str, prefix: str) -> AsyncIterator[tuple[str, str, httpx.AsyncClient]]:
    """``fleet`` with a 5 s keep-alive: the GET stream's lock (twice that) outlives any stall of a loaded machine."""
    server = {"name": "fleet-streams", "secret": SECRET, "sse_keepalive_seconds": 5}
    async with pair(base, url, prefix, tools=TOOLS_FILE, server=server) as (a, b, http):
        yield a.mcp, b.mcp, http


def sid_of(headers: dict[str, str]) -> str:
    sealed = SealedIds([SECRET.encode()]).unseal(headers["mcp-session-id"])
    assert sealed is not None
    return sealed.sid


async def events(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    async for line in response.aiter_lines():
        if line.startswith("data: ") and len(line) > 6:
            yield orjson.loads(line[6:])


async def test_a_session_opened_on_a_serves_calls_on_b_and_a_delete_on_a_ends_it_on_b(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        call = request("tools/call", {"name": "echo", "arguments": {"text": "via B"}}, 2)
        response = await http.post(b, json=call, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["result"]["content"] == [{"type": "text", "text": "via B"}]
        assert (await http.delete(a, headers=headers)).status_code == 200
        gone = await http.post(b, json=call, headers=headers)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == -32001
        assert (await http.delete(b, headers=headers)).status_code == 404


async def test_an_elicitation_asked_on_a_and_answered_via_b_completes_on_a(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        call = request("tools/call", {"name": "ask_name", "arguments": {}}, "ask-1")
        with anyio.fail_after(20):
            async with http.stream("POST", a, json=call, headers=headers) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                stream = events(response)
                asked = await anext(stream)
                assert asked["method"] == "elicitation/create"
                answer = {
                    "jsonrpc": "2.0",
                    "id": asked["id"],
                    "result": {"action": "accept", "content": {"name": "Ada"}},
                }
                assert (await http.post(b, json=answer, headers=headers)).status_code == 202
                result = await anext(stream)
        assert result["id"] == "ask-1"
        assert result["result"]["content"] == [{"type": "text", "text": "Hello, Ada!"}]


async def test_notifications_cancelled_sent_to_b_cancels_the_call_running_on_a(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        # "hang" returns only when cancelled (each replica loads its own copy of the tools module: no flags here).
        call = asyncio.ensure_future(
            http.post(a, json=request("tools/call", {"name": "hang", "arguments": {}}, "slow-1"), headers=headers)
        )
        redis = aioredis.Redis.from_url(redis_url)
        key = f"{redis_prefix}infl:{sid_of(headers)}"
        try:
            await until(lambda: redis.hget(key, orjson.dumps("slow-1")), "A to register the running call")
            assert not call.done()
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1"}}
            assert (await http.post(b, json=cancel, headers=headers)).status_code == 202
            with anyio.fail_after(10):
                response = await call
            await until(lambda: _gone(redis, key), "A to unregister the cancelled call")
        finally:
            await redis.aclose()
        assert response.status_code == 202 and response.content == b""  # MCP: a cancelled request gets no answer


async def _gone(redis: Any, key: str) -> bool:
    return not await redis.exists(key)


async def get_status(http: httpx.AsyncClient, url: str, headers: dict[str, str]) -> int:
    stream = {**headers, "accept": "text/event-stream"}
    async with http.stream("GET", url, headers=stream) as response:
        return response.status_code


async def test_one_get_stream_per_session_across_replicas_until_it_ends(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        stream = {**headers, "accept": "text/event-stream"}
        async with http.stream("GET", a, headers=stream) as held:
            assert held.status_code == 200
            refused = await http.get(b, headers=stream)
            assert refused.status_code == 409
            conflict = "Conflict: this session already has an open GET stream"
            assert refused.json()["error"] == {"code": -32600, "message": conflict}  # JSON-RPC Invalid Request
        # A saw the client go and released the lock: B now opens the stream.
        await until(lambda: _is(get_status(http, b, headers), 200), "B to open the GET stream after A's ended")


async def _first_event_id(lines: AsyncIterator[str]) -> str:
    """The first event id read from ``lines``, which the caller keeps: a dropped iterator closes the stream."""
    async for line in lines:
        if line.startswith("id: "):
            return line[4:]
    raise AssertionError("the GET stream ended before its first event")


async def test_a_get_stream_resumed_on_b_waits_for_a_to_let_go_of_the_old_connection(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = asyncio.Event()  # B tried to claim the stream while A still held it
    claim = FleetSessionStore.claim_stream

    async def watched(self: FleetSessionStore, session: Any) -> bool:
        claimed = await claim(self, session)
        if not claimed:
            refused.set()
        return claimed

    monkeypatch.setattr(FleetSessionStore, "claim_stream", watched)
    async with slow_keepalive(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        stream = {**headers, "accept": "text/event-stream"}
        async with http.stream("GET", a, headers=stream) as held:
            assert held.status_code == 200
            lines = held.aiter_lines()
            resumed = {**stream, "last-event-id": await _first_event_id(lines)}
            resume = asyncio.ensure_future(get_status(http, b, resumed))
            async with asyncio.timeout(20):
                await refused.wait()
            assert not resume.done()  # not refused at once: the client's old connection is still closing on A
        assert await resume == 200  # A saw the client go and let go: B resumes the stream


async def test_a_get_stream_resume_is_refused_while_the_old_connection_stays_open(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streams_module, "RESUME_WAIT_SECONDS", 0.2)
    async with slow_keepalive(tmp_path, redis_url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        stream = {**headers, "accept": "text/event-stream"}
        async with http.stream("GET", a, headers=stream) as held:
            lines = held.aiter_lines()
            resumed = {**stream, "last-event-id": await _first_event_id(lines)}
            async with asyncio.timeout(30):  # a 200 would be a second stream that never ends
                refused = await http.get(b, headers=resumed)
            assert refused.status_code == 409
            assert refused.json()["error"]["message"] == "Conflict: this session already has an open GET stream"


async def _is(status: Any, wanted: int) -> bool:
    return bool(await status == wanted)


async def test_with_redis_stopped_a_sealed_session_still_calls_tools_and_set_level_fails_fast(
    tmp_path: Path, own_redis: RedisServer, redis_prefix: str
) -> None:
    async with fleet(tmp_path, own_redis.url, redis_prefix) as (a, b, http):
        headers = await open_session(http, a)
        own_redis.stop()
        with anyio.fail_after(10):  # bounded: Redis down must never hang a request
            call = request("tools/call", {"name": "echo", "arguments": {"text": "still"}}, 3)
            served = await http.post(b, json=call, headers=headers)
            level = await http.post(b, json=request("logging/setLevel", {"level": "debug"}, 4), headers=headers)
            stream = await http.get(b, headers={**headers, "accept": "text/event-stream"})
            # What only Redis can route or record: an answer or a cancellation for a request B does not hold,
            # and ending the session everywhere.
            answer = await http.post(b, json={"jsonrpc": "2.0", "id": "srv-9", "result": {}}, headers=headers)
            cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}}
            cancelled = await http.post(b, json=cancel, headers=headers)
            ended = await http.delete(b, headers=headers)
        assert served.status_code == 200 and served.json()["result"]["content"][0]["text"] == "still"
        error = level.json()["error"]
        assert "shared store (Redis) is unreachable" in error["message"]
        assert own_redis.password not in level.text + stream.text
        refusals = [
            (stream, "the session's GET stream"),
            (answer, "answering a request from the server"),
            (cancelled, "cancelling a request running on another replica"),
            (ended, "ending a session (DELETE)"),
        ]
        for refused, what in refusals:
            assert refused.status_code == 503, refused.text
            assert refused.json()["id"] is None and refused.json()["error"] == {
                "code": -32603,
                "message": f"The fleet's shared store (Redis) is unreachable: {what} is unavailable; try again shortly",
            }
