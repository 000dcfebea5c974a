"""Legacy HTTP+SSE (MCP 2024-11-05) without sticky sessions: the stream opened on replica A, the messages posted
to replica B, and every answer arrives on A's stream; only the principal that opened the stream may post to it."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.fleet_streams import SECRET, Event, call, events, fleet, fleet_settings, two_replicas
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

from patchbay.fleet.link import FleetUnavailable

pytestmark = pytest.mark.anyio
INIT = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "legacy", "version": "1"}}


async def next_message(stream: AsyncIterator[Event]) -> dict[str, Any]:
    with anyio.fail_after(10):
        async for event in stream:
            if event.data:
                message: dict[str, Any] = json.loads(event.data)
                return message
    raise AssertionError("the stream ended")


async def endpoint_of(lines: AsyncIterator[str]) -> str:
    with anyio.fail_after(10):
        async for line in lines:
            if line.startswith("data:"):
                return line[5:].strip()
    raise AssertionError("no endpoint event")


async def test_messages_posted_to_b_are_answered_on_the_stream_held_by_a(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        async with http.stream("GET", f"{a.base}/sse") as stream:
            assert stream.status_code == 200
            lines = stream.aiter_lines()
            endpoint = await endpoint_of(lines)
            assert endpoint.startswith("/messages?session_id=")
            replies = events(lines)
            posted = await http.post(
                f"{b.base}{endpoint}", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}
            )
            assert posted.status_code == 202
            assert (await next_message(replies))["result"]["protocolVersion"] == "2024-11-05"
            posted = await http.post(f"{b.base}{endpoint}", json=call("whoami", 2))
            assert posted.status_code == 202
            answer = await next_message(replies)
            assert answer["id"] == 2 and answer["result"]["content"][0]["text"] == "anonymous"
        link = a.app.runtime.fleet.link
        key = link.key("sse", endpoint.partition("session_id=")[2])

        async def forgotten() -> bool:
            return not await link.do(lambda c: c.exists(key))

        await until(forgotten, "replica A forgets the stream the client closed")
        gone = await http.post(f"{b.base}{endpoint}", json=call("whoami", 3))
        assert gone.status_code == 404  # the stream closed: unknown on every replica
        assert gone.json()["error"]["code"] == -32001


async def test_another_principal_cannot_post_to_a_stream_held_elsewhere(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = fleet_settings(tmp_path, redis_url, redis_prefix, auth={"mode": "api_key"})
    async with two_replicas(settings) as (a, b):
        core = a.app.runtime.auth.core
        key_a = (await core.run(core.keys.create, "key-a", ["mcp"]))[1]
        key_b = (await core.run(core.keys.create, "key-b", ["mcp"]))[1]
        async with httpx.AsyncClient(timeout=10) as http:
            bearer_a, bearer_b = {"authorization": f"Bearer {key_a}"}, {"authorization": f"Bearer {key_b}"}
            async with http.stream("GET", f"{a.base}/sse", headers=bearer_a) as stream:
                lines = stream.aiter_lines()
                endpoint = await endpoint_of(lines)
                replies = events(lines)
                stolen = await http.post(f"{b.base}{endpoint}", json=call("whoami", 1), headers=bearer_b)
                assert stolen.status_code == 404
                unknown = await http.post(
                    f"{b.base}/messages?session_id=nope", json=call("whoami", 1), headers=bearer_a
                )
                assert stolen.json() == unknown.json()  # nothing tells key B that the session exists
                anonymous = await http.post(f"{b.base}{endpoint}", json=call("whoami", 2))
                assert anonymous.status_code == 401
                mine = await http.post(f"{b.base}{endpoint}", json=call("whoami", 3), headers=bearer_a)
                assert mine.status_code == 202
                answer = await next_message(replies)
                assert answer["id"] == 3  # the refused messages never reached the stream
                assert answer["result"]["content"][0]["text"] == "key:key-a"


async def test_a_forwarded_message_for_another_owner_is_dropped_by_the_holder(
    tmp_path: Path, redis_url: str, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The holder checks the owner again: a message on the bus naming the wrong owner never runs."""
    caplog.set_level(logging.INFO, logger="patchbay.transport.sse")
    async with (
        fleet(tmp_path, redis_url, redis_prefix) as (a, b, http),
        http.stream("GET", f"{a.base}/sse") as stream,
    ):
        lines = stream.aiter_lines()
        endpoint = await endpoint_of(lines)
        replies = events(lines)
        session_id = endpoint.partition("session_id=")[2]
        bus = b.app.runtime.fleet.bus
        forged = call("whoami", 1)
        await bus.send_to(
            a.app.runtime.fleet.replica_id,
            "legacy_post",
            sid=session_id,
            owner="f" * 64,
            principal=None,
            message=forged,
        )
        assert (await http.post(f"{b.base}{endpoint}", json=call("whoami", 2))).status_code == 202
        answer = await next_message(replies)
        assert answer["id"] == 2  # the forged message (sent first, on the same channel) did not run
    dropped = [r.getMessage() for r in caplog.records if r.name == "patchbay.transport.sse"]
    assert dropped == [f"a forwarded message for legacy SSE session {session_id[:8]} was dropped: no such stream here"]


async def test_the_holders_record_lives_three_keep_alives_and_each_keep_alive_renews_it(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """A dead replica's streams are forgotten within three keep-alive intervals (at least 1 s); a live one's never."""
    settings = fleet_settings(tmp_path, redis_url, redis_prefix, auth={"mode": "api_key"})  # keep-alive 0.3 s
    async with two_replicas(settings) as (a, b), httpx.AsyncClient(timeout=10) as http:
        core = a.app.runtime.auth.core
        bearer = {"authorization": f"Bearer {(await core.run(core.keys.create, 'key-a', ['mcp']))[1]}"}
        async with http.stream("GET", f"{a.base}/sse", headers=bearer) as stream:
            lines = stream.aiter_lines()
            endpoint = await endpoint_of(lines)
            link = a.app.runtime.fleet.link
            key = link.key("sse", endpoint.partition("session_id=")[2])
            assert 0 < await link.do(lambda c: c.pttl(key)) <= 1000
            keep_alives = 0
            with anyio.fail_after(10):
                async for line in lines:  # five keep-alives: past the first record's lifetime
                    keep_alives += line == ": keep-alive"
                    if keep_alives == 5:
                        break
            mine = await http.post(f"{b.base}{endpoint}", json=call("whoami", 1), headers=bearer)
            assert mine.status_code == 202
            answer = await next_message(events(lines))
            assert answer["id"] == 1 and answer["result"]["content"][0]["text"] == "key:key-a"


async def test_with_redis_down_a_post_for_a_stream_held_elsewhere_is_503(
    tmp_path: Path, own_redis: RedisServer, redis_prefix: str
) -> None:
    async with (
        fleet(tmp_path, own_redis.url, redis_prefix) as (a, b, http),
        http.stream("GET", f"{a.base}/sse") as stream,
    ):
        endpoint = await endpoint_of(stream.aiter_lines())
        own_redis.stop()
        with anyio.fail_after(10):  # bounded: an outage must never hang a request
            refused = await http.post(f"{b.base}{endpoint}", json=call("whoami", 1))
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert refused.json()["id"] is None and error["code"] == -32603
        assert "reaching this SSE session's stream" in error["message"], error


async def test_a_closed_stream_is_forgotten_at_once_not_when_its_record_expires(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """With a one-minute keep-alive the record would live three minutes, and no keep-alive renews it meanwhile: the
    owner it was first written with is the one B checks, and only closing the stream removes it within the wait."""
    server = {"name": "fleet-streams", "secret": SECRET, "sse_keepalive_seconds": 60.0}
    settings = fleet_settings(tmp_path, redis_url, redis_prefix, auth={"mode": "api_key"}, server=server)
    async with two_replicas(settings) as (a, b), httpx.AsyncClient(timeout=10) as http:
        core = a.app.runtime.auth.core
        bearer = {"authorization": f"Bearer {(await core.run(core.keys.create, 'key-a', ['mcp']))[1]}"}
        link = a.app.runtime.fleet.link
        async with http.stream("GET", f"{a.base}/sse", headers=bearer) as stream:
            lines = stream.aiter_lines()
            endpoint = await endpoint_of(lines)
            key = link.key("sse", endpoint.partition("session_id=")[2])
            assert await link.do(lambda c: c.pttl(key)) > 60_000
            mine = await http.post(f"{b.base}{endpoint}", json=call("whoami", 1), headers=bearer)
            assert mine.status_code == 202
            answer = await next_message(events(lines))
            assert answer["id"] == 1 and answer["result"]["content"][0]["text"] == "key:key-a"

        async def forgotten() -> bool:
            return not await link.do(lambda c: c.exists(key))

        await until(forgotten, "replica A deletes the record of the stream the client closed")
        gone = await http.post(f"{b.base}{endpoint}", json=call("whoami", 2), headers=bearer)
        assert gone.status_code == 404


async def test_when_the_bus_fails_a_request_for_a_stream_held_elsewhere_is_503_and_a_notification_still_202(
    tmp_path: Path, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Redis answered where the stream lives but fails to carry the message: the client is told so (503), never a
    202 for a request that will not be answered; a notification needs no one and is not sent at all."""

    async def unavailable(replica_id: str, kind: str, **fields: Any) -> None:
        raise FleetUnavailable("the fleet bus")

    async with (
        fleet(tmp_path, redis_url, redis_prefix) as (a, b, http),
        http.stream("GET", f"{a.base}/sse") as stream,
    ):
        lines = stream.aiter_lines()  # held: a dropped iterator would close the stream
        endpoint = await endpoint_of(lines)
        monkeypatch.setattr(b.app.runtime.fleet.bus, "send_to", unavailable)
        refused = await http.post(f"{b.base}{endpoint}", json=call("whoami", 1))
        assert refused.status_code == 503
        error = refused.json()["error"]
        assert refused.json()["id"] is None and error["code"] == -32603
        assert "reaching this SSE session's stream" in error["message"], error
        note = await http.post(f"{b.base}{endpoint}", json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert (note.status_code, note.text) == (202, "Accepted")
        monkeypatch.undo()
        mine = await http.post(f"{b.base}{endpoint}", json=call("whoami", 2))
        assert mine.status_code == 202
        answer = await next_message(events(lines))
        assert answer["id"] == 2  # neither the refused request nor the notification reached the stream
