"""2025-era sessions over real HTTP: anonymous callers cannot push a signed-in user's session out, one GET stream
per session (409 for a second), and notifications/cancelled stops the request it names.

reference/mcp-requirements.md §3.1 (sessions, GET stream, cancellation); the hardening issue's "Session cap".
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx2 as httpx
import pytest
from fixtures.authflow import TOOLS as AUTH_TOOLS
from fixtures.wire import (
    JSON_POST,
    TOOLS_MODULE,
    assert_rpc_error,
    client_for,
    initialize_body,
    live_server,
    open_session,
    request,
    running,
    settings_for,
)

from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio
STREAM = {"accept": "text/event-stream"}


async def test_anonymous_callers_cannot_push_out_a_signed_in_users_session(tmp_path: Path) -> None:
    data = {
        "server": {"name": "caps", "max_sessions_per_principal": 3},
        "store": {"url": f"sqlite:///{tmp_path / 'caps.db'}"},
        "auth": {"mode": "oauth"},
        "connectors": [
            {"name": "t", "type": "python", "path": str(AUTH_TOOLS), "prefix": "", "public_tools": ["search"]}
        ],
    }
    async with running(from_dict(data, base_dir=tmp_path)) as app, client_for(app) as http:
        core = app.runtime.auth.core
        _, key = await core.run(core.keys.create, "alice", ["mcp"])
        signed_in = {**JSON_POST, "authorization": f"Bearer {key}"}
        opened = await http.post("/mcp", json=initialize_body(), headers=signed_in)
        mine = {**signed_in, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        anonymous = [await open_session(http) for _ in range(20)]

        listed = await http.post("/mcp", json=request("tools/list", {}, 1), headers=mine)
        assert listed.status_code == 200, listed.text
        assert app.sessions.count(None) == 3  # the anonymous bucket holds its cap, no more
        assert (await http.post("/mcp", json=request("ping", {}, 2), headers=anonymous[0])).status_code == 404
        assert (await http.post("/mcp", json=request("ping", {}, 3), headers=anonymous[-1])).status_code == 200


def wait_until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        threading.Event().wait(0.01)


def test_a_second_get_stream_on_a_session_is_409_until_the_first_ends(tmp_path: Path) -> None:
    with live_server(settings_for(tmp_path, sse_keepalive_seconds=0.2)) as server:

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http:
                opened = await http.post(server.url, json=initialize_body(), headers=JSON_POST)
                sid = opened.headers["mcp-session-id"]
                headers = {**STREAM, "mcp-session-id": sid, "mcp-protocol-version": "2025-11-25"}
                async with http.stream("GET", server.url, headers=headers) as first:
                    assert first.status_code == 200
                    with anyio.fail_after(5):  # a second stream let through would never end
                        second = await http.get(server.url, headers=headers)
                    error = assert_rpc_error(second, 409, -32600)
                    assert error["message"] == "Conflict: this session already has an open GET stream"
                session = server.app.sessions.lookup(sid)
                await anyio.to_thread.run_sync(wait_until, lambda: session.standalone is None)
                async with http.stream("GET", server.url, headers=headers) as again:
                    assert again.status_code == 200

        anyio.run(scenario)


async def test_notifications_cancelled_stops_the_request_it_names(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path)) as app, client_for(app) as http:
        tools = sys.modules[TOOLS_MODULE]
        tools.HANG_STARTED.clear()
        tools.HANG_CANCELLED.clear()
        headers = await open_session(http)
        call = asyncio.ensure_future(
            http.post("/mcp", json=request("tools/call", {"name": "hang", "arguments": {}}, "slow-1"), headers=headers)
        )
        started = await anyio.to_thread.run_sync(tools.HANG_STARTED.wait, 5.0)
        assert started, "the tool never started"
        other = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "another"}}
        assert (await http.post("/mcp", json=other, headers=headers)).status_code == 202
        assert not call.done() and not tools.HANG_CANCELLED.is_set()  # naming another request stops nothing
        cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": "slow-1"}}
        assert (await http.post("/mcp", json=cancel, headers=headers)).status_code == 202
        with anyio.fail_after(5):
            response = await call
        assert tools.HANG_CANCELLED.is_set()
        # MCP cancellation: a cancelled request gets no JSON-RPC response; the HTTP exchange ends empty.
        assert response.status_code == 202 and response.content == b""
        listed = await http.post("/mcp", json=request("tools/list", {}, 9), headers=headers)
        assert listed.status_code == 200  # the session goes on
