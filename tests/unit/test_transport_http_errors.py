"""Bad input on /mcp: the status and JSON-RPC error the spec names, always a JSON body, and the server goes on.

Spec references: reference/mcp-requirements.md §3.1 (Streamable HTTP, 2025 era), §3.3 (dual-era routing),
R-010…R-018.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
import pytest
from fixtures.wire import (
    ACCEPT_BOTH,
    JSON_POST,
    assert_json,
    assert_rpc_error,
    assert_still_serving,
    call_modern,
    initialize_body,
    open_session,
    request,
)

pytestmark = pytest.mark.anyio

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602


async def post_raw(client: httpx.AsyncClient, content: bytes, headers: dict[str, str] | None = None):
    return await client.post("/mcp", content=content, headers=JSON_POST if headers is None else headers)


async def test_malformed_json_is_400_parse_error(client: httpx.AsyncClient) -> None:
    response = await post_raw(client, b'{"jsonrpc": "2.0", "id": 1, "method": ')
    assert_rpc_error(response, 400, PARSE_ERROR)
    await assert_still_serving(client)


@pytest.mark.parametrize(
    "body",
    [b"42", b'"tools/list"', b"null", b"true", b'{"jsonrpc": "1.0", "id": 7, "method": "ping"}', b'{"id": 7}'],
    ids=["number", "string", "null", "bool", "jsonrpc-1.0", "no-jsonrpc"],
)
async def test_non_object_or_wrong_jsonrpc_is_400_invalid_request(client: httpx.AsyncClient, body: bytes) -> None:
    response = await post_raw(client, body)
    body_json = assert_json(response)
    assert response.status_code == 400
    assert body_json["error"]["code"] == INVALID_REQUEST
    await assert_still_serving(client)


async def test_wrong_jsonrpc_version_error_carries_the_id(client: httpx.AsyncClient) -> None:
    """JSON-RPC 2.0 §5: the error answers the request's id when it could be read."""
    response = await post_raw(client, b'{"jsonrpc": "1.0", "id": 7, "method": "ping"}')
    assert_rpc_error(response, 400, INVALID_REQUEST, request_id=7)


@pytest.mark.parametrize("bad_id", [None, True, 1.5, [1], {"a": 1}], ids=["null", "bool", "float", "list", "object"])
async def test_id_of_a_bad_type_is_400_invalid_request(client: httpx.AsyncClient, bad_id: Any) -> None:
    """MCP basic: request ids MUST be a string or an integer and MUST NOT be null."""
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": bad_id, "method": "ping"}, headers=JSON_POST)
    assert_rpc_error(response, 400, INVALID_REQUEST)
    await assert_still_serving(client)


@pytest.mark.parametrize("params", [[1, 2], "text", 5], ids=["array", "string", "number"])
async def test_params_that_are_not_an_object_are_400(client: httpx.AsyncClient, params: Any) -> None:
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/list", "params": params}
    response = await client.post("/mcp", json=body, headers=JSON_POST)
    assert_rpc_error(response, 400, INVALID_REQUEST, request_id=3)
    await assert_still_serving(client)


async def test_method_that_is_not_a_string_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 4, "method": 12}, headers=JSON_POST)
    assert_rpc_error(response, 400, INVALID_REQUEST, request_id=4)


async def test_unknown_method_in_a_2025_session_is_200_method_not_found(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    response = await client.post("/mcp", json=request("nope/nothing", {}, 9), headers=headers)
    assert_rpc_error(response, 200, METHOD_NOT_FOUND, request_id=9)
    await assert_still_serving(client)


async def test_unknown_method_in_2026_is_404_method_not_found(client: httpx.AsyncClient) -> None:
    """§3.2: unknown RPC method → 404 + -32601, the body telling it apart from a legacy 404 (R-032)."""
    response = await call_modern(client, "nope/nothing", {})
    body = assert_json(response)
    assert response.status_code == 404
    assert body["error"]["code"] == METHOD_NOT_FOUND
    await assert_still_serving(client)


@pytest.mark.parametrize("method", ["initialize", "ping", "logging/setLevel", "resources/subscribe"])
async def test_methods_removed_in_2026_are_404_method_not_found(client: httpx.AsyncClient, method: str) -> None:
    """conformance-scenarios §10: initialize, ping, logging/setLevel, subscribe are gone at 2026-07-28."""
    params = {"uri": "test://static"} if method == "resources/subscribe" else {}
    response = await call_modern(client, method, params)
    assert response.status_code == 404
    assert assert_json(response)["error"]["code"] == METHOD_NOT_FOUND


async def test_unknown_tool_is_invalid_params_in_both_eras(client: httpx.AsyncClient) -> None:
    """§2.7: unknown tool is a protocol error, -32602 (not an isError result)."""
    headers = await open_session(client)
    legacy = await client.post("/mcp", json=request("tools/call", {"name": "no_such_tool"}, 11), headers=headers)
    assert assert_json(legacy)["error"]["code"] == INVALID_PARAMS
    assert "no_such_tool" in legacy.json()["error"]["message"]
    modern = await call_modern(client, "tools/call", {"name": "no_such_tool", "arguments": {}})
    assert assert_json(modern)["error"]["code"] == INVALID_PARAMS
    await assert_still_serving(client)


@pytest.mark.parametrize("arguments", [[1], "a=1", 3], ids=["array", "string", "number"])
async def test_arguments_that_are_not_an_object_are_invalid_params(client: httpx.AsyncClient, arguments: Any) -> None:
    body = request("tools/call", {"name": "echo", "arguments": arguments}, 12)
    response = await client.post("/mcp", json=body, headers=JSON_POST)
    assert assert_json(response)["error"]["code"] == INVALID_PARAMS
    assert response.json()["id"] == 12
    await assert_still_serving(client)


async def test_invalid_arguments_are_a_tool_error_naming_the_field(client: httpx.AsyncClient) -> None:
    """§2.7: input-validation errors are isError results with an actionable message, not protocol errors."""
    body = request("tools/call", {"name": "add", "arguments": {"a": "three"}})
    response = await client.post("/mcp", json=body, headers=JSON_POST)
    result = assert_json(response)["result"]
    assert result["isError"] is True
    assert "a:" in result["content"][0]["text"]
    missing = await client.post("/mcp", json=request("tools/call", {"name": "add", "arguments": {}}), headers=JSON_POST)
    text = missing.json()["result"]["content"][0]["text"]
    assert missing.json()["result"]["isError"] is True
    assert "a" in text and "required" in text.lower()


@pytest.mark.parametrize("accept", ["text/html", "image/png", "text/plain"])
async def test_an_accept_header_naming_neither_json_nor_sse_is_406(client: httpx.AsyncClient, accept: str) -> None:
    headers = {"content-type": "application/json", "accept": accept}
    response = await client.post("/mcp", json=request("ping"), headers=headers)
    assert_rpc_error(response, 406, INVALID_REQUEST)
    await assert_still_serving(client)


@pytest.mark.parametrize(
    "accept",
    [None, "*/*", "application/json", "text/html,application/xhtml+xml,*/*;q=0.8", "Application/JSON"],
    ids=["absent", "any", "json-only", "browser", "mixed-case"],
)
async def test_imperfect_accept_headers_are_served(client: httpx.AsyncClient, accept: str | None) -> None:
    """R-018: tolerate imperfect Accept headers (claude.ai probes with a browser Accept); media types are
    case-insensitive (RFC 9110 §8.3.1)."""
    headers = {"content-type": "application/json"}
    if accept is not None:
        headers["accept"] = accept
    response = await client.post("/mcp", json=request("tools/list", {}, 21), headers=headers)
    assert response.status_code == 200, response.text
    assert assert_json(response)["id"] == 21


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
async def test_a_content_type_that_is_not_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    headers = {"content-type": content_type, "accept": ACCEPT_BOTH}
    response = await post_raw(client, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', headers)
    assert_rpc_error(response, 415, INVALID_REQUEST)
    await assert_still_serving(client)


@pytest.mark.parametrize("content_type", ["application/json-patch+json", "application/jsonp", "application/json5"])
async def test_a_media_type_that_only_begins_like_json_is_415(client: httpx.AsyncClient, content_type: str) -> None:
    headers = {"content-type": content_type, "accept": ACCEPT_BOTH}
    response = await post_raw(client, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', headers)
    assert_rpc_error(response, 415, INVALID_REQUEST)


@pytest.mark.parametrize(
    "content_type",
    ["Application/JSON", "APPLICATION/JSON; charset=utf-8", "application/json ; charset=UTF-8", " application/json"],
)
async def test_json_is_recognised_in_any_case_and_with_parameters(client: httpx.AsyncClient, content_type: str) -> None:
    """Media types are case-insensitive (RFC 9110 §8.3.1), as the legacy /messages endpoint already reads them."""
    headers = {"content-type": content_type, "accept": ACCEPT_BOTH}
    response = await post_raw(client, b'{"jsonrpc":"2.0","id":5,"method":"tools/list"}', headers)
    assert response.status_code == 200, response.text
    assert "tools" in assert_json(response)["result"]


async def test_json_with_a_charset_parameter_is_accepted(client: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json; charset=utf-8", "accept": ACCEPT_BOTH}
    response = await post_raw(client, b'{"jsonrpc":"2.0","id":5,"method":"tools/list"}', headers)
    assert response.status_code == 200
    assert "tools" in assert_json(response)["result"]


@pytest.mark.parametrize("version", ["1999-01-01", "garbage", "2025-11-26"])
async def test_an_unsupported_protocol_version_header_is_400(client: httpx.AsyncClient, version: str) -> None:
    """R-014: unsupported or invalid MCP-Protocol-Version → 400."""
    headers = {**JSON_POST, "mcp-protocol-version": version}
    response = await client.post("/mcp", json=request("tools/list", {}, 8), headers=headers)
    error = assert_rpc_error(response, 400, INVALID_REQUEST, request_id=8)  # docs/protocol.md error codes
    assert f"unsupported MCP-Protocol-Version '{version}'" in error["message"]
    assert error["message"].endswith("supported: 2025-11-25, 2025-06-18, 2025-03-26, 2024-11-05")
    await assert_still_serving(client)


async def test_a_session_tolerates_a_newer_protocol_version_header(client: httpx.AsyncClient) -> None:
    """field-problems D3: after negotiating 2025-11-25 some clients send MCP-Protocol-Version: 2026-07-28 on
    follow-ups; the server falls back to the negotiated version instead of answering 400 (conformance-scenarios
    §9: accept the session on any supported header value)."""
    headers = await open_session(client)
    response = await client.post(
        "/mcp", json=request("tools/list", {}, 31), headers={**headers, "mcp-protocol-version": "2026-07-28"}
    )
    assert response.status_code == 200, response.text
    assert "tools" in assert_json(response)["result"]


@pytest.mark.parametrize("session_id", ["unknown-session", "x" * 200, "zzz"])
async def test_an_unknown_session_is_404(client: httpx.AsyncClient, session_id: str) -> None:
    """§3.1 sessions, R-013: a session the server does not hold → 404 (client re-initializes)."""
    headers = {**JSON_POST, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}
    response = await client.post("/mcp", json=request("tools/list", {}, 6), headers=headers)
    assert response.status_code == 404
    assert assert_json(response)["error"]["code"] == -32001
    await assert_still_serving(client)


async def test_a_deleted_session_is_404_afterwards(client: httpx.AsyncClient) -> None:
    headers = await open_session(client)
    deleted = await client.delete("/mcp", headers=headers)
    assert deleted.status_code == 200  # docs/protocol.md: DELETE /mcp ends the session, 200
    for body in (request("tools/list", {}), {"jsonrpc": "2.0", "method": "notifications/initialized"}):
        response = await client.post("/mcp", json=body, headers=headers)
        assert response.status_code == 404
        assert_json(response)
    again = await client.delete("/mcp", headers=headers)
    assert again.status_code == 404
    assert_json(again)


async def test_an_expired_session_is_404(client: httpx.AsyncClient, app: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from patchbay.transport import sessions

    headers = await open_session(client)
    later = sessions.time.monotonic() + app.sessions.idle_seconds + 1
    monkeypatch.setattr(sessions.time, "monotonic", lambda: later)
    response = await client.post("/mcp", json=request("tools/list", {}), headers=headers)
    assert response.status_code == 404
    assert_json(response)


async def test_delete_without_a_session_is_400(client: httpx.AsyncClient) -> None:
    response = await client.delete("/mcp", headers={"accept": ACCEPT_BOTH})
    assert_rpc_error(response, 400, INVALID_REQUEST)


async def test_a_body_over_the_limit_with_content_length_is_413(client: httpx.AsyncClient, app: Any) -> None:
    limit = app.runtime.settings.server.max_body_bytes
    big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {}}}
    big["params"]["arguments"]["text"] = "x" * (limit + 10)
    response = await client.post("/mcp", json=big, headers=JSON_POST)
    assert "content-length" in response.request.headers
    assert_rpc_error(response, 413, INVALID_REQUEST)
    await assert_still_serving(client)


async def test_a_chunked_body_over_the_limit_is_413(client: httpx.AsyncClient, app: Any) -> None:
    limit = app.runtime.settings.server.max_body_bytes

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"'
        for _ in range(limit // 4096 + 2):
            yield b"y" * 4096
        yield b'"}}}'

    response = await client.post("/mcp", content=chunks(), headers=JSON_POST)
    assert "content-length" not in response.request.headers
    assert_rpc_error(response, 413, INVALID_REQUEST)
    await assert_still_serving(client)


async def test_a_chunked_body_under_the_limit_is_served(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"jsonrpc":"2.0","id":41,"method":"tools/call",'
        yield b'"params":{"name":"echo","arguments":{"text":"in pieces"}}}'

    response = await client.post("/mcp", content=chunks(), headers=JSON_POST)
    assert response.status_code == 200
    assert assert_json(response)["result"]["content"][0]["text"] == "in pieces"


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://127.0.0.1.evil.example", "file://"])
async def test_a_foreign_origin_is_403(client: httpx.AsyncClient, origin: str) -> None:
    """R-016, §3.6: Origin present and not allow-listed → 403."""
    response = await client.post("/mcp", json=request("ping"), headers={**JSON_POST, "origin": origin})
    assert_rpc_error(response, 403, INVALID_REQUEST)
    await assert_still_serving(client)


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.nip.io:8000"])
async def test_a_foreign_host_is_421(client: httpx.AsyncClient, host: str) -> None:
    """DNS-rebinding protection (conformance-scenarios §3.1): an unexpected Host is refused."""
    response = await client.post("/mcp", json=request("ping"), headers={**JSON_POST, "host": host})
    assert_rpc_error(response, 421, INVALID_REQUEST)
    await assert_still_serving(client)


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("localhost:3001", "http://localhost:3001"),
        ("[::1]:8000", "http://[::1]:8000"),
        ("localhost", None),
    ],
)
async def test_loopback_host_and_origin_are_allowed(client: httpx.AsyncClient, host: str, origin: str | None) -> None:
    headers = {**JSON_POST, "host": host}
    if origin is not None:
        headers["origin"] = origin
    response = await client.post("/mcp", json=request("tools/list", {}, 2), headers=headers)
    assert response.status_code == 200, response.text


async def test_the_public_url_host_and_origin_are_allowed(tmp_path: Any) -> None:
    from fixtures.wire import client_for, running, settings_for

    settings = settings_for(tmp_path, public_url="https://mcp.example.com")
    async with running(settings) as app, client_for(app, "https://mcp.example.com") as http:
        headers = {**JSON_POST, "origin": "https://mcp.example.com"}
        response = await http.post("/mcp", json=request("tools/list", {}, 2), headers=headers)
        assert response.status_code == 200, response.text
        foreign = await http.post("/mcp", json=request("ping"), headers={**JSON_POST, "host": "other.example.com"})
        assert foreign.status_code == 421


async def test_batches_are_served_for_a_2025_03_26_session(client: httpx.AsyncClient) -> None:
    """R-017: batch arrays only when 2025-03-26 was negotiated."""
    headers = await open_session(client, "2025-03-26")
    batch = [
        request("tools/list", {}, 1),
        {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": 1, "progress": 1}},
        request("tools/call", {"name": "echo", "arguments": {"text": "b"}}, 2),
    ]
    response = await client.post("/mcp", json=batch, headers=headers)
    assert response.status_code == 200
    answers = assert_json(response)
    assert isinstance(answers, list)
    assert sorted(a["id"] for a in answers) == [1, 2]
    by_id = {a["id"]: a for a in answers}
    assert by_id[2]["result"]["content"][0]["text"] == "b"


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18"])
async def test_batches_are_400_for_later_sessions(client: httpx.AsyncClient, version: str) -> None:
    headers = await open_session(client, version)
    response = await client.post("/mcp", json=[request("tools/list", {}, 1)], headers=headers)
    assert_rpc_error(response, 400, INVALID_REQUEST)
    await assert_still_serving(client)


async def test_batches_are_400_for_2026_requests(client: httpx.AsyncClient) -> None:
    headers = {**JSON_POST, "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    response = await client.post("/mcp", json=[request("tools/list", {}, 1)], headers=headers)
    assert_rpc_error(response, 400, INVALID_REQUEST)


async def test_an_empty_batch_is_400(client: httpx.AsyncClient) -> None:
    headers = await open_session(client, "2025-03-26")
    response = await client.post("/mcp", json=[], headers=headers)
    assert_rpc_error(response, 400, INVALID_REQUEST)


@pytest.mark.parametrize(
    "params",
    [[1], "x", 3],
    ids=["array", "string", "number"],
)
async def test_a_batch_entry_with_params_that_are_not_an_object_is_an_error_entry(
    client: httpx.AsyncClient, params: Any
) -> None:
    headers = await open_session(client, "2025-03-26")
    batch = [{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}, request("tools/list", {}, 2)]
    response = await client.post("/mcp", json=batch, headers=headers)
    assert response.status_code == 200, response.text
    answers = {a["id"]: a for a in assert_json(response)}
    # As for a single message: params that are not an object make it no JSON-RPC request of MCP's.
    assert answers[1]["error"] == {"code": INVALID_REQUEST, "message": "Invalid Request: params must be an object"}
    assert "result" in answers[2]


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 99}},
        {"jsonrpc": "2.0", "id": "srv-1", "result": {}},
        {"jsonrpc": "2.0", "id": "srv-2", "error": {"code": -1, "message": "no"}},
    ],
    ids=["initialized", "cancelled", "response", "error-response"],
)
async def test_notifications_and_responses_are_202_with_no_body(
    client: httpx.AsyncClient, message: dict[str, Any]
) -> None:
    """R-011: notifications and client JSON-RPC responses → 202, empty body."""
    headers = await open_session(client)
    response = await client.post("/mcp", json=message, headers=headers)
    assert response.status_code == 202
    assert response.content == b""


async def test_a_response_without_result_or_error_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 5}, headers=JSON_POST)
    assert_rpc_error(response, 400, INVALID_REQUEST, request_id=5)


@pytest.mark.parametrize("accept", [None, "application/json", "text/html"])
async def test_get_without_event_stream_accept_is_405_json(client: httpx.AsyncClient, accept: str | None) -> None:
    """R-015: GET that cannot open a stream → 405, still a JSON body (R-018: never HTML)."""
    headers = {} if accept is None else {"accept": accept}
    response = await client.get("/mcp", headers=headers)
    assert response.status_code == 405
    assert assert_json(response)["error"]["code"] == INVALID_REQUEST
    assert "allow" in response.headers


async def test_get_with_event_stream_but_no_session_is_405(client: httpx.AsyncClient) -> None:
    response = await client.get("/mcp", headers={"accept": "text/event-stream"})
    assert response.status_code == 405
    assert_json(response)


async def test_get_with_an_unknown_session_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/mcp", headers={"accept": "text/event-stream", "mcp-session-id": "gone"})
    assert response.status_code == 404
    assert_json(response)


@pytest.mark.parametrize("method", ["PUT", "PATCH", "OPTIONS"])
async def test_other_http_methods_are_405_json(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/mcp")
    assert response.status_code == 405
    assert_json(response)


async def test_trailing_slash_answers_like_mcp_without_redirect(client: httpx.AsyncClient) -> None:
    """R-002: no trailing-slash redirects; /mcp/ is the same endpoint."""
    response = await client.post("/mcp/", json=initialize_body(), headers=JSON_POST)
    assert response.status_code == 200
    assert "mcp-session-id" in response.headers
    listed = await client.post("/mcp/", json=request("tools/list", {}), headers=JSON_POST)
    assert listed.status_code == 200
    assert "tools" in assert_json(listed)["result"]
    bad = await client.post("/mcp/", content=b"{", headers=JSON_POST)
    assert_rpc_error(bad, 400, PARSE_ERROR)
