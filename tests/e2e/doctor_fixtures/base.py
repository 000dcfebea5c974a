"""A small, correct MCP server (2025 era + server/discover) with optional OAuth, written as plain Starlette routes.

Every behaviour is a method, so a broken fixture overrides exactly one of them. Stateful sessions, liberal Accept,
Origin allow list for the hosted clients, a keep-alive GET stream, search/fetch of the deep-research shape.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

SUPPORTED = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
ORIGINS = ("https://chatgpt.com", "https://claude.ai", "https://claude.com")
TOKEN = "good-token"
HINTS = {"readOnlyHint": True, "destructiveHint": False, "idempotentHint": True, "openWorldHint": False}
REDIRECT_PREFIXES = (
    "https://chatgpt.com/connector",
    "https://claude.ai/api/mcp/",
    "https://claude.com/api/mcp/",
    "http://localhost:",
    "http://127.0.0.1:",
)
SSE_HEADERS = {"cache-control": "no-cache, no-transform", "x-accel-buffering": "no"}


def text_result(value: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": json.dumps(value)}], "structuredContent": value, "isError": False}


class Server:
    oauth = False
    keepalive = 0.3

    def __init__(self) -> None:
        self.sessions: set[str] = set()
        self.clients: dict[str, dict[str, Any]] = {}

    # -- tools
    def tools(self) -> list[dict[str, Any]]:
        obj = {"type": "object", "properties": {}, "additionalProperties": False}
        return [
            {
                "name": "get_status",
                "title": "Status",
                "description": "Use this to read the service status.",
                "inputSchema": obj,
                "annotations": dict(HINTS),
                "outputSchema": {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]},
            },
            {
                "name": "add_note",
                "title": "Add note",
                "description": "Use this to add a note.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
                    "required": ["text"],
                },
                "annotations": {
                    "readOnlyHint": False,
                    "destructiveHint": False,
                    "idempotentHint": False,
                    "openWorldHint": False,
                },
            },
            {
                "name": "search",
                "title": "Search",
                "description": "Search the notes. Returns ids for fetch.",
                "inputSchema": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
                "annotations": dict(HINTS),
            },
            {
                "name": "fetch",
                "title": "Fetch",
                "description": "Fetch one note by the id search returned.",
                "inputSchema": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
                "annotations": dict(HINTS),
            },
        ]

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "get_status":
            return text_result({"ok": True})
        if name == "search":
            return text_result({"results": [{"id": "n1", "title": "Note 1", "url": "https://notes.example/n1"}]})
        if name == "fetch":
            return text_result({"id": "n1", "title": "Note 1", "text": "hello", "url": "https://notes.example/n1"})
        return text_result({"done": True})

    # -- MCP endpoint
    def origin_ok(self, origin: str | None) -> bool:
        return origin is None or origin in ORIGINS

    def authorized(self, request: Request) -> bool:
        return not self.oauth or request.headers.get("authorization") == f"Bearer {TOKEN}"

    def challenge(self, request: Request) -> Response:
        metadata = f"{base(request)}/.well-known/oauth-protected-resource/mcp"
        return JSONResponse(
            {"error": "unauthorized"}, 401, {"www-authenticate": f'Bearer resource_metadata="{metadata}"'}
        )

    def accepts(self, accept: str) -> bool:
        return True

    def unknown_session(self) -> Response:
        return JSONResponse(
            {"jsonrpc": "2.0", "id": None, "error": {"code": -32001, "message": "Session not found"}}, 404
        )

    async def rpc(self, message: dict[str, Any]) -> dict[str, Any]:
        method, params = message.get("method"), message.get("params") or {}
        if method == "initialize":
            asked = params.get("protocolVersion")
            result: dict[str, Any] = {
                "protocolVersion": asked if asked in SUPPORTED else SUPPORTED[0],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fixture", "version": "1"},
            }
        elif method == "server/discover":
            result = {
                "supportedVersions": ["2026-07-28", *SUPPORTED],
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "fixture", "version": "1"},
                "resultType": "complete",
            }
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = await self.tools_list()
        elif method == "tools/call":
            result = await self.call(params.get("name", ""), params.get("arguments") or {})
        else:
            return {"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": -32601, "message": "Method not found"}}
        return {"jsonrpc": "2.0", "id": message.get("id"), "result": result}

    async def tools_list(self) -> dict[str, Any]:
        return {"tools": self.tools()}

    def respond(self, accept: str, message: dict[str, Any], headers: dict[str, str]) -> Response:
        if "application/json" in accept or "*/*" in accept or not accept:
            return JSONResponse(message, headers=headers)

        async def events() -> AsyncIterator[bytes]:
            yield f"event: message\ndata: {json.dumps(message)}\n\n".encode()

        return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})

    async def post(self, request: Request) -> Response:
        if not self.origin_ok(request.headers.get("origin")):
            return JSONResponse({"error": "origin not allowed"}, 403)
        session = request.headers.get("mcp-session-id")
        if session is not None and session not in self.sessions:
            return self.unknown_session()
        if not self.authorized(request):
            return self.challenge(request)
        accept = request.headers.get("accept", "")
        if not self.accepts(accept):
            return JSONResponse({"error": "Not Acceptable"}, 406)
        message = json.loads(await request.body())
        if "id" not in message:
            return Response(status_code=202)
        headers = {}
        if message.get("method") == "initialize":
            session = secrets.token_urlsafe(16)
            self.sessions.add(session)
            headers["mcp-session-id"] = session
        return self.respond(accept, await self.rpc(message), headers)

    async def get(self, request: Request) -> Response:
        session = request.headers.get("mcp-session-id")
        if session is None or "text/event-stream" not in request.headers.get("accept", ""):
            return Response(status_code=405, headers={"allow": "POST"})
        if session not in self.sessions:
            return self.unknown_session()

        async def events() -> AsyncIterator[bytes]:
            yield b"id: 0\ndata: \n\n"
            while True:
                await asyncio.sleep(self.keepalive)
                yield b": keep-alive\n\n"

        return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)

    # -- OAuth (only when oauth = True)
    def prm(self, request: Request) -> dict[str, Any]:
        return {
            "resource": f"{base(request)}/mcp",
            "authorization_servers": [base(request)],
            "scopes_supported": ["notes"],
            "bearer_methods_supported": ["header"],
        }

    def as_metadata(self, request: Request) -> dict[str, Any]:
        root = base(request)
        return {
            "issuer": root,
            "authorization_endpoint": f"{root}/authorize",
            "token_endpoint": f"{root}/token",
            "registration_endpoint": f"{root}/register",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
            "scopes_supported": ["notes", "offline_access"],
            "client_id_metadata_document_supported": True,
        }

    async def register(self, request: Request) -> Response:
        body = json.loads(await request.body())
        method = body.get("token_endpoint_auth_method", "client_secret_basic")
        client = {**body, "client_id": secrets.token_urlsafe(8), "token_endpoint_auth_method": method}
        if method != "none":
            client["client_secret"] = secrets.token_urlsafe(16)
        self.clients[client["client_id"]] = client
        return JSONResponse(client, 201)

    async def authorize(self, request: Request) -> Response:
        q = request.query_params
        client = self.clients.get(q.get("client_id", ""))
        redirect = q.get("redirect_uri", "")
        if client is None or not redirect.startswith(REDIRECT_PREFIXES):
            return JSONResponse(
                {"error": "invalid_request", "error_description": "unknown client or redirect_uri"}, 400
            )
        return RedirectResponse(f"{redirect}?code=code-{secrets.token_hex(4)}&state={q.get('state', '')}", 302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") not in ("authorization_code", "refresh_token"):
            return JSONResponse({"error": "unsupported_grant_type"}, 400)
        return JSONResponse({"access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600, "refresh_token": "r1"})

    def routes(self) -> list[Route]:
        routes = [
            Route("/mcp", self.post, methods=["POST"]),
            Route("/mcp/", self.post, methods=["POST"]),
            Route("/mcp", self.get, methods=["GET", "HEAD"]),
            Route("/mcp/", self.get, methods=["GET", "HEAD"]),
        ]
        if self.oauth:
            prm = lambda r: JSONResponse(self.prm(r))  # noqa: E731
            meta = lambda r: JSONResponse(self.as_metadata(r))  # noqa: E731
            routes += [
                Route("/.well-known/oauth-protected-resource", prm),
                Route("/.well-known/oauth-protected-resource/mcp", prm),
                Route("/.well-known/oauth-authorization-server", meta),
                Route("/.well-known/openid-configuration", meta),
                Route("/register", self.register, methods=["POST"]),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
            ]
        return routes

    def app(self) -> Starlette:
        return Starlette(routes=self.routes())


class OAuthServer(Server):
    oauth = True


def base(request: Request) -> str:
    return str(request.base_url).rstrip("/")
