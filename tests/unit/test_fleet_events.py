"""Streams resumed on another replica: a 2025-era session's events live in Redis, keyed by the session, so
``GET`` + ``Last-Event-ID`` on any replica replays what followed (MCP 2025-11-25 basic/transports: resumability)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from fixtures.fleet_streams import Event, call, events, fleet, open_session

pytestmark = pytest.mark.anyio


def ticks_of(seen: list[Event]) -> list[str]:
    messages = [json.loads(e.data) for e in seen if e.data]
    return [m["params"]["data"] for m in messages if m.get("method") == "notifications/message"]


def results_of(seen: list[Event]) -> list[Any]:
    messages = [json.loads(e.data) for e in seen if e.data]
    return [m["result"]["content"][0]["text"] for m in messages if "result" in m]


async def test_a_stream_cut_on_a_resumes_on_b_with_every_remaining_event_once_in_order(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        session = await open_session(http, a.mcp)
        seen: list[Event] = []
        with anyio.fail_after(10):
            async with http.stream("POST", a.mcp, json=call("ticks", 5, count=10), headers=session) as cut:
                assert cut.headers["content-type"].startswith("text/event-stream")
                async for event in events(cut.aiter_lines()):
                    seen.append(event)
                    if len(ticks_of(seen)) == 3:
                        break  # the client drops the connection mid-stream
        assert ticks_of(seen) == ["tick 0", "tick 1", "tick 2"]
        last = seen[-1].id
        assert last is not None
        (tmp_path / "go").touch()  # the tool goes on with the ticks nobody on A hears

        resumed: list[Event] = []
        with anyio.fail_after(10):
            get = {**session, "accept": "text/event-stream", "last-event-id": last}
            async with http.stream("GET", b.mcp, headers=get) as stream:
                assert stream.status_code == 200
                async for event in events(stream.aiter_lines()):
                    resumed.append(event)
        assert ticks_of(resumed) == [f"tick {i}" for i in range(3, 10)]
        assert results_of(resumed) == ["ticked"]
        ids = [e.id for e in resumed if e.data]
        assert len(set(ids)) == len(ids) and last not in ids


async def test_another_sessions_event_id_is_unknown_on_every_replica(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    (tmp_path / "go").touch()
    async with fleet(tmp_path, redis_url, redis_prefix) as (a, b, http):
        owner = await open_session(http, a.mcp)
        done = await http.post(a.mcp, json=call("ticks", 1, count=2), headers=owner)
        first = next(e for e in [*_parse(done.text)] if e.id)
        other = await open_session(http, b.mcp)
        for replica in (a, b):
            stolen = await http.get(
                replica.mcp, headers={**other, "accept": "text/event-stream", "last-event-id": first.id}
            )
            assert stolen.status_code == 404, stolen.text
            assert "Unknown Last-Event-ID" in stolen.json()["error"]["message"]
        mine = await http.get(b.mcp, headers={**owner, "accept": "text/event-stream", "last-event-id": first.id})
        assert mine.status_code == 200
        assert results_of(_parse(mine.text)) == ["ticked"]  # the owner resumes the very same id on B


async def test_ids_that_name_nothing_are_404_without_hanging(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    async with fleet(tmp_path, redis_url, redis_prefix) as (_, b, http):
        session = await open_session(http, b.mcp)
        for last in ("nope", "abcdef_3", "_1", "abc_", "0123456789ab_0", "zz:zz_1", "get-x_1"):
            with anyio.fail_after(5):
                response = await http.get(
                    b.mcp, headers={**session, "accept": "text/event-stream", "last-event-id": last}
                )
            assert response.status_code == 404, last
            assert response.json()["error"]["code"] == -32600


def _parse(text: str) -> list[Event]:
    found, event_id, data = [], None, []
    for line in [*text.replace("\r\n", "\n").split("\n"), ""]:
        if not line:
            if event_id is not None or data:
                found.append(Event(event_id, "\n".join(data)))
            event_id, data = None, []
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
    return found
