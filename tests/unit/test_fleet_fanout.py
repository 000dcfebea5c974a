"""Notifications across replicas: what one replica publishes reaches the open streams of every other replica
once; the list changes every replica produces by itself after its own rebuild are never sent twice; and a
standalone GET stream continues its event ids on another replica after a reconnect."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.fleet_streams import Event, call, events, fleet, open_session
from fixtures.wire import modern_request

pytestmark = pytest.mark.anyio
UPDATED = "notifications/resources/updated"
TOOLS_CHANGED = "notifications/tools/list_changed"
SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


def messages(seen: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in seen if e.data]


async def until_mark(stream: AsyncIterator[Event], seen: list[Event]) -> None:
    """Read until the update of fleet://mark: sent last, so whatever was sent before it has arrived."""
    with anyio.fail_after(10):
        async for event in stream:
            seen.append(event)
            if event.data and json.loads(event.data).get("params", {}).get("uri") == "fleet://mark":
                return
    raise AssertionError("the stream ended before the mark")


async def subscribe(http: httpx.AsyncClient, url: str, session: dict[str, str], *uris: str) -> None:
    for n, uri in enumerate(uris):
        body = {"jsonrpc": "2.0", "id": 100 + n, "method": "resources/subscribe", "params": {"uri": uri}}
        response = await http.post(url, json=body, headers=session)
        assert response.status_code == 200 and "result" in response.json(), response.text


@contextlib.asynccontextmanager
async def listening(
    http: httpx.AsyncClient, method: str, url: str, seen: list[Event], **request: Any
) -> AsyncIterator[AsyncIterator[Event]]:
    """The events of a stream once its first (a GET's priming event, a listen's acknowledgement, kept in ``seen``)
    says it is open and listening."""
    async with http.stream(method, url, **request) as stream:
        assert stream.status_code == 200
        lines = events(stream.aiter_lines())
        with anyio.fail_after(10):
            seen.append(await anext(lines))
        yield lines


async def touch(http: httpx.AsyncClient, url: str, session: dict[str, str], request_id: int, uri: str) -> None:
    response = await http.post(url, json=call("touch", request_id, uri=uri), headers=session)
    assert response.is_success, response.text


async def test_a_resource_updated_on_a_reaches_a_get_stream_on_b_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        session = await open_session(http, b.mcp)
        await subscribe(http, b.mcp, session, "fleet://doc", "fleet://mark")
        writer = await open_session(http, a.mcp)
        seen: list[Event] = []
        get = {**session, "accept": "text/event-stream"}
        async with listening(http, "GET", b.mcp, seen, headers=get) as lines:
            await touch(http, a.mcp, writer, 1, "fleet://doc")
            await touch(http, a.mcp, writer, 2, "fleet://mark")
            await until_mark(lines, seen)
        updates = [m["params"]["uri"] for m in messages(seen) if m.get("method") == UPDATED]
        assert updates == ["fleet://doc", "fleet://mark"]
        assert all(e.id and e.id.startswith("get_") for e in seen)  # resumable on any replica


async def test_a_list_change_each_replica_makes_itself_arrives_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        session = await open_session(http, b.mcp)
        await subscribe(http, b.mcp, session, "fleet://mark")
        on_a = await open_session(http, a.mcp)
        seen: list[Event] = []
        get = {**session, "accept": "text/event-stream"}
        async with listening(http, "GET", b.mcp, seen, headers=get) as lines:
            # Both replicas rebuild their own catalog (as after a manifest approval or a reload).
            assert (await http.post(a.mcp, json=call("toggle", 1), headers=on_a)).is_success
            assert (await http.post(b.mcp, json=call("toggle", 2), headers=session)).is_success
            await touch(http, a.mcp, on_a, 3, "fleet://mark")
            await until_mark(lines, seen)
        methods = [m.get("method") for m in messages(seen)]
        assert methods.count(TOOLS_CHANGED) == 1, methods


async def test_a_get_stream_reconnected_on_b_gets_what_it_missed_then_goes_on_live(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        session = await open_session(http, a.mcp)
        await subscribe(http, a.mcp, session, "fleet://doc", "fleet://mark")
        first: list[Event] = []
        get = {**session, "accept": "text/event-stream"}
        async with listening(http, "GET", a.mcp, first, headers=get) as lines:
            await touch(http, a.mcp, session, 1, "fleet://mark")
            await until_mark(lines, first)
        last = first[-1].id
        assert last is not None and last.startswith("get_")
        seen: list[Event] = []
        get = {**session, "accept": "text/event-stream", "last-event-id": first[0].id or ""}
        async with http.stream("GET", b.mcp, headers=get) as stream:
            assert stream.status_code == 200
            lines = events(stream.aiter_lines())
            await until_mark(lines, seen)  # replayed from Redis: what followed the priming event on A
            await touch(http, b.mcp, session, 2, "fleet://doc")
            await touch(http, a.mcp, session, 3, "fleet://mark")
            await until_mark(lines, seen)
        updates = [m["params"]["uri"] for m in messages(seen) if m.get("method") == UPDATED]
        assert updates == ["fleet://mark", "fleet://doc", "fleet://mark"]
        ids = [int((e.id or "_-1").rpartition("_")[2]) for e in seen if e.data]
        assert ids == sorted(ids) and len(set(ids)) == len(ids) and ids[0] == int(last.rpartition("_")[2])


async def test_a_resource_updated_on_a_reaches_a_2026_listen_stream_on_b_once(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        body, headers = modern_request(
            "subscriptions/listen",
            {"notifications": {"resourceSubscriptions": ["fleet://doc", "fleet://mark"]}},
            request_id="listen-1",
        )
        writer = await open_session(http, a.mcp)
        seen: list[Event] = []
        async with listening(http, "POST", b.mcp, seen, json=body, headers=headers) as lines:
            await touch(http, a.mcp, writer, 1, "fleet://doc")
            await touch(http, a.mcp, writer, 2, "fleet://mark")
            await until_mark(lines, seen)
        updates = [m for m in messages(seen) if m.get("method") == UPDATED]
        assert [m["params"]["uri"] for m in updates] == ["fleet://doc", "fleet://mark"]
        assert all(m["params"]["_meta"][SUBSCRIPTION_ID] == "listen-1" for m in updates)
