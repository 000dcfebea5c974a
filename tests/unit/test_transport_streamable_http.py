"""/mcp details the era and error tests leave out: CORS for browser-based clients, sign-in on /mcp and a session's
owner, the text of each refusal, Accept wildcards, an SSE-only initialize, priming, a server→client request on the
POST stream, which cancellations end a call quietly, and what a call's audit record says about its request.

reference/mcp-requirements.md §3.1, §3.6, R-011, R-015, R-018; docs/protocol.md "Security checks on every HTTP
request"; docs/auth.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from fixtures.wire import (
    JSON_POST,
    LATEST,
    META_CAPS,
    META_INFO,
    META_LOG_LEVEL,
    MODERN,
    TOOLS_FILE,
    TOOLS_MODULE,
    assert_json,
    assert_rpc_error,
    assert_still_serving,
    client_for,
    initialize_body,
    live_server,
    modern_request,
    open_session,
    parse_sse,
    request,
    running,
    settings_for,
)

from fixtures import authflow
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

INVALID_REQUEST = -32600
INVALID_PARAMS = -32602
SESSION_NOT_FOUND = -32001
INSPECTOR = "http://localhost:6274"  # the MCP Inspector's web UI, a loopback origin
SSE_ONLY = {"content-type": "application/json", "accept": "text/event-stream"}
STREAM = {"accept": "text/event-stream"}
GONE = {"mcp-session-id": "no-such-session", "mcp-protocol-version": LATEST}
MISSING_TOKEN = "Authentication required: send Authorization: Bearer <token>"


async def test_a_preflight_from_an_allowed_origin_is_204_and_echoes_the_requested_headers(
    client: httpx.AsyncClient,
) -> None:
    """Mcp-Param-* names depend on the tool, so a preflight's requested headers are allowed as asked."""
    asked = {"origin": INSPECTOR, "access-control-request-method": "POST"}
    response = await client.options("/mcp", headers={**asked, "access-control-request-headers": "mcp-param-region"})
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == INSPECTOR
    assert response.headers["access-control-allow-headers"] == "mcp-param-region"
    assert response.headers["access-control-allow-methods"] == "GET, POST, DELETE, OPTIONS"
    plain = await client.options("/mcp", headers=asked)
    assert plain.status_code == 204
    assert "Mcp-Session-Id" in plain.headers["access-control-allow-headers"]


async def test_answers_to_an_allowed_origin_carry_cors_headers_and_no_others_do(client: httpx.AsyncClient) -> None:
    """docs/protocol.md: CORS headers only for an Origin that passed the check, so the session id is readable."""
    response = await client.post("/mcp", json=initialize_body(), headers={**JSON_POST, "origin": INSPECTOR})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == INSPECTOR
    assert "Mcp-Session-Id" in response.headers["access-control-expose-headers"]
    assert response.headers["vary"] == "Origin"
    without = await client.post("/mcp", json=initialize_body(), headers=JSON_POST)
    assert without.status_code == 200
    assert "access-control-allow-origin" not in without.headers


async def test_a_refused_host_or_origin_is_named_in_the_refusal(client: httpx.AsyncClient) -> None:
    host = await client.post("/mcp", json=request("ping"), headers={**JSON_POST, "host": "evil.example"})
    assert "'evil.example'" in assert_rpc_error(host, 421, INVALID_REQUEST)["message"]
    origin = await client.post("/mcp", json=request("ping"), headers={**JSON_POST, "origin": "https://evil.example"})
    assert "'https://evil.example'" in assert_rpc_error(origin, 403, INVALID_REQUEST)["message"]


REFUSALS = [
    pytest.param(
        "POST",
        {"content-type": "application/json", "accept": "text/html"},
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        (406, INVALID_REQUEST, None),
        "Not Acceptable: the client must accept application/json and text/event-stream",
        id="not-acceptable",
    ),
    pytest.param(
        "POST",
        {"content-type": "text/plain"},
        b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        (415, INVALID_REQUEST, None),
        "Unsupported Media Type: send Content-Type: application/json",
        id="not-json",
    ),
    pytest.param("POST", {}, b"{", (400, -32700, None), "Parse error: the body is not valid JSON", id="parse-error"),
    pytest.param(
        "POST",
        {},
        b'{"jsonrpc":"2.0","id":3,"method":"ping","params":[1]}',
        (400, INVALID_REQUEST, 3),
        "Invalid Request: method must be a string and params an object",
        id="params-not-an-object",
    ),
    pytest.param(
        "POST",
        {},
        b'{"jsonrpc":"2.0","id":1.5,"method":"ping"}',
        (400, INVALID_REQUEST, None),
        "Invalid Request: id must be a string or number",
        id="float-id",
    ),
    pytest.param(
        "POST",
        {},
        b'{"jsonrpc":"2.0","result":{}}',
        (400, INVALID_REQUEST, None),
        "Invalid Request: a message needs a method, or an id with a result or error",
        id="result-without-id",
    ),
    pytest.param(
        "POST",
        GONE,
        b'{"jsonrpc":"2.0","id":4,"method":"tools/list"}',
        (404, SESSION_NOT_FOUND, 4),
        "Session not found: initialize a new session",
        id="request-unknown-session",
    ),
    pytest.param(
        "POST",
        GONE,
        b'{"jsonrpc":"2.0","method":"notifications/initialized"}',
        (404, SESSION_NOT_FOUND, None),
        "Session not found",
        id="notification-unknown-session",
    ),
    pytest.param(
        "POST",
        GONE,
        b'{"jsonrpc":"2.0","id":"srv-1","result":{}}',
        (404, SESSION_NOT_FOUND, None),
        "Session not found",
        id="answer-unknown-session",
    ),
    pytest.param(
        "POST",
        {**GONE, "mcp-protocol-version": "2025-03-26"},
        b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]',
        (404, SESSION_NOT_FOUND, None),
        "Session not found",
        id="batch-unknown-session",
    ),
    pytest.param(
        "POST",
        {},
        b"42",
        (400, INVALID_REQUEST, None),
        "Invalid Request: expected a JSON-RPC 2.0 message object",
        id="not-an-object",
    ),
    pytest.param(
        "POST",
        {"mcp-protocol-version": MODERN},
        b'{"jsonrpc":"2.0","id":5,"method":"tools/list"}',
        (400, INVALID_PARAMS, 5),
        "A 2026-07-28 request must carry params._meta['io.modelcontextprotocol/protocolVersion'] "
        "and ['io.modelcontextprotocol/clientCapabilities']",
        id="2026-header-without-meta",
    ),
    pytest.param(
        "POST",
        {},
        b'{"jsonrpc":"2.0","id":6,"method":"initialize","params":{}}',
        (400, INVALID_PARAMS, 6),
        "initialize needs params.protocolVersion",
        id="initialize-without-version",
    ),
    pytest.param("GET", {}, b"", (404, SESSION_NOT_FOUND, None), "Session not found", id="stream-unknown-session"),
    pytest.param(
        "DELETE", {}, b"", (400, INVALID_REQUEST, None), "Bad Request: DELETE needs Mcp-Session-Id", id="delete-no-id"
    ),
    pytest.param("DELETE", GONE, b"", (404, SESSION_NOT_FOUND, None), "Session not found", id="delete-unknown-session"),
]


@pytest.mark.parametrize(("method", "headers", "content", "answer", "message"), REFUSALS)
async def test_each_refusal_says_what_was_wrong(
    client: httpx.AsyncClient,
    method: str,
    headers: dict[str, str],
    content: bytes,
    answer: tuple[int, int, Any],
    message: str,
) -> None:
    """R-018: a JSON-RPC error body with the status the spec names, and a message a person can act on."""
    base = {**JSON_POST, **STREAM} if method == "GET" else JSON_POST
    if method == "GET" and not headers:
        headers = GONE
    response = await client.request(method, "/mcp", content=content or None, headers={**base, **headers})
    status, code, request_id = answer
    assert assert_rpc_error(response, status, code, request_id)["message"] == message
    await assert_still_serving(client)


@pytest.mark.parametrize(
    ("method", "headers", "allow", "message"),
    [
        ("PUT", {}, "GET, POST, DELETE, OPTIONS", "Method PUT not allowed on the MCP endpoint"),
        (
            "GET",
            {"accept": "application/json"},
            "GET, POST, DELETE",
            "This MCP endpoint takes POST; GET opens an event stream and needs Accept: text/event-stream and an "
            "Mcp-Session-Id",
        ),
        ("GET", STREAM, "POST", "No standalone stream without a session: initialize first"),
    ],
    ids=["other-method", "get-without-event-stream", "get-without-session"],
)
async def test_a_405_names_the_methods_allowed(
    client: httpx.AsyncClient, method: str, headers: dict[str, str], allow: str, message: str
) -> None:
    """RFC 9110 §15.5.6: a 405 carries Allow; R-015: a GET that cannot open a stream is 405."""
    response = await client.request(method, "/mcp", headers=headers)
    assert assert_rpc_error(response, 405, INVALID_REQUEST)["message"] == message
    assert response.headers["allow"] == allow


async def test_a_body_over_the_limit_names_the_limit(tmp_path: Path) -> None:
    async with running(settings_for(tmp_path, max_body_bytes=2000)) as app, client_for(app) as http:
        body = request("tools/call", {"name": "echo", "arguments": {"text": "x" * 2000}})
        response = await http.post("/mcp", json=body, headers=JSON_POST)
        error = assert_rpc_error(response, 413, INVALID_REQUEST)
        assert error["message"] == "Request body larger than 2000 bytes"


async def test_2026_meta_of_the_wrong_shape_or_version_is_refused_with_its_own_text(client: httpx.AsyncClient) -> None:
    body, headers = modern_request("tools/list", request_id=7)
    body["params"]["_meta"][META_CAPS] = []
    error = assert_rpc_error(await client.post("/mcp", json=body, headers=headers), 400, INVALID_PARAMS, 7)
    assert error["message"] == (
        "params._meta must carry io.modelcontextprotocol/protocolVersion (a string) and "
        "io.modelcontextprotocol/clientCapabilities (an object)"
    )
    body, headers = modern_request("tools/list", request_id=8)
    body["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = "2099-01-01"
    headers["mcp-protocol-version"] = "2099-01-01"
    error = assert_rpc_error(await client.post("/mcp", json=body, headers=headers), 400, -32022, 8)
    assert error["message"] == "Unsupported protocol version"


async def test_accept_application_wildcard_gets_json_and_any_type_gets_progress_as_sse(
    client: httpx.AsyncClient,
) -> None:
    """RFC 9110 §12.5.1: application/* accepts JSON; */* accepts the event stream too."""
    json_only = {"content-type": "application/json", "accept": "application/*"}
    listed = await client.post("/mcp", json=request("tools/list", {}, 3), headers=json_only)
    assert assert_json(listed)["id"] == 3
    body = request("tools/call", {"name": "progress", "_meta": {"progressToken": "t"}}, 4)
    anything = await client.post("/mcp", json=body, headers={"content-type": "application/json", "accept": "*/*"})
    assert anything.headers["content-type"].startswith("text/event-stream")
    sent = [json.loads(e.data) for e in parse_sse(anything.text) if e.data]
    assert [m.get("method") for m in sent[:-1]] == ["notifications/progress"] * 3
    assert sent[-1]["id"] == 4


async def test_an_initialize_naming_a_version_we_lack_and_no_capabilities_gets_our_latest_and_none(
    client: httpx.AsyncClient,
) -> None:
    """MCP lifecycle: the server answers a version it does not support with its latest one; a client that
    declares no capabilities has none, so a tool that asks the user is refused instead of failing."""
    body = initialize_body("1999-01-01", request_id=1)
    del body["params"]["capabilities"]
    opened = await client.post("/mcp", json=body, headers=JSON_POST)
    assert assert_json(opened)["result"]["protocolVersion"] == LATEST
    session = {**JSON_POST, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
    asked = await client.post(
        "/mcp", json=request("tools/call", {"name": "ask_name", "arguments": {}}, 2), headers=session
    )
    refused = assert_json(asked)["result"]
    assert refused["isError"] is True
    assert refused["content"][0]["text"] == "The client did not declare the 'elicitation' capability this tool needs."


async def test_an_sse_only_client_is_initialized_over_sse_and_gets_its_session_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json=initialize_body(request_id=1), headers=SSE_ONLY)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    [answer] = [json.loads(e.data) for e in parse_sse(response.text) if e.data]
    assert answer["id"] == 1 and answer["result"]["protocolVersion"] == LATEST
    session = {**JSON_POST, "mcp-session-id": response.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
    listed = await client.post("/mcp", json=request("tools/list", {}, 2), headers=session)
    assert listed.status_code == 200 and "tools" in assert_json(listed)["result"]


async def test_a_bug_of_ours_is_a_json_500_without_its_detail_and_is_logged(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """STYLE.md habit 5: nothing leaks a stack trace to a client."""

    async def broken(*args: Any) -> Any:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(app.runtime.dispatcher, "dispatch", broken)
    with caplog.at_level(logging.ERROR, logger="patchbay.transport"):
        response = await client.post("/mcp", json=request("tools/list", {}, 5), headers=JSON_POST)
    assert assert_rpc_error(response, 500, -32603)["message"] == "Internal error"
    assert "secret detail" not in response.text
    logged = [r for r in caplog.records if r.name == "patchbay.transport"]
    assert [r.getMessage() for r in logged] == ["unhandled error on POST /mcp"]
    assert logged[0].exc_info is not None


async def test_a_bug_after_the_stream_has_ended_leaves_the_clients_stream_as_it_was_and_is_logged(
    client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once the response has gone out, a bug of ours cannot become a 500: the app logs it and ends quietly."""

    async def ends_then_breaks(method: str, params: Any, scope: Any) -> Any:
        await scope.close_stream()  # SSE polling: the response ends before the result
        raise RuntimeError("secret detail")

    headers = await open_session(client)
    monkeypatch.setattr(app.runtime.dispatcher, "dispatch", ends_then_breaks)
    with caplog.at_level(logging.ERROR, logger="patchbay.transport"):
        response = await client.post("/mcp", json=request("tools/call", {"name": "quiet"}, 6), headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    # the priming event and the early end's retry, and no error after them
    assert [(e.data, e.retry) for e in parse_sse(response.text)] == [("", 1000), ("", 1000)]
    assert "secret detail" not in response.text
    logged = [r for r in caplog.records if r.name == "patchbay.transport"]
    assert [r.getMessage() for r in logged] == ["unhandled error on POST /mcp"]


async def test_a_post_with_no_accept_header_at_all_is_answered_as_json(client: httpx.AsyncClient) -> None:
    """RFC 9110 §12.5.1: no Accept header means any media type is acceptable (httpx sends */* unless told not to,
    so test_imperfect_accept_headers_are_served never sends none)."""
    bare = client.build_request("POST", "/mcp", json=request("tools/list", {}, 8), headers=JSON_POST)
    del bare.headers["accept"]
    response = await client.send(bare)
    assert assert_json(response)["id"] == 8
    assert "tools" in assert_json(response)["result"]


async def test_a_post_with_no_content_type_header_at_all_is_served(client: httpx.AsyncClient) -> None:
    """Only a Content-Type that names something other than JSON is 415; a POST that names none is read as JSON,
    as one without Accept is served (httpx's ``content=`` sends no Content-Type)."""
    response = await client.post(
        "/mcp", content=b'{"jsonrpc":"2.0","id":11,"method":"tools/list"}', headers={"accept": "application/json"}
    )
    assert "content-type" not in response.request.headers
    assert assert_json(response)["id"] == 11
    assert "tools" in assert_json(response)["result"]


async def test_a_sessionless_cancellation_or_answer_is_accepted_and_logs_no_error(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """R-011: 202 with no body; without a session there is nothing to cancel or to answer."""
    messages = [
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}},
        {"jsonrpc": "2.0", "id": "srv-1", "result": {}},
    ]
    with caplog.at_level(logging.WARNING, logger="patchbay"):
        for message in messages:
            response = await client.post("/mcp", json=message, headers=JSON_POST)
            assert response.status_code == 202 and response.content == b""
        listed = await client.post("/mcp", json=request("tools/call", {"name": "quiet"}, 9), headers=JSON_POST)
    assert assert_json(listed)["result"]["content"][0]["text"] == "quiet 2025-03-26"  # the headerless default
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_batch_without_a_session_or_version_header_is_served_as_2025_03_26(client: httpx.AsyncClient) -> None:
    """MCP 2025-06-18 transports: a request without MCP-Protocol-Version is taken as 2025-03-26, batches included."""
    response = await client.post("/mcp", json=[request("tools/list", {}, 1), request("ping", {}, 2)], headers=JSON_POST)
    assert response.status_code == 200, response.text
    assert sorted(a["id"] for a in assert_json(response)) == [1, 2]


# -- sign-in on /mcp --------------------------------------------------------------------------------------------


async def test_without_public_tools_a_request_without_a_valid_token_is_401_with_a_challenge(tmp_path: Path) -> None:
    """RFC 6750 §3, MCP authorization: 401, WWW-Authenticate pointing at the resource metadata, a JSON body."""
    async with authflow.running(tmp_path) as app, authflow.client_for(app) as http:
        for sent in ({}, {"authorization": "Bearer not-a-token"}):
            response = await http.post("/mcp", json=request("tools/list", {}, 1), headers={**JSON_POST, **sent})
            error = assert_rpc_error(response, 401, INVALID_REQUEST)
            challenge = response.headers["www-authenticate"]
            assert challenge.startswith('Bearer resource_metadata="http'), challenge
            if not sent:
                assert error["message"] == MISSING_TOKEN
                assert "error=" not in challenge
            else:
                assert 'error="invalid_token"' in challenge


async def test_without_public_tools_an_anonymous_notification_answer_get_or_delete_is_401_too(tmp_path: Path) -> None:
    """docs/auth.md: without public tools the caller is authenticated before anything else on /mcp, so no method
    gets round sign-in, and a session id is neither looked up nor confirmed for an anonymous caller."""
    sent = [
        ("POST", {"jsonrpc": "2.0", "method": "notifications/initialized"}),
        ("POST", {"jsonrpc": "2.0", "id": "srv-1", "result": {}}),
        ("GET", None),
        ("DELETE", None),
    ]
    async with authflow.running(tmp_path) as app, authflow.client_for(app) as http:
        for method, body in sent:
            response = await http.request(method, "/mcp", json=body, headers={**JSON_POST, **GONE})
            assert assert_rpc_error(response, 401, INVALID_REQUEST)["message"] == MISSING_TOKEN, method
            assert response.headers["www-authenticate"].startswith("Bearer resource_metadata=")


async def test_with_public_tools_an_anonymous_caller_may_only_discover_and_call_tools(tmp_path: Path) -> None:
    """docs/auth.md mixed auth: anonymous requests reach discovery and tools/call only; no batch gets round it."""
    async with (
        authflow.running(tmp_path, connector={"public_tools": ["search"]}) as app,
        authflow.client_for(app) as http,
    ):
        called = await http.post(
            "/mcp", json=request("tools/call", {"name": "search", "arguments": {"query": "q"}}, 1), headers=JSON_POST
        )
        assert assert_json(called)["result"]["content"][0]["text"] == "results for q"
        for refused in (request("resources/list", {}, 2), [request("tools/list", {}, 3)]):
            response = await http.post("/mcp", json=refused, headers=JSON_POST)
            assert assert_rpc_error(response, 401, INVALID_REQUEST)["message"] == MISSING_TOKEN
            assert response.headers["www-authenticate"].startswith("Bearer resource_metadata=")


async def test_a_signed_in_callers_principal_reaches_the_tool_in_every_kind_of_request(tmp_path: Path) -> None:
    async with (
        authflow.running(tmp_path, connector={"public_tools": ["search"]}) as app,
        authflow.client_for(app) as http,
    ):
        core = app.runtime.auth.core
        _, key = await core.run(core.keys.create, "key-a", ["mcp"])
        auth = {**JSON_POST, "authorization": f"Bearer {key}"}
        whoami = {"name": "whoami", "arguments": {}}
        opened = await http.post("/mcp", json=initialize_body("2025-03-26"), headers=auth)
        session = {**auth, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-03-26"}

        sessionless = await http.post("/mcp", json=request("tools/call", whoami, 1), headers=auth)
        in_session = await http.post("/mcp", json=request("tools/call", whoami, 2), headers=session)
        batch = await http.post("/mcp", json=[request("tools/call", whoami, 3)], headers=session)
        body, headers = modern_request("tools/call", whoami, request_id=4)
        modern = await http.post("/mcp", json=body, headers={**headers, "authorization": f"Bearer {key}"})

        answers = [assert_json(sessionless), assert_json(in_session), assert_json(batch)[0], assert_json(modern)]
        assert [a["id"] for a in answers] == [1, 2, 3, 4]
        assert [a["result"]["structuredContent"]["subject"] for a in answers] == ["key:key-a"] * 4


# -- what the audit trail learns from the HTTP request ----------------------------------------------------------


async def test_a_calls_audit_record_names_the_transport_request_and_client_in_both_eras(tmp_path: Path) -> None:
    database = tmp_path / "store.db"
    settings = from_dict(
        {
            "store": {"url": f"sqlite:///{database}"},
            "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
        },
        base_dir=tmp_path,
    )
    echo = {"name": "echo", "arguments": {"text": "hi"}}
    async with running(settings) as app, client_for(app) as http:
        session = await open_session(http)
        legacy = await http.post(
            "/mcp", json=request("tools/call", echo, 11), headers={**session, "x-request-id": "r-25"}
        )
        assert legacy.status_code == 200, legacy.text
        body, headers = modern_request("tools/call", echo, request_id=12)
        body["params"]["_meta"][META_INFO] = {"name": "modern-client", "version": "2.0"}
        modern = await http.post("/mcp", json=body, headers={**headers, "x-request-id": "r-26"})
        assert modern.status_code == 200, modern.text
        records: list[dict[str, Any]] = []
        with anyio.fail_after(5):  # a read's record may trail its answer by [audit] read_window_ms
            while len(records) < 2:
                with contextlib.closing(sqlite3.connect(database)) as db:
                    rows = db.execute("SELECT body FROM audit_records WHERE kind = 'call' ORDER BY seq").fetchall()
                records = [json.loads(row[0]) for row in rows]
                await anyio.sleep(0.02)
    fields = ("jsonrpc_id", "transport", "request_ref", "era", "protocol_version", "client_info")
    assert [tuple(r[f] for f in fields) for r in records] == [
        (11, "streamable_http", "r-25", "legacy", LATEST, {"name": "unit-test", "version": "1.0.0"}),
        (12, "streamable_http", "r-26", "modern", MODERN, {"name": "modern-client", "version": "2.0"}),
    ]


async def test_the_owner_of_a_signed_in_session_is_served_on_every_method(tmp_path: Path) -> None:
    """A session belongs to the principal that opened it (test_auth_session_binding.py); its owner's
    notifications, answers, resumed streams and DELETE are all served."""
    settings = from_dict(
        {
            "server": {"name": "patchbay-unit"},
            "store": {"url": f"sqlite:///{tmp_path / 'auth.db'}"},
            "auth": {"mode": "oauth"},
            "connectors": [{"name": "fx", "type": "python", "path": str(TOOLS_FILE), "prefix": ""}],
        },
        base_dir=tmp_path,
    )
    async with running(settings) as app, client_for(app) as http:
        core = app.runtime.auth.core
        _, key = await core.run(core.keys.create, "key-a", ["mcp"])
        auth = {**JSON_POST, "authorization": f"Bearer {key}"}
        opened = await http.post("/mcp", json=initialize_body(), headers=auth)
        session = {**auth, "mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": LATEST}
        note = await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        answer = await http.post("/mcp", json={"jsonrpc": "2.0", "id": "srv-1", "result": {}}, headers=session)
        assert (note.status_code, answer.status_code) == (202, 202)

        sys.modules[TOOLS_MODULE].RELEASE.set()  # the tool ends its POST stream early, then returns
        polled = await http.post("/mcp", json=request("tools/call", {"name": "polling"}, 70), headers=session)
        priming = parse_sse(polled.text)[0]
        with anyio.fail_after(10):  # in-process, a GET that streams instead of replaying would never return
            resumed = await http.get("/mcp", headers={**session, **STREAM, "last-event-id": priming.id or ""})
        assert resumed.status_code == 200
        assert "polling done" in resumed.text
        assert (await http.delete("/mcp", headers=session)).status_code == 200


@pytest.mark.parametrize(("version", "primed"), [("2025-11-25", True), ("2025-06-18", False)])
async def test_only_a_2025_11_25_stream_starts_with_a_priming_event_with_the_documented_retry(
    client: httpx.AsyncClient, version: str, primed: bool
) -> None:
    """docs/protocol.md: in 2025-11-25 sessions each stream starts with a priming event (an id, empty data,
    ``retry: 1000``); clients of earlier versions do not expect one."""
    headers = await open_session(client, version)
    body = request("tools/call", {"name": "progress", "_meta": {"progressToken": "t"}}, 3)
    first = parse_sse((await client.post("/mcp", json=body, headers=headers)).text)[0]
    if primed:
        assert first.id and (first.data, first.retry) == ("", 1000)
    else:
        assert json.loads(first.data)["method"] == "notifications/progress" and first.retry is None


async def test_an_unknown_method_is_named_in_its_error_in_both_eras(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    legacy = await client.post("/mcp", json=request("nope/nothing", {}, 9), headers=headers)
    assert assert_rpc_error(legacy, 200, -32601, 9)["message"] == "Method not found: nope/nothing"
    body, modern_headers = modern_request("nope/nothing", request_id=10)
    modern = await client.post("/mcp", json=body, headers=modern_headers)
    assert assert_rpc_error(modern, 404, -32601, 10)["message"] == "Method not found: nope/nothing"


async def test_a_2026_json_only_client_gets_json_and_a_log_level_that_is_not_a_string_sends_no_logs(
    client: httpx.AsyncClient,
) -> None:
    body, headers = modern_request("tools/call", {"name": "progress", "arguments": {}}, progressToken="p")
    response = await client.post("/mcp", json=body, headers={**headers, "accept": "application/json"})
    assert assert_json(response)["result"]["content"][0]["text"] == "progress done"
    body, headers = modern_request("tools/call", {"name": "chatty", "arguments": {}}, **{META_LOG_LEVEL: 5})
    chatty = await client.post("/mcp", json=body, headers=headers)
    assert assert_json(chatty)["result"]["content"][0]["text"] == "chatty done"


async def test_a_session_forgets_each_request_once_it_is_answered(client: httpx.AsyncClient, app: Any) -> None:
    """A session tracks its running requests for notifications/cancelled; answered ones must not pile up."""
    headers = await open_session(client)
    for request_id in range(3):
        body = request("tools/call", {"name": "quiet"}, request_id)
        assert (await client.post("/mcp", json=body, headers=headers)).status_code == 200
    assert app.sessions.lookup(headers["mcp-session-id"]).inflight == {}


@pytest.mark.parametrize("era", ["2025", "2026"])
async def test_a_cancellation_that_is_not_the_clients_propagates(client: httpx.AsyncClient, era: str) -> None:
    """Only the client's own cancellation (notifications/cancelled in 2025, closing the stream in 2026) ends a
    request quietly; any other cancellation of the task serving it (a server shutting down) must propagate."""
    tools = sys.modules[TOOLS_MODULE]
    tools.HANG_STARTED.clear()
    tools.HANG_CANCELLED.clear()
    if era == "2025":
        headers = await open_session(client)
        body = request("tools/call", {"name": "hang", "arguments": {}}, "h-1")
    else:
        body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}}, request_id="h-1")
    call = asyncio.ensure_future(client.post("/mcp", json=body, headers=headers))
    assert await anyio.to_thread.run_sync(tools.HANG_STARTED.wait, 5.0), "the tool never started"
    call.cancel()
    with anyio.fail_after(5), pytest.raises(asyncio.CancelledError):
        await call
    assert tools.HANG_CANCELLED.is_set()


def test_closing_the_stream_of_a_2026_call_cancels_it_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """§2.6 item 10: the client closing the response stream is cancellation; the server says so in its log."""

    def said() -> list[str]:
        return [r.getMessage() for r in caplog.records if "closed the stream" in r.getMessage()]

    with caplog.at_level(logging.INFO, logger="patchbay.transport"), live_server(settings_for(tmp_path)) as server:
        tools = sys.modules[TOOLS_MODULE]
        tools.HANG_STARTED.clear()
        tools.HANG_CANCELLED.clear()

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=10) as http, anyio.create_task_group() as group:
                body, headers = modern_request("tools/call", {"name": "hang", "arguments": {}}, request_id="gone-1")
                group.start_soon(functools.partial(http.post, server.url, json=body, headers=headers))
                assert await anyio.to_thread.run_sync(tools.HANG_STARTED.wait, 5.0), "the tool never started"
                group.cancel_scope.cancel()  # drops the connection mid-request
            assert await anyio.to_thread.run_sync(tools.HANG_CANCELLED.wait, 5.0), "the call went on running"

        anyio.run(scenario)
        deadline = time.monotonic() + 5
        while not said():  # the log line follows the tool's cancellation
            assert time.monotonic() < deadline, "nothing was logged"
            threading.Event().wait(0.01)
    assert said() == ["call 'gone-1' cancelled: the client closed the stream"]


def test_a_tool_asks_the_client_on_its_post_stream_and_gets_the_answer_posted_back(tmp_path: Path) -> None:
    """§3.1: in a 2025 session a server→client request (elicitation) travels on the call's SSE stream; the
    client POSTs its answer (202) and the result follows on the same stream."""
    with live_server(settings_for(tmp_path)) as server:

        async def scenario() -> dict[str, Any]:
            async with httpx.AsyncClient(timeout=10) as http:
                headers = await open_session(http, url=server.url)
                call = request("tools/call", {"name": "ask_name", "arguments": {}}, "ask-1")
                with anyio.fail_after(10):
                    async with http.stream("POST", server.url, json=call, headers=headers) as response:
                        assert response.headers["content-type"].startswith("text/event-stream")
                        lines = response.aiter_lines()
                        sent = (
                            json.loads(line[5:])
                            async for line in lines
                            if line.startswith("data:") and line[5:].strip()
                        )
                        asked = await anext(sent)
                        assert asked["method"] == "elicitation/create" and asked["id"] is not None
                        answer = {"jsonrpc": "2.0", "id": asked["id"], "result": {"action": "accept"}}
                        answer["result"]["content"] = {"name": "Ada"}
                        posted = await http.post(server.url, json=answer, headers=headers)
                        assert posted.status_code == 202 and posted.content == b""
                        result = await anext(sent)
                        assert [m async for m in sent] == []  # the result ends the stream
                        return result

        result = anyio.run(scenario)
    assert result == {"jsonrpc": "2.0", "id": "ask-1", "result": result["result"]}
    assert result["result"]["content"] == [{"type": "text", "text": "Hello, Ada!"}]


async def test_a_2026_error_from_a_method_answers_the_requests_id(client: httpx.AsyncClient) -> None:
    """JSON-RPC 2.0 §5: an error answers the id of the request it refuses, here one its handler raised."""
    body, headers = modern_request("tools/list", {"cursor": "bogus"}, request_id="list-7")
    response = await client.post("/mcp", json=body, headers=headers)
    assert assert_rpc_error(response, 400, INVALID_PARAMS, "list-7")["message"]


PROGRESS_PROBE = '''
from patchbay import Context, tool


@tool(read_only=True, open_world=False)
async def probe(ctx: Context) -> str:
    """Whether progress would reach the caller."""
    return f"progress requested: {ctx.progress_requested}"
'''


@pytest.mark.parametrize("era", ["2025", "2026"])
async def test_a_client_that_takes_only_json_is_not_offered_progress(tmp_path: Path, era: str) -> None:
    """``ctx.progress_requested`` is true only when progress reaches the client: one that accepts only JSON has
    no stream to carry it, whatever progress token it sent."""
    (tmp_path / "probe_tools.py").write_text(PROGRESS_PROBE)
    connector = {"name": "probe", "type": "python", "path": str(tmp_path / "probe_tools.py"), "prefix": ""}
    settings = from_dict({"store": {"url": "sqlite:///:memory:"}, "connectors": [connector]}, base_dir=tmp_path)
    async with running(settings) as app, client_for(app) as http:
        for accept, requested in (("application/json", False), ("application/json, text/event-stream", True)):
            if era == "2025":
                body = request("tools/call", {"name": "probe", "arguments": {}, "_meta": {"progressToken": "p"}})
                headers = {"content-type": "application/json"}
            else:
                body, headers = modern_request("tools/call", {"name": "probe", "arguments": {}}, progressToken="p")
            response = await http.post("/mcp", json=body, headers={**headers, "accept": accept})
            assert assert_json(response)["result"]["content"][0]["text"] == f"progress requested: {requested}"


async def test_a_2026_call_is_judged_by_the_capabilities_its_own_meta_declares(client: httpx.AsyncClient) -> None:
    """2026-07-28 has no session to remember capabilities: each request's _meta declares them. A tool that asks
    the user is refused without elicitation (-32021) and asks for input with it."""
    body, headers = modern_request("tools/call", {"name": "ask_name", "arguments": {}}, request_id=1)
    body["params"]["_meta"][META_CAPS] = {"sampling": {}}
    refused = await client.post("/mcp", json=body, headers=headers)
    assert assert_rpc_error(refused, 400, -32021, 1)["data"]["requiredCapabilities"] == {"elicitation": {}}
    body["params"]["_meta"][META_CAPS] = {"elicitation": {}}
    asked = await client.post("/mcp", json=body, headers=headers)
    assert assert_json(asked)["result"]["resultType"] == "input_required"


async def test_a_public_url_outside_latin_1_still_gets_a_401_with_a_challenge(tmp_path: Path) -> None:
    """HTTP header values are Latin-1 at most: a public_url with an internationalised host (not in punycode) is
    replaced where it cannot be written, never turned into a 500."""
    settings = from_dict(
        {
            "server": {"name": "patchbay-unit", "public_url": "https://例え.example"},
            "store": {"url": f"sqlite:///{tmp_path / 'auth.db'}"},
            "auth": {"mode": "oauth"},
            "connectors": [{"name": "t", "type": "python", "path": str(authflow.TOOLS), "prefix": ""}],
        },
        base_dir=tmp_path,
    )
    async with running(settings) as app, client_for(app) as http:
        response = await http.post("/mcp", json=request("tools/list", {}, 1), headers=JSON_POST)
        assert assert_rpc_error(response, 401, INVALID_REQUEST)["message"] == MISSING_TOKEN
        assert response.headers["www-authenticate"].startswith('Bearer resource_metadata="https://??.example/')


async def test_a_get_with_no_accept_header_at_all_is_405_json(client: httpx.AsyncClient) -> None:
    """R-015, R-018: httpx sends Accept: */* unless told not to; a bare GET (curl -H 'Accept:') is a 405 too."""
    bare = client.build_request("GET", "/mcp")
    del bare.headers["accept"]
    response = await client.send(bare)
    assert assert_rpc_error(response, 405, INVALID_REQUEST)["message"].startswith("This MCP endpoint takes POST")
    assert response.headers["allow"] == "GET, POST, DELETE"
