"""Property test: whatever JSON-RPC-shaped body and headers arrive at /mcp, the server answers with a non-5xx
status, a JSON body whenever it says JSON, and raises nothing; afterwards it still serves a normal call.

reference/mcp-requirements.md R-018 (never an HTML error page), STYLE.md habit 5.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import httpx2 as httpx
import pytest
from fixtures.wire import JSON_POST, TOOLS_MODULE, client_for, initialize_body, request, running, settings_for
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from patchbay.protocol import versions

# subscriptions/listen is left out on purpose: it is a stream that stays open until the client leaves, and
# ASGITransport only returns once the app does.
METHODS = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "tasks/get",
]
TOOLS = ["echo", "add", "mirror", "quiet", "progress", "chatty", "explode", "refuse", "regional", "ask_name",
         "two_rounds", "polling", "picture", "gallery", "scaled", "sync_thread", "nope"]  # fmt: skip
URIS = ["test://static", "test://items/apple", "test://numbers/7", "test://numbers/x", "test://broken", "test://nope"]
VERSIONS = [*versions.ALL_VERSIONS, "2099-01-01", "", "v999"]
HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


def header_value(value: str) -> str:
    """How a client sends a header value: as is when it is safe ASCII, else as =?base64?…?= (MCP 2026-07-28)."""
    if value.isascii() and value.isprintable():
        return value
    return "=?base64?" + base64.b64encode(value.encode("utf-8", "surrogatepass")).decode() + "?="


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(strategy, json_values)


@st.composite
def metas(draw: st.DrawFn) -> Any:
    meta: dict[str, Any] = {}
    if draw(st.booleans()):
        meta[versions.META_VERSION] = draw(maybe(st.sampled_from(VERSIONS)))
    if draw(st.booleans()):
        meta[versions.META_CLIENT_CAPS] = draw(maybe(st.just({"elicitation": {}, "sampling": {}, "roots": {}})))
    if draw(st.booleans()):
        meta[versions.META_LOG_LEVEL] = draw(maybe(st.sampled_from(["debug", "info", "error", "nope"])))
    if draw(st.booleans()):
        meta["progressToken"] = draw(json_values)
    return draw(st.one_of(st.just(meta), json_values))


@st.composite
def param_objects(draw: st.DrawFn) -> Any:
    params: dict[str, Any] = {}
    fields = {
        "name": maybe(st.sampled_from([*TOOLS, "greet", "broken_prompt"])),
        "arguments": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "text": json_values,
                    "a": json_values,
                    "point": json_values,
                    "region": json_values,
                    "name": json_values,
                    "steps": st.integers(0, 3),
                },
            )
        ),
        "uri": maybe(st.sampled_from(URIS)),
        "_meta": metas(),
        "cursor": json_values,
        "level": maybe(st.sampled_from(["debug", "warning", "emergency"])),
        "ref": maybe(
            st.fixed_dictionaries(
                {
                    "type": st.sampled_from(["ref/prompt", "ref/resource", "x"]),
                    "name": st.just("greet"),
                    "uri": st.sampled_from(["test://items/{item}", "x"]),
                }
            )
        ),
        "argument": maybe(st.fixed_dictionaries({"name": st.sampled_from(["topic", "item"]), "value": json_values})),
        "context": json_values,
        "inputResponses": json_values,
        "requestState": maybe(st.text(max_size=60)),
        "protocolVersion": maybe(st.sampled_from(VERSIONS)),
        "capabilities": json_values,
        "requestId": json_values,
        "notifications": json_values,
    }
    for key in draw(st.lists(st.sampled_from(sorted(fields)), unique=True, max_size=6)):
        params[key] = draw(fields[key])
    return draw(st.one_of(st.just(params), st.just(params), json_values))


@st.composite
def messages(draw: st.DrawFn) -> Any:
    message: dict[str, Any] = {}
    if draw(st.integers(0, 9)):
        message["jsonrpc"] = "2.0"
    else:
        message["jsonrpc"] = draw(json_values)
    if draw(st.integers(0, 5)):
        message["method"] = draw(st.one_of(st.sampled_from(METHODS), st.sampled_from(METHODS), st.text(max_size=20)))
    if draw(st.integers(0, 4)):
        message["id"] = draw(st.one_of(st.integers(-5, 10**6), st.text(max_size=8), json_values))
    if draw(st.integers(0, 5)):
        message["params"] = draw(param_objects())
    if draw(st.integers(0, 9)) == 0:
        message[draw(st.sampled_from(["result", "error"]))] = draw(json_values)
    return message


@st.composite
def exchanges(draw: st.DrawFn, session_id: str) -> tuple[bytes, dict[str, str]]:
    kind = draw(st.sampled_from(["message", "message", "message", "batch", "json", "bytes"]))
    body: Any
    if kind == "message":
        body = draw(messages())
    elif kind == "batch":
        body = draw(st.lists(messages(), max_size=4))
    elif kind == "json":
        body = draw(json_values)
    else:
        body = None
    raw = draw(st.binary(max_size=200)) if body is None else json.dumps(body).encode()
    headers = dict(JSON_POST)
    if isinstance(body, dict) and draw(st.booleans()):  # consistent 2026 routing headers, to get past them often
        params = body.get("params") if isinstance(body.get("params"), dict) else {}
        meta = params.get("_meta") if isinstance(params.get("_meta"), dict) else {}
        headers["mcp-protocol-version"] = header_value(str(meta.get(versions.META_VERSION, versions.MODERN)))
        headers["mcp-method"] = header_value(str(body.get("method", "")))
        headers["mcp-name"] = header_value(str(params.get("name", params.get("uri", ""))))
    optional = {
        "mcp-protocol-version": st.sampled_from(VERSIONS) | HEADER_TEXT,
        "mcp-method": st.sampled_from(METHODS) | HEADER_TEXT,
        "mcp-name": st.sampled_from([*TOOLS, *URIS]) | HEADER_TEXT | st.just("=?base64?ZWNobw==?="),
        "mcp-session-id": st.sampled_from([session_id, session_id, "bogus", ""]),
        "mcp-param-region": HEADER_TEXT | st.just("=?base64?!!?="),
        "accept": st.sampled_from(["application/json", "text/event-stream", "*/*", "text/html", ""]),
        "content-type": st.sampled_from(["application/json", "text/plain", "application/json; charset=utf-8"]),
        "origin": st.sampled_from(["http://localhost:8000", "https://evil.example", "null"]),
    }
    for name in draw(st.lists(st.sampled_from(sorted(optional)), unique=True, max_size=4)):
        headers[name] = draw(optional[name])
    return raw, headers


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any, str]]:
    """One app for every example, running in a blocking portal's event loop; a 2025 session without the
    elicitation capability (so no call waits for an answer from a client that will never send one)."""
    base = Path(tmp_path_factory.mktemp("fuzz"))
    with anyio.from_thread.start_blocking_portal() as portal:
        context = portal.wrap_async_context_manager(running(settings_for(base)))
        app = context.__enter__()
        sys.modules[TOOLS_MODULE].RELEASE.set()  # the polling tool must not wait
        client = portal.wrap_async_context_manager(client_for(app))
        http = client.__enter__()
        body = initialize_body()
        body["params"]["capabilities"] = {}
        opened = portal.call(lambda: http.post("/mcp", json=body, headers=JSON_POST))
        try:
            yield portal, http, opened.headers["mcp-session-id"]
        finally:
            client.__exit__(None, None, None)
            context.__exit__(None, None, None)


def test_random_json_rpc_never_gets_a_5xx_or_a_non_json_error(fuzz_target: tuple[Any, Any, str]) -> None:
    portal, http, session_id = fuzz_target

    async def send(raw: bytes, headers: dict[str, str]) -> httpx.Response:
        with anyio.fail_after(10):  # a request that never ends is a bug too
            return await http.post("/mcp", content=raw, headers=headers)

    session = {**JSON_POST, "mcp-session-id": session_id, "mcp-protocol-version": "2025-11-25"}

    @settings(
        max_examples=300,
        deadline=None,
        database=None,  # nothing written into the work tree; failures print their reproducing example
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(exchange=exchanges(session_id))
    # Shapes that once reached a handler unchecked, tried on every run whatever the random draw.
    @example(exchange=(b'{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":[]}}', session))
    @example(exchange=(b'[{"jsonrpc":"2.0","id":1,"method":"tools/list","params":[1]}]', JSON_POST))
    @example(
        exchange=(
            b'{"jsonrpc":"2.0","id":1,"method":"completion/complete","params":{"ref":{"type":"ref/prompt",'
            b'"name":"greet"},"argument":{"name":"topic","value":""},"context":[]}}',
            JSON_POST,
        )
    )
    @example(
        exchange=(b'{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"test://broken"}}', JSON_POST)
    )
    def check(exchange: tuple[bytes, dict[str, str]]) -> None:
        raw, headers = exchange
        response = portal.call(send, raw, headers)
        assert response.status_code < 500, (raw, headers, response.status_code, response.text)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            json.loads(response.content)
        elif content_type.startswith("text/event-stream"):
            assert response.status_code == 200
        else:
            # Only a notification or a client's response gets no body: 202 Accepted (MCP basic/transports).
            assert response.status_code == 202 and response.content == b"", (response.status_code, content_type)

    check()

    after = portal.call(
        lambda: http.post(
            "/mcp", json=request("tools/call", {"name": "echo", "arguments": {"text": "ok"}}), headers=JSON_POST
        )
    )
    assert after.status_code == 200
    assert after.json()["result"]["content"] == [{"type": "text", "text": "ok"}]
