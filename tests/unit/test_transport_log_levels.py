"""Which logs a 2025-era client gets, on every transport: from ``info`` up until it sends ``logging/setLevel``
(docs/protocol.md "Other 2025-era behaviour", docs/python-tools.md), then from the level it chose.

The fixture tool ``chatty`` logs once at each of debug, info, warning and error. A debug log that reaches a client
which never asked for it is noise on every call; an info log that does not is a lost message.
reference/mcp-requirements.md §2.6 item 11 (the 2026-07-28 side is in test_transport_streaming.py).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.wire import JSON_POST, TOOLS_FILE, initialize_body, live_server, open_session, parse_sse, request
from fixtures.wire import settings_for as settings_for_unit

pytestmark = pytest.mark.anyio

FROM_INFO = ["info", "warning", "error"]
FROM_DEBUG = ["debug", "info", "warning", "error"]
DEADLINE = 60  # seconds; a subprocess start on a loaded 2-core machine included (mutmut traces it too)


def log_levels(messages: list[dict[str, Any]]) -> list[str]:
    return [m["params"]["level"] for m in messages if m.get("method") == "notifications/message"]


def answer_of(messages: list[dict[str, Any]], request_id: Any) -> dict[str, Any]:
    [answer] = [m for m in messages if m.get("id") == request_id and "method" not in m]
    return answer


def http_messages(response: httpx.Response) -> list[dict[str, Any]]:
    if response.headers["content-type"].startswith("application/json"):
        return [response.json()]
    return [json.loads(e.data) for e in parse_sse(response.text) if e.data]


async def chatty_over_http(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    body = request("tools/call", {"name": "chatty", "arguments": {}}, 21)
    sent = http_messages(await client.post("/mcp", json=body, headers=headers))
    assert answer_of(sent, 21)["result"]["content"][0]["text"] == "chatty done"
    return log_levels(sent)


async def set_level_over_http(client: httpx.AsyncClient, headers: dict[str, str], level: str) -> None:
    response = await client.post("/mcp", json=request("logging/setLevel", {"level": level}, 22), headers=headers)
    assert response.status_code == 200
    assert response.json() == {"jsonrpc": "2.0", "id": 22, "result": {}}


# -- Streamable HTTP -------------------------------------------------------------------------------------------


async def test_a_session_gets_logs_from_info_until_it_sets_a_level(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    assert await chatty_over_http(client, headers) == FROM_INFO
    await set_level_over_http(client, headers, "debug")
    assert await chatty_over_http(client, headers) == FROM_DEBUG


async def test_a_sessionless_request_gets_logs_from_info_and_a_set_level_has_nothing_to_keep_it(
    client: httpx.AsyncClient,
) -> None:
    """Without a session there is nowhere to remember a level: every sessionless call logs from info."""
    assert await chatty_over_http(client, JSON_POST) == FROM_INFO
    await set_level_over_http(client, JSON_POST, "debug")
    assert await chatty_over_http(client, JSON_POST) == FROM_INFO


# -- legacy HTTP+SSE -----------------------------------------------------------------------------------------


class LegacyStream:
    """One GET /sse stream: post messages to its endpoint, read what comes back on the stream."""

    def __init__(self, http: httpx.AsyncClient, lines: AsyncIterator[str], endpoint: str) -> None:
        self.http, self.lines, self.endpoint = http, lines, endpoint

    async def next_message(self) -> dict[str, Any]:
        data: list[str] = []
        with anyio.fail_after(DEADLINE):
            async for line in self.lines:
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    return dict(json.loads("\n".join(data)))
        raise AssertionError("the stream ended")

    async def exchange(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        """Post ``body``; the messages that came back up to and including its answer."""
        posted = await self.http.post(self.endpoint, json=body, headers={"content-type": "application/json"})
        assert posted.status_code == 202, posted.text
        received = [await self.next_message()]
        while received[-1].get("id") != body["id"] or "method" in received[-1]:
            received.append(await self.next_message())
        return received

    async def chatty(self, request_id: int) -> list[str]:
        received = await self.exchange(request("tools/call", {"name": "chatty", "arguments": {}}, request_id))
        assert received[-1]["result"]["content"][0]["text"] == "chatty done"
        return log_levels(received)


def test_a_legacy_sse_stream_gets_logs_from_info_until_it_sets_a_level(tmp_path: Path) -> None:
    async def scenario(port: int) -> None:
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=DEADLINE) as http,
            http.stream("GET", "/sse") as response,
        ):
            assert response.status_code == 200
            lines = response.aiter_lines()
            with anyio.fail_after(DEADLINE):
                assert await anext(lines) == "event: endpoint"
                endpoint = (await anext(lines)).removeprefix("data:").strip()
            stream = LegacyStream(http, lines, endpoint)
            assert "result" in (await stream.exchange(initialize_body(request_id=1)))[-1]
            assert await stream.chatty(2) == FROM_INFO
            answered = await stream.exchange(request("logging/setLevel", {"level": "debug"}, 3))
            assert answered == [{"jsonrpc": "2.0", "id": 3, "result": {}}]
            assert await stream.chatty(4) == FROM_DEBUG

    with live_server(settings_for_unit(tmp_path)) as server:
        anyio.run(scenario, server.port)


# -- stdio ---------------------------------------------------------------------------------------------------


def stdio_config(tmp_path: Path) -> Path:
    config = tmp_path / "patchbay.toml"
    config.write_text(
        '[server]\nname = "stdio-logs"\n\n[store]\nurl = "sqlite:///:memory:"\n\n'
        f'[[connectors]]\nname = "fx"\ntype = "python"\npath = {json.dumps(str(TOOLS_FILE))}\nprefix = ""\n'
    )
    return config


class StdioClient:
    def __init__(self, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.process, self.stderr = process, stderr

    async def exchange(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(body).encode() + b"\n")
        await self.process.stdin.drain()
        received: list[dict[str, Any]] = []
        with anyio.fail_after(DEADLINE):
            while not received or received[-1].get("id") != body["id"] or "method" in received[-1]:
                line = await self.process.stdout.readline()
                assert line, f"the stdio server closed its stdout: {self.stderr.read_text(errors='replace')}"
                received.append(json.loads(line))
        return received


async def test_stdio_gets_logs_from_info_until_it_sets_a_level(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "patchbay", "serve", "--stdio", "--config", str(stdio_config(tmp_path))]
    stderr = tmp_path / "stderr.log"
    errors = stderr.open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errors, cwd=tmp_path
    )
    try:
        client = StdioClient(process, stderr)
        assert "result" in (await client.exchange(initialize_body(request_id=1)))[-1]
        chatty = request("tools/call", {"name": "chatty", "arguments": {}}, 2)
        assert log_levels(await client.exchange(chatty)) == FROM_INFO
        assert await client.exchange(request("logging/setLevel", {"level": "debug"}, 3)) == [
            {"jsonrpc": "2.0", "id": 3, "result": {}}
        ]
        assert log_levels(await client.exchange({**chatty, "id": 4})) == FROM_DEBUG
    finally:
        assert process.stdin is not None
        process.stdin.close()  # stdin closed: the server exits by itself
        with anyio.fail_after(DEADLINE):
            await process.wait()
        errors.close()


async def test_stdio_frames_bad_params_as_every_other_transport(tmp_path: Path) -> None:
    """Non-object params are -32600 on stdio as over HTTP, batches and legacy SSE (docs/protocol.md); a notification
    with them is dropped without taking the server down."""
    command = [sys.executable, "-m", "patchbay", "serve", "--stdio", "--config", str(stdio_config(tmp_path))]
    stderr = tmp_path / "stderr.log"
    errors = stderr.open("wb")
    process = await asyncio.create_subprocess_exec(
        *command, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=errors, cwd=tmp_path
    )
    try:
        client = StdioClient(process, stderr)
        assert "result" in (await client.exchange(initialize_body(request_id=1)))[-1]
        assert process.stdin is not None
        process.stdin.write(b'{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": [1]}\n')
        (answer,) = await client.exchange({"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": [1]})
        assert answer["error"]["code"] == -32600
        (answer,) = await client.exchange({"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": {}})
        assert "chatty" in [t["name"] for t in answer["result"]["tools"]]
    finally:
        assert process.stdin is not None
        process.stdin.close()
        with anyio.fail_after(DEADLINE):
            await process.wait()
        errors.close()
    assert "Traceback" not in stderr.read_text(errors="replace")
