"""Resumable streams (SSE polling, 2025-11-25): a tool ends its POST stream early with ``ctx.close_stream()``; the
client resumes with GET + Last-Event-ID and gets the result there.

reference/mcp-requirements.md §3.1 POST item 5 and Resumability; conformance-scenarios §3.3, §8 (server-sse-polling).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.wire import (
    JSON_POST,
    TOOLS_MODULE,
    assert_json,
    client_for,
    initialize_body,
    live_server,
    open_session,
    parse_sse,
    request,
    running,
    settings_for,
)

pytestmark = pytest.mark.anyio
DEADLINE = 10  # seconds; a GET resume that hangs fails instead


def release_event() -> Any:
    """The threading.Event the fixture tool ``polling`` waits on, in the copy the current app imported."""
    return sys.modules[TOOLS_MODULE].RELEASE


def results(text: str) -> list[dict[str, Any]]:
    return [m for m in (json.loads(e.data) for e in parse_sse(text) if e.data) if "result" in m or "error" in m]


async def test_a_closed_stream_is_primed_and_the_result_is_replayed_on_get(client: httpx.AsyncClient) -> None:
    release_event().set()  # in-process the POST only returns once the tool has, so let it run straight through
    headers = await open_session(client)
    response = await client.post("/mcp", json=request("tools/call", {"name": "polling"}, 70), headers=headers)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    priming = events[0]
    assert priming.id and priming.data == "" and priming.retry is not None and priming.retry > 0
    assert results(response.text) == []  # the result did not travel on the closed stream
    assert events[-1].retry is not None  # the server says when to come back before it closes

    with anyio.fail_after(DEADLINE):  # in-process, a GET that streams instead of replaying would never return
        resumed = await client.get(
            "/mcp", headers={**headers, "accept": "text/event-stream", "last-event-id": priming.id}
        )
    assert resumed.status_code == 200
    assert resumed.headers["content-type"].startswith("text/event-stream")
    replayed = results(resumed.text)
    assert [r["id"] for r in replayed] == [70]
    assert replayed[0]["result"]["content"][0]["text"] == "polling done"
    replayed_ids = [e.id for e in parse_sse(resumed.text) if e.data]
    assert all(i and i != priming.id for i in replayed_ids)


async def test_an_unknown_last_event_id_is_404(client: httpx.AsyncClient) -> None:
    headers = {**(await open_session(client)), "accept": "text/event-stream"}
    for last in ("nope", "abcdef_3", "_1", "abc_"):
        with anyio.fail_after(DEADLINE):
            response = await client.get("/mcp", headers={**headers, "last-event-id": last})
        assert response.status_code == 404, last
        assert_json(response)


async def test_a_last_event_id_from_another_session_is_404(client: httpx.AsyncClient) -> None:
    release_event().set()
    owner = await open_session(client)
    response = await client.post("/mcp", json=request("tools/call", {"name": "polling"}), headers=owner)
    priming_id = parse_sse(response.text)[0].id
    other = await open_session(client)
    with anyio.fail_after(DEADLINE):
        stolen = await client.get("/mcp", headers={**other, "accept": "text/event-stream", "last-event-id": priming_id})
    assert stolen.status_code == 404


async def test_close_stream_is_a_no_op_without_a_session(client: httpx.AsyncClient) -> None:
    """Without a session nothing could be resumed, so the result comes on the one response."""
    release_event().set()
    response = await client.post("/mcp", json=request("tools/call", {"name": "polling"}, 72), headers=JSON_POST)
    assert assert_json(response)["result"]["content"][0]["text"] == "polling done"


def test_over_a_real_socket_the_post_stream_ends_before_the_tool_returns(tmp_path: Path) -> None:
    """The real thing: the POST response ends while the tool still runs; a GET resume waits for and gets the
    result once the tool finishes."""
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:
        release = release_event()
        release.clear()

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                init = await http.post(server.url, json=initialize_body(), headers=JSON_POST)
                headers = {**JSON_POST, "mcp-session-id": init.headers["mcp-session-id"]}
                headers["mcp-protocol-version"] = "2025-11-25"
                body = request("tools/call", {"name": "polling"}, 80)
                with anyio.fail_after(5):  # the stream must end on its own: the tool is still blocked
                    response = await http.post(server.url, json=body, headers=headers)
                assert not release.is_set()
                priming = parse_sse(response.text)[0]
                assert priming.id and priming.data == "" and priming.retry
                assert results(response.text) == []

                get_headers = {**headers, "accept": "text/event-stream", "last-event-id": priming.id}
                async with http.stream("GET", server.url, headers=get_headers) as resumed:
                    assert resumed.status_code == 200
                    release.set()
                    with anyio.fail_after(8):
                        text = (await resumed.aread()).decode()
                replayed = results(text)
                assert [r["id"] for r in replayed] == [80]
                assert replayed[0]["result"]["content"][0]["text"] == "polling done"

        try:
            anyio.run(scenario)
        finally:
            release.set()


async def test_a_session_keeps_only_recent_streams_for_replay(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path)) as app, client_for(app) as http:
        release_event().set()
        headers = await open_session(http)
        first = await http.post("/mcp", json=request("tools/call", {"name": "polling"}), headers=headers)
        first_id = parse_sse(first.text)[0].id
        for _ in range(40):
            await http.post("/mcp", json=request("tools/call", {"name": "polling"}), headers=headers)
        with anyio.fail_after(DEADLINE):
            old = await http.get("/mcp", headers={**headers, "accept": "text/event-stream", "last-event-id": first_id})
        assert old.status_code == 404  # evicted: memory per session stays bounded
