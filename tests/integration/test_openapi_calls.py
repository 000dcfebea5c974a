"""The openapi connector's calls against a real HTTP API on loopback (Starlette under uvicorn): requests as the spec
says, credentials of every kind where their schemes say, retries and their limits, timeouts, errors and answers
shaped for the model. The API records exactly what it received (raw path and query, headers, body)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from patchbay.app import create_app
from patchbay.connectors.base import ConnectorEnv
from patchbay.connectors.openapi import OpenApiConnector
from patchbay.connectors.openapi.options import OpenApiOptions
from patchbay.context import Context
from patchbay.definitions import Tool, ToolResult
from patchbay.links.hub import LinkHub
from patchbay.outbound import PUBLIC_ONLY, Refused
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict
from tests.support.loopback_asgi import serving

pytestmark = pytest.mark.anyio

SECRETS = {
    "QUERY_KEY": "query-key-secret-1",
    "HEADER_KEY": "header-key-secret-2",
    "COOKIE_KEY": "cookie-key-secret-3",
    "BASIC_PASSWORD": "basic-pass-secret-4",
    "BEARER_TOKEN": "bearer-secret-5",
    "CC_SECRET": "cc-client-secret-6",
}
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


@dataclass
class Api:
    """The API: what it received, and the knobs the tests turn."""

    base: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    flaky: list[tuple[int, dict[str, str]]] = field(default_factory=list)  # answers to give before a 200
    issued: set[str] = field(default_factory=set)
    counter: Any = field(default_factory=lambda: itertools.count(1))
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def record(self, request: Request, body: bytes) -> None:
        self.received.append(
            {
                "method": request.method,
                "target": request.scope["raw_path"].decode()
                + ("?" + qs if (qs := request.scope["query_string"].decode()) else ""),
                "headers": dict(request.headers),
                "body": body,
            }
        )

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        self.record(request, body)
        path = request.url.path
        if path == "/token":
            return self.token(body)
        if path in ("/api/flaky", "/api/flaky-post") and self.flaky:
            status, headers = self.flaky.pop(0)
            return JSONResponse({"message": "busy"}, status, headers=headers)
        if path == "/api/slow":
            await self.release.wait()
        if path == "/api/cc":
            _, _, token = request.headers.get("authorization", "").partition(" ")
            if token not in self.issued:
                return JSONResponse({"error": "invalid_token"}, 401)
        if path == "/api/items/missing":
            problem = {"title": "No such item", "detail": "item 'missing' does not exist", "status": 404}
            return JSONResponse(problem, 404, media_type="application/problem+json")
        if path == "/api/picture":
            return Response(PNG, media_type="image/png")
        if path == "/api/items" and request.method == "GET":
            limit = int(request.query_params.get("limit", "3"))
            return JSONResponse([{"id": n, "name": f"item {n}", "text": "x" * 100} for n in range(limit)])
        return JSONResponse({"ok": True, "path": path}, 201 if request.method == "POST" else 200)

    def token(self, body: bytes) -> Response:
        token = f"cc-token-{next(self.counter)}"
        self.issued.add(token)
        return JSONResponse({"access_token": token, "token_type": "Bearer", "expires_in": 3600})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{rest:path}", self.endpoint, methods=["GET", "POST", "PUT", "DELETE"])])


def spec_for(base: str) -> dict[str, Any]:
    def op(op_id: str, *, params: list[dict[str, Any]] | None = None, security: Any = None, **extra: Any) -> Any:
        operation: dict[str, Any] = {
            "operationId": op_id,
            "parameters": params or [],
            "responses": extra.pop(
                "responses",
                {"200": {"description": "ok", "content": {"application/json": {"schema": {"type": "object"}}}}},
            ),
        }
        if security is not None:
            operation["security"] = security
        return {**operation, **extra}

    limit = {"name": "limit", "in": "query", "schema": {"type": "integer"}}
    item_schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "Calls test API", "version": "1"},
        "servers": [{"url": f"{base}/api"}],
        "paths": {
            "/items/{id}": {
                "get": op(
                    "getItem",
                    params=[
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "X-Trace", "in": "header", "schema": {"type": "string"}},
                        {
                            "name": "fields",
                            "in": "query",
                            "style": "form",
                            "explode": False,
                            "schema": {"type": "array", "items": {"type": "string"}},
                        },
                    ],
                )
            },
            "/items": {
                "get": op(
                    "listItems",
                    params=[limit],
                    responses={
                        "200": {"description": "ok", "content": {"application/json": {"schema": {"type": "array"}}}}
                    },
                ),
                "post": op(
                    "createItem",
                    params=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}],
                    requestBody={"required": True, "content": {"application/json": {"schema": item_schema}}},
                ),
            },
            "/flaky": {"get": op("flaky")},
            "/flaky-post": {
                "post": op(
                    "flakyPost", params=[{"name": "Idempotency-Key", "in": "header", "schema": {"type": "string"}}]
                )
            },
            "/slow": {"get": op("slow")},
            "/picture": {
                "get": op(
                    "picture",
                    params=[{"name": "size", "in": "query", "schema": {"type": "string"}}],
                    security=[{"queryKey": []}],
                    responses={"200": {"description": "a picture", "content": {"image/png": {}}}},
                )
            },
            "/key-query": {"get": op("keyQuery", security=[{"queryKey": []}])},
            "/key-header": {"get": op("keyHeader", security=[{"headerKey": []}])},
            "/key-cookie": {"get": op("keyCookie", security=[{"cookieKey": []}])},
            "/basic": {"get": op("basic", security=[{"basicAuth": []}])},
            "/bearer": {"get": op("bearer", security=[{"bearerAuth": []}])},
            "/both": {"get": op("both", security=[{"mtls": []}, {"headerKey": [], "queryKey": []}])},
            "/public": {"get": op("public", security=[{}])},
            "/cc": {"get": op("cc", security=[{"cc": []}])},
        },
        "components": {
            "securitySchemes": {
                "queryKey": {"type": "apiKey", "in": "query", "name": "api_key"},
                "headerKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "cookieKey": {"type": "apiKey", "in": "cookie", "name": "session"},
                "basicAuth": {"type": "http", "scheme": "basic"},
                "bearerAuth": {"type": "http", "scheme": "bearer"},
                "mtls": {"type": "mutualTLS"},
                "cc": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": f"{base}/token", "scopes": {}}}},
            }
        },
    }


SECURITY = {
    "queryKey": {"type": "api_key", "value_env": "QUERY_KEY"},
    "headerKey": {"type": "api_key", "value_env": "HEADER_KEY"},
    "cookieKey": {"type": "api_key", "value_env": "COOKIE_KEY"},
    "basicAuth": {"type": "basic", "username": "ann", "password_env": "BASIC_PASSWORD"},
    "bearerAuth": {"type": "bearer", "token_env": "BEARER_TOKEN"},
    "cc": {"type": "client_credentials", "client_id": "patchbay", "client_secret_env": "CC_SECRET"},
}


@dataclass
class Running:
    api: Api
    connector: OpenApiConnector
    waits: list[float]

    def tool(self, name: str) -> Tool:
        return next(tool for tool in self.connector.tools() if tool.name == name)

    async def call(self, tool: str, /, **arguments: Any) -> ToolResult:
        scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
        return await self.tool(tool).handler(arguments, Context(scope))


@pytest.fixture
async def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    async with open_connector(tmp_path, monkeypatch) as started:
        yield started


def text(result: ToolResult) -> str:
    return "\n".join(part.get("text", "") for part in result.content)


@contextlib.asynccontextmanager
async def open_connector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **options: Any) -> AsyncIterator[Running]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    api = Api()
    async with serving(api.app()) as base:
        api.base = base
        (tmp_path / "api.json").write_text(json.dumps(spec_for(base)), encoding="utf-8")
        settings = from_dict(
            {"store": {"url": f"sqlite:///{tmp_path / 'p.db'}"}, "outbound": {"allow_private_network": True}},
            base_dir=tmp_path,
        )
        env = ConnectorEnv(base_dir=tmp_path, store_url=settings.store.url, links=LinkHub(settings))
        config = {"spec": "api.json", "mode": "tools", "security": SECURITY, "retries": 2, **options}
        connector = OpenApiConnector("calls", OpenApiOptions.model_validate(config), env)
        await connector.open()
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)  # the wait the caller chose, without spending it

        assert connector._caller is not None
        connector._caller.sleep = sleep
        try:
            yield Running(api, connector, waits)
        finally:
            api.release.set()
            await connector.close()


async def test_arguments_arrive_where_the_spec_puts_them(running: Running) -> None:
    result = await running.call("get_item", id="a b/../c", X_Trace="t-1", fields=["id", "name"])
    assert not result.is_error, text(result)
    sent = running.api.received[-1]
    assert sent["target"] == "/api/items/a%20b%2F..%2Fc?fields=id,name"
    assert sent["headers"]["x-trace"] == "t-1"
    created = await running.call("create_item", name="pen", tags=["a", "b"])
    assert not created.is_error, text(created)
    posted = running.api.received[-1]
    assert posted["method"] == "POST" and json.loads(posted["body"]) == {"name": "pen", "tags": ["a", "b"]}
    assert posted["headers"]["content-type"] == "application/json"
    assert created.structured == {"ok": True, "path": "/api/items"}


async def test_one_pooled_connection_serves_every_path_of_the_api(running: Running) -> None:
    for name in ("get_item", "list_items", "public", "picture"):
        await running.call(name, **({"id": "1"} if name == "getItem" else {}))
    clients = running.connector._clients
    assert len(clients) == 1 and next(iter(clients.values())).connections_opened == 1


async def test_api_keys_basic_and_bearer_go_where_their_schemes_say(running: Running) -> None:
    for name in ("key_query", "key_header", "key_cookie", "basic", "bearer", "both", "public"):
        assert not (await running.call(name)).is_error
    by_path = {r["target"].partition("?")[0]: r for r in running.api.received}
    assert by_path["/api/key-query"]["target"] == "/api/key-query?api_key=query-key-secret-1"
    assert by_path["/api/key-header"]["headers"]["x-api-key"] == "header-key-secret-2"
    assert by_path["/api/key-cookie"]["headers"]["cookie"] == "session=cookie-key-secret-3"
    pair = base64.b64encode(b"ann:basic-pass-secret-4").decode()
    assert by_path["/api/basic"]["headers"]["authorization"] == f"Basic {pair}"
    assert by_path["/api/bearer"]["headers"]["authorization"] == "Bearer bearer-secret-5"
    both = by_path["/api/both"]  # the first requirement (mutual TLS) cannot be met; the second is, with both keys
    assert (
        both["target"] == "/api/both?api_key=query-key-secret-1"
        and both["headers"]["x-api-key"] == "header-key-secret-2"
    )
    public = by_path["/api/public"]
    assert (
        "authorization" not in public["headers"] and "?" not in public["target"] and "cookie" not in public["headers"]
    )


async def test_client_credentials_token_is_fetched_once_and_renewed_after_a_401(running: Running) -> None:
    assert not (await running.call("cc")).is_error
    assert not (await running.call("cc")).is_error
    tokens = [r for r in running.api.received if r["target"] == "/token"]
    assert len(tokens) == 1
    assert "client_credentials" in tokens[0]["body"].decode()
    running.api.issued.clear()  # the API revokes every token: the next call gets a 401, renews and succeeds
    renewed = await running.call("cc")
    assert not renewed.is_error, text(renewed)
    assert len([r for r in running.api.received if r["target"] == "/token"]) == 2
    calls = [r["headers"]["authorization"] for r in running.api.received if r["target"] == "/api/cc"]
    assert calls == ["Bearer cc-token-1", "Bearer cc-token-1", "Bearer cc-token-1", "Bearer cc-token-2"]


async def test_a_get_is_retried_on_503_after_the_retry_after_the_api_asked_for(running: Running) -> None:
    running.api.flaky = [(503, {"Retry-After": "2"}), (429, {"Retry-After": "1"})]
    result = await running.call("flaky")
    assert not result.is_error, text(result)
    assert running.waits == [2.0, 1.0]
    assert len([r for r in running.api.received if r["target"] == "/api/flaky"]) == 3


async def test_a_get_without_retry_after_backs_off_exponentially_with_jitter(running: Running) -> None:
    running.api.flaky = [(502, {}), (504, {})]
    assert not (await running.call("flaky")).is_error
    first, second = running.waits
    assert 0.125 <= first <= 0.25 and 0.25 <= second <= 0.5


async def test_a_post_is_retried_only_with_its_idempotency_key(running: Running) -> None:
    running.api.flaky = [(503, {"Retry-After": "0"}), (503, {"Retry-After": "0"})]
    refused = await running.call("flaky_post")
    assert refused.is_error and "503" in text(refused) and "Retry after 0 seconds" in text(refused)
    assert len([r for r in running.api.received if r["target"] == "/api/flaky-post"]) == 1
    running.api.flaky = [(503, {"Retry-After": "0"})]
    keyed = await running.call("flaky_post", Idempotency_Key="k-1")
    assert not keyed.is_error, text(keyed)
    assert [r["headers"].get("idempotency-key") for r in running.api.received[-2:]] == ["k-1", "k-1"]


async def test_retries_give_up_when_the_api_asks_for_a_longer_wait_than_allowed(running: Running) -> None:
    running.api.flaky = [(503, {"Retry-After": "120"})]
    result = await running.call("flaky")
    assert result.is_error and "Retry after 120 seconds" in text(result)
    assert running.waits == []
    running.api.flaky = [(503, {}), (503, {}), (503, {}), (503, {})]
    exhausted = await running.call("flaky")
    assert exhausted.is_error and "503 Service Unavailable" in text(exhausted)
    assert len(running.waits) == 2  # retries = 2


async def test_an_api_slower_than_the_operation_timeout_is_a_tool_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_connector(tmp_path, monkeypatch, operations={"slow": {"timeout": 0.2}}) as started:
        result = await started.call("slow")
        assert result.is_error and "did not answer within 0.2 seconds" in text(result)
        health = await started.connector.health()
        assert not health.ok and "did not answer" in health.detail


async def test_an_unreachable_api_is_a_tool_error_not_a_protocol_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once the socket closes
    async with open_connector(tmp_path, monkeypatch, base_url=f"http://127.0.0.1:{port}/api") as started:
        result = await started.call("public")
        assert result.is_error and "Could not reach the API of 'calls'" in text(result)


async def test_api_errors_carry_its_message_and_what_to_do(running: Running) -> None:
    result = await running.call("get_item", id="missing")
    assert result.is_error
    said = text(result)
    assert "404 Not Found: No such item; item 'missing' does not exist" in said
    assert "Not found: GET /api/items/missing" in said


async def test_binary_answers_are_resources_and_large_lists_are_cut_by_items_with_a_note(running: Running) -> None:
    picture = await running.call("picture", size="small")
    [sent] = [r for r in running.api.received if r["target"].startswith("/api/picture")]
    assert sent["target"] == f"/api/picture?size=small&api_key={SECRETS['QUERY_KEY']}"
    # named by the URL asked for, without the API key that went in the query
    uri = f"{running.api.base}/api/picture?size=small"
    resource = {"uri": uri, "mimeType": "image/png", "blob": base64.b64encode(PNG).decode()}
    assert picture.content == [{"type": "resource", "resource": resource}]
    small = await running.call("list_items", limit=3)
    assert len(json.loads(small.content[0]["text"])) == 3 and len(small.content) == 1
    big = await running.call("list_items", limit=2000)  # ~270 kB, over the 100 kB default cap
    shown = json.loads(big.content[0]["text"])
    assert 100 < len(shown) < 2000 and len(big.content[0]["text"].encode()) <= 100_000
    assert f"{len(shown)} of 2000 items" in big.content[1]["text"] and "'limit'" in big.content[1]["text"]


async def test_fields_project_the_answer_before_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_connector(tmp_path, monkeypatch, operations={"listItems": {"fields": ["id"]}}) as started:
        result = await started.call("list_items", limit=2)
        assert json.loads(result.content[0]["text"]) == [{"id": 0}, {"id": 1}]


async def test_a_base_url_from_a_fetched_spec_is_held_to_the_address_policy(running: Running) -> None:
    connector = running.connector
    with pytest.raises(Refused, match="loopback"):
        connector._client("https://127.0.0.1:8443/api", PUBLIC_ONLY, allow_http=False)
    with pytest.raises(Refused, match="plain http"):
        connector._client("http://api.example.com/", PUBLIC_ONLY, allow_http=False)

    async def internal(host: str, port: int) -> list[str]:
        return ["10.1.2.3"]

    connector.resolve = internal
    client = connector._client("https://internal.example.com/", PUBLIC_ONLY, allow_http=False)
    with pytest.raises(Refused, match="private"):
        await client.fetch("GET", {}, b"", 1000, target="/")


async def test_the_callers_token_to_patchbay_and_its_headers_never_reach_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    api = Api()
    async with serving(api.app()) as base:
        api.base = base
        (tmp_path / "api.json").write_text(json.dumps(spec_for(base)), encoding="utf-8")
        settings = from_dict(
            {
                "store": {"url": f"sqlite:///{tmp_path / 'p.db'}"},
                "auth": {"mode": "api_key"},
                "outbound": {"allow_private_network": True},
                "connectors": [
                    {"name": "calls", "type": "openapi", "spec": "api.json", "mode": "tools", "security": SECURITY}
                ],
            },
            base_dir=tmp_path,
        )
        app = create_app(settings)
        await app.runtime.start()
        try:
            core = app.runtime.auth.core
            _, key = await core.run(core.keys.create, "client", ["mcp"])
            inbound = {
                "accept": "application/json, text/event-stream",
                "authorization": f"Bearer {key}",
                "mcp-protocol-version": "2025-11-25",
                "cookie": "inbound-cookie=marker-cookie",
                "x-inbound": "marker-header",
            }
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
            ) as http:
                init = {
                    "protocolVersion": "2025-11-25",
                    "capabilities": {},
                    "clientInfo": {"name": "t", "version": "1"},
                }
                opened = await http.post(
                    "/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}, headers=inbound
                )
                session = {**inbound, "mcp-session-id": opened.headers["mcp-session-id"]}
                calls = [
                    ("calls_public", {}),
                    ("calls_bearer", {}),
                    ("calls_key_cookie", {}),
                    ("calls_get_item", {"id": "7"}),
                ]
                for n, (tool, arguments) in enumerate(calls, 2):
                    body = {
                        "jsonrpc": "2.0",
                        "id": n,
                        "method": "tools/call",
                        "params": {"name": tool, "arguments": arguments},
                    }
                    answer = (await http.post("/mcp", json=body, headers=session)).json()
                    assert answer["result"]["isError"] is False, answer
        finally:
            app.sessions.close_all()
            await app.runtime.stop()
    assert len(api.received) == len(calls)
    everything = repr(api.received)
    assert key not in everything and "marker-header" not in everything and "marker-cookie" not in everything
    assert api.received[1]["headers"]["authorization"] == "Bearer bearer-secret-5"  # its own credential only
