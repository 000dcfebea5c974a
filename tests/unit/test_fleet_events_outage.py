"""Redis down: resuming a stream fails at once with a clear error (no hang), while the streams open on a replica
keep getting that replica's own notifications; once Redis is back, notifications cross replicas again."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest
from fixtures.fleet_streams import Event, call, events, fleet, open_session
from tests.support.redis_server import redis_server
from tests.support.waiting import until

pytestmark = pytest.mark.anyio


async def next_update(stream: object, seen: list[Event]) -> str:
    with anyio.fail_after(10):
        async for event in stream:  # type: ignore[attr-defined]
            seen.append(event)
            message = json.loads(event.data) if event.data else {}
            if message.get("method") == "notifications/resources/updated":
                uri: str = message["params"]["uri"]
                return uri
    raise AssertionError("the stream ended")


async def test_without_redis_resumption_fails_fast_and_local_streams_go_on(tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    with redis_server(tmp_path / "redis") as redis:
        async with fleet(tmp_path, redis.url, "outage:") as (a, b, http):
            session = await open_session(http, a.mcp)
            done = await http.post(a.mcp, json=call("ticks", 1, count=2), headers=session)
            event_id = next(line[3:].strip() for line in done.text.splitlines() if line.startswith("id:"))
            subscribe = {
                "jsonrpc": "2.0",
                "id": 2,
                "method": "resources/subscribe",
                "params": {"uri": "fleet://doc"},
            }
            assert "result" in (await http.post(a.mcp, json=subscribe, headers=session)).json()
            seen: list[Event] = []
            async with http.stream("GET", a.mcp, headers={**session, "accept": "text/event-stream"}) as stream:
                lines = events(stream.aiter_lines())
                with anyio.fail_after(10):
                    seen.append(await anext(lines))
                redis.stop()

                with anyio.fail_after(5):  # fails fast: never a wait for the keep-alive or a socket timeout
                    resumed = await http.get(
                        b.mcp, headers={**session, "accept": "text/event-stream", "last-event-id": event_id}
                    )
                assert resumed.status_code == 503
                message = resumed.json()["error"]["message"]
                assert "Redis" in message and "unreachable" in message and "stream resumption" in message
                assert redis.password not in resumed.text

                touched = await http.post(a.mcp, json=call("touch", 3, uri="fleet://doc"), headers=session)
                assert touched.status_code == 200 and "result" in touched.json()
                assert await next_update(lines, seen) == "fleet://doc"  # A's own notification, live

                redis.start()
                fleets = [a.app.runtime.fleet, b.app.runtime.fleet]
                await until(lambda: all(f.up and f.bus.subscribed.is_set() for f in fleets), "both replicas reconnect")
                from_b = await open_session(http, b.mcp)
                touched = await http.post(b.mcp, json=call("touch", 4, uri="fleet://doc"), headers=from_b)
                assert touched.status_code == 200
                assert await next_update(lines, seen) == "fleet://doc"  # crossed from B again
