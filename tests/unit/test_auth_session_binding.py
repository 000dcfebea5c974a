"""2025-era sessions belong to the principal that opened them (MCP security best practices, "Session Hijacking"):
a session id presented with another principal's token is answered 404, exactly like an unknown session, on every
method (POST, GET stream, DELETE), and the owner keeps using it. Legacy HTTP+SSE streams are bound the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.authflow import ACCEPT, TOOLS, add_user, client_for, running
from fixtures.wire import live_server

from patchbay.auth.principal import Principal
from patchbay.settings import from_dict
from patchbay.transport.sessions import owner_of

pytestmark = pytest.mark.anyio
INIT = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}


async def keys(app: Any) -> tuple[str, str]:
    core = app.runtime.auth.core
    _, a = await core.run(core.keys.create, "key-a", ["mcp"])
    _, b = await core.run(core.keys.create, "key-b", ["mcp"])
    return a, b


def headers(token: str, session_id: str | None = None) -> dict[str, str]:
    sent = {**ACCEPT, "authorization": f"Bearer {token}", "mcp-protocol-version": "2025-11-25"}
    if session_id is not None:
        sent["mcp-session-id"] = session_id
    return sent


async def rpc(http: httpx.AsyncClient, token: str, method: str, session_id: str | None, **params: Any) -> Any:
    body = {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}
    return await http.post("/mcp", json=body, headers=headers(token, session_id))


async def test_another_principals_token_cannot_use_a_session(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        token_a, token_b = await keys(app)
        opened = await rpc(http, token_a, "initialize", None, **INIT)
        assert opened.status_code == 200
        sid = opened.headers["mcp-session-id"]
        unknown = await rpc(http, token_b, "tools/list", "no-such-session")

        hijacked = await rpc(http, token_b, "tools/call", sid, name="whoami", arguments={})
        assert hijacked.status_code == 404
        assert hijacked.json() == unknown.json()  # nothing tells B that the session exists
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        assert (await http.post("/mcp", json=note, headers=headers(token_b, sid))).status_code == 404
        answer = {"jsonrpc": "2.0", "id": "srv-1", "result": {}}
        assert (await http.post("/mcp", json=answer, headers=headers(token_b, sid))).status_code == 404
        stream = {**headers(token_b, sid), "accept": "text/event-stream"}
        assert (await http.get("/mcp", headers=stream)).status_code == 404
        assert (await http.delete("/mcp", headers=headers(token_b, sid))).status_code == 404

        mine = await rpc(http, token_a, "tools/call", sid, name="whoami", arguments={})
        assert mine.status_code == 200 and "mcp-session-id" not in mine.headers  # only initialize issues one
        assert mine.json()["result"]["structuredContent"]["subject"] == "key:key-a"
        assert (await http.delete("/mcp", headers=headers(token_a, sid))).status_code == 200
        assert (await rpc(http, token_a, "tools/list", sid)).status_code == 404


async def test_an_anonymous_session_is_not_taken_over_by_a_token(tmp_path: Path) -> None:
    # Mixed auth: the anonymous caller opens a session; a signed-in caller must open their own.
    async with running(tmp_path, connector={"public_tools": ["search"]}) as app, client_for(app) as http:
        await add_user(app)
        token_a, _ = await keys(app)
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": INIT}
        opened = await http.post("/mcp", json=body, headers={**ACCEPT, "mcp-protocol-version": "2025-11-25"})
        sid = opened.headers["mcp-session-id"]
        assert (await rpc(http, token_a, "tools/list", sid)).status_code == 404
        anonymous = {**ACCEPT, "mcp-protocol-version": "2025-11-25", "mcp-session-id": sid}
        listed = await http.post("/mcp", json={**body, "method": "tools/list", "params": {}}, headers=anonymous)
        assert listed.status_code == 200


def test_the_owner_is_the_principals_kind_subject_and_client() -> None:
    alice = Principal(subject="user:alice", kind="user", client_id="chatgpt")
    assert owner_of(None) is None
    assert owner_of(alice) == owner_of(
        Principal(subject="user:alice", kind="user", client_id="chatgpt", scopes=frozenset({"x"}))
    )
    assert owner_of(alice) != owner_of(Principal(subject="user:alice", kind="user", client_id="claude"))
    assert owner_of(alice) != owner_of(Principal(subject="user:mallory", kind="user", client_id="chatgpt"))
    assert "alice" not in (owner_of(alice) or "")  # a digest: nothing personal is kept on the session


async def next_event(lines: Any) -> tuple[str | None, str]:
    """The next SSE event on a legacy stream: its name and data (keep-alive comments skipped)."""
    name, data = None, []
    async for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            return name, "\n".join(data)
    raise AssertionError("the stream ended")


def test_a_legacy_sse_stream_takes_messages_only_from_the_key_that_opened_it(tmp_path: Path) -> None:
    """GET /sse opened with key A: key B's and anonymous messages to it are refused and never reach it."""
    data = {
        "server": {"name": "legacy-binding", "sse_keepalive_seconds": 0.2},
        "store": {"url": f"sqlite:///{tmp_path / 'legacy.db'}"},
        "auth": {"mode": "api_key"},
        "connectors": [{"name": "t", "type": "python", "path": str(TOOLS), "prefix": ""}],
    }
    with live_server(from_dict(data, base_dir=tmp_path)) as server:
        core = server.app.runtime.auth.core
        key_a, key_b = core.keys.create("key-a", ["mcp"])[1], core.keys.create("key-b", ["mcp"])[1]

        def bearer(key: str) -> dict[str, str]:
            return {"authorization": f"Bearer {key}", "content-type": "application/json"}

        async def scenario() -> None:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=10) as http:
                with anyio.fail_after(10):
                    assert (await http.get("/sse")).status_code == 401
                async with http.stream("GET", "/sse", headers=bearer(key_a)) as stream:
                    assert stream.status_code == 200
                    lines = stream.aiter_lines()
                    with anyio.fail_after(5):
                        kind, endpoint = await next_event(lines)
                    assert kind == "endpoint" and "session_id=" in endpoint
                    call = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "whoami", "arguments": {}}}
                    other = await http.post(endpoint, json={**call, "id": 1}, headers=bearer(key_b))
                    assert other.status_code == 404
                    assert other.json()["error"]["code"] == -32001
                    anonymous = await http.post(
                        endpoint, json={**call, "id": 2}, headers={"content-type": "application/json"}
                    )
                    assert anonymous.status_code == 401
                    mine = await http.post(endpoint, json={**call, "id": 3}, headers=bearer(key_a))
                    assert mine.status_code == 202
                    with anyio.fail_after(5):
                        kind, payload = await next_event(lines)
                    answer = json.loads(payload)
                    assert answer["id"] == 3  # the first message on A's stream: nothing of B's or anonymous reached it
                    assert answer["result"]["structuredContent"]["subject"] == "key:key-a"

        anyio.run(scenario)
