"""JSON unless something precedes the result: plain JSON for quiet handlers, SSE (in order, result last) when a
handler reports progress or logs; log levels per era.

reference/mcp-requirements.md §3.1 POST items 4-5, §3.2, §2.6 item 11; R-010; conformance-scenarios §1.4, §8.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import (
    META_LOG_LEVEL,
    assert_json,
    call_modern,
    open_session,
    parse_sse,
    request,
)

pytestmark = pytest.mark.anyio


def messages(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.headers["content-type"].startswith("text/event-stream"), response.headers
    return [json.loads(e.data) for e in parse_sse(response.text) if e.data]


async def test_a_quiet_handler_is_answered_with_json_even_when_sse_is_accepted(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    response = await client.post("/mcp", json=request("tools/call", {"name": "quiet"}, 5), headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["content"][0]["text"] == "quiet 2025-11-25"
    modern = await call_modern(client, "tools/call", {"name": "quiet", "arguments": {}})
    assert modern.headers["content-type"].startswith("application/json")
    assert modern.json()["result"]["content"][0]["text"] == "quiet 2026-07-28"


@pytest.mark.parametrize("token", ["progress-1", 7], ids=["string", "number"])
async def test_progress_in_a_2025_session_streams_sse_in_order_with_the_result_last(
    client: httpx.AsyncClient, token: Any
) -> None:
    headers = await open_session(client)
    body = request("tools/call", {"name": "progress", "arguments": {"steps": 3}, "_meta": {"progressToken": token}}, 9)
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.status_code == 200
    assert response.headers["x-accel-buffering"] == "no"
    sent = messages(response)
    progress = [m for m in sent if m.get("method") == "notifications/progress"]
    assert [p["params"]["progress"] for p in progress] == [1, 2, 3]
    assert all(p["params"]["progressToken"] == token for p in progress)  # echoed exactly, type included
    assert sent[-1] == {"jsonrpc": "2.0", "id": 9, "result": sent[-1]["result"]}
    assert sent[-1]["result"]["content"][0]["text"] == "progress done"


async def test_progress_in_2026_streams_sse_in_order_with_the_result_last(client: httpx.AsyncClient) -> None:
    """conformance-scenarios §1.4: stateless progress must precede the result on the POST stream."""
    response = await call_modern(client, "tools/call", {"name": "progress", "arguments": {}}, progressToken="p-2026")
    assert response.headers["x-accel-buffering"] == "no"
    sent = messages(response)
    assert [m.get("method") for m in sent[:-1]] == ["notifications/progress"] * 3
    assert [m["params"]["progress"] for m in sent[:-1]] == [1, 2, 3]
    assert sent[-1]["result"]["resultType"] == "complete"
    assert all("id" not in m for m in sent[:-1])  # no server→client requests on a 2026 stream


async def test_progress_without_a_token_is_plain_json(client: httpx.AsyncClient) -> None:
    response = await call_modern(client, "tools/call", {"name": "progress", "arguments": {}})
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["content"][0]["text"] == "progress done"


async def test_progress_for_a_json_only_client_is_dropped_not_an_error(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json", "accept": "application/json"}
    body = request("tools/call", {"name": "progress", "_meta": {"progressToken": "t"}}, 4)
    response = await client.post("/mcp", json=body, headers=headers)
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["result"]["isError"] is False


async def test_an_sse_only_client_gets_sse_for_a_quiet_handler(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json", "accept": "text/event-stream"}
    response = await client.post("/mcp", json=request("tools/call", {"name": "quiet"}, 6), headers=headers)
    assert messages(response)[-1]["id"] == 6


def log_levels(response: httpx.Response) -> list[str]:
    if response.headers["content-type"].startswith("application/json"):
        return []
    return [m["params"]["level"] for m in messages(response) if m.get("method") == "notifications/message"]


@pytest.mark.parametrize(
    ("level", "expected"),
    [
        ("debug", ["debug", "info", "warning", "error"]),
        ("warning", ["warning", "error"]),
        ("info", ["info", "warning", "error"]),
        ("emergency", []),
    ],
)
async def test_logging_set_level_filters_a_2025_sessions_logs(
    client: httpx.AsyncClient, level: str, expected: list[str]
) -> None:
    headers = await open_session(client)
    set_level = await client.post("/mcp", json=request("logging/setLevel", {"level": level}, 3), headers=headers)
    assert assert_json(set_level) == {"jsonrpc": "2.0", "id": 3, "result": {}}
    response = await client.post("/mcp", json=request("tools/call", {"name": "chatty"}), headers=headers)
    assert log_levels(response) == expected
    assert "chatty done" in response.text


async def test_a_log_level_applies_only_to_its_own_session(client: httpx.AsyncClient) -> None:
    quiet = await open_session(client)
    loud = await open_session(client)
    await client.post("/mcp", json=request("logging/setLevel", {"level": "debug"}), headers=loud)
    await client.post("/mcp", json=request("logging/setLevel", {"level": "error"}), headers=quiet)
    response = await client.post("/mcp", json=request("tools/call", {"name": "chatty"}), headers=loud)
    assert log_levels(response) == ["debug", "info", "warning", "error"]
    quieted = await client.post("/mcp", json=request("tools/call", {"name": "chatty"}), headers=quiet)
    assert log_levels(quieted) == ["error"]


@pytest.mark.parametrize("level", ["verbose", None, 3, ["info"], {"l": 1}])
async def test_logging_set_level_with_an_unknown_level_is_invalid_params(client: httpx.AsyncClient, level: Any) -> None:
    headers = await open_session(client)
    response = await client.post("/mcp", json=request("logging/setLevel", {"level": level}), headers=headers)
    assert response.status_code == 200, response.text  # 2025 era: a method's error rides on HTTP 200
    error = assert_json(response)["error"]
    assert error["code"] == -32602
    assert error["message"].startswith(f"Unknown log level {level!r}; use one of debug, info, notice, warning")


async def test_2026_sends_no_logs_without_a_log_level(client: httpx.AsyncClient) -> None:
    """§2.6 item 11: MUST NOT emit notifications/message unless the request carried logLevel."""
    response = await call_modern(client, "tools/call", {"name": "chatty", "arguments": {}})
    assert response.headers["content-type"].startswith("application/json")
    assert "notifications/message" not in response.text


async def test_2026_logs_at_and_above_the_requested_level(client: httpx.AsyncClient) -> None:
    response = await call_modern(client, "tools/call", {"name": "chatty", "arguments": {}}, **{META_LOG_LEVEL: "info"})
    assert log_levels(response) == ["info", "warning", "error"]
    assert messages(response)[-1]["result"]["content"][0]["text"] == "chatty done"


async def test_a_2025_stream_gives_every_event_an_id_and_primes_it(client: httpx.AsyncClient) -> None:
    """§3.1 POST item 5 (2025-11-25): a priming event (id, empty data) first; ids make the stream resumable."""
    headers = await open_session(client)
    body = request("tools/call", {"name": "progress", "_meta": {"progressToken": "t"}})
    response = await client.post("/mcp", json=body, headers=headers)
    events = parse_sse(response.text)
    assert events[0].data == "" and events[0].id and events[0].retry is not None
    assert all(e.id for e in events)
    assert len({e.id for e in events}) == len(events)


async def test_json_only_requests_work_without_any_accept(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=request("tools/call", {"name": "echo", "arguments": {"text": "a"}}))
    assert response.status_code == 200
    assert response.json()["result"]["content"][0]["text"] == "a"
