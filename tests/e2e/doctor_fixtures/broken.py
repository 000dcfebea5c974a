"""Servers that each break exactly one thing, with the check ids the doctor must fail for them (and no others)."""

from __future__ import annotations

import asyncio
import gzip
import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.e2e.doctor_fixtures.base import OAuthServer, Server, text_result


class HtmlOnGet(Server):
    """A SPA catch-all answers browser GET/HEAD on /mcp with an HTML 404 page (B3)."""

    async def get(self, request: Request) -> Response:
        return HTMLResponse("<!doctype html><html><body>Not found</body></html>", 404)


class SlashRedirect(Server):
    """/mcp/ redirects to /mcp, as a Mount or nginx would (B1)."""

    def routes(self) -> list[Route]:
        redirect = lambda r: RedirectResponse("/mcp", 307)  # noqa: E731
        return [
            Route("/mcp/", redirect, methods=["GET", "POST", "HEAD"]),
            *[r for r in super().routes() if r.path != "/mcp/"],
        ]


class BufferedSse(Server):
    """Compression middleware gzips event streams, which buffers them until the compressor flushes (F1)."""

    def respond(self, accept: str, message: dict[str, Any], headers: dict[str, str]) -> Response:
        if "application/json" in accept:
            return JSONResponse(message, headers=headers)
        body = gzip.compress(f"event: message\ndata: {json.dumps(message)}\n\n".encode())
        return Response(body, media_type="text/event-stream", headers={**headers, "content-encoding": "gzip"})

    async def get(self, request: Request) -> Response:
        return Response(status_code=405, headers={"allow": "POST"})


class StrictAccept(Server):
    """406 unless Accept lists both application/json and text/event-stream (C1)."""

    def accepts(self, accept: str) -> bool:
        return "application/json" in accept and "text/event-stream" in accept


class SessionBadRequest(Server):
    """An unknown session id gets 400 instead of 404 (E2)."""

    def unknown_session(self) -> Response:
        return JSONResponse({"error": "bad session"}, 400)


class ClaudeOnlyOrigin(Server):
    """A hand-rolled Origin allow list that only knows claude.ai (A4)."""

    def origin_ok(self, origin: str | None) -> bool:
        return origin in (None, "https://claude.ai")


class WellKnownHtml(Server):
    """An SPA catch-all answers every unknown GET, /.well-known/* included, with index.html (B3)."""

    def routes(self) -> list[Route]:
        page = lambda r: HTMLResponse("<!doctype html><html><body>app</body></html>")  # noqa: E731
        return [*super().routes(), Route("/{path:path}", page)]


class ChallengeWithoutHeader(OAuthServer):
    """401 with no WWW-Authenticate (G1)."""

    def challenge(self, request: Request) -> Response:
        return JSONResponse({"error": "unauthorized"}, 401)


class IssuerSlash(OAuthServer):
    """The metadata issuer has a trailing slash the PRM does not (G5)."""

    def as_metadata(self, request: Request) -> dict[str, Any]:
        return {**super().as_metadata(request), "issuer": super().as_metadata(request)["issuer"] + "/"}


class NoS256(OAuthServer):
    """No S256 in code_challenge_methods_supported (Entra ID/Cognito style, G4)."""

    def as_metadata(self, request: Request) -> dict[str, Any]:
        return {**super().as_metadata(request), "code_challenge_methods_supported": ["plain"]}


class NoRefresh(OAuthServer):
    """No refresh_token grant (J1)."""

    def as_metadata(self, request: Request) -> dict[str, Any]:
        return {**super().as_metadata(request), "grant_types_supported": ["authorization_code"]}


class DcrRejectsSecretPost(OAuthServer):
    """Registration refuses client_secret_post, which ChatGPT and Claude request (H2)."""

    async def register(self, request: Request) -> Response:
        if json.loads(await request.body()).get("token_endpoint_auth_method") == "client_secret_post":
            return JSONResponse({"error": "invalid_client_metadata"}, 400)
        return await super().register(request)


class BadToolNames(Server):
    """A 70-character tool name and one with a dot (K4)."""

    def tools(self) -> list[dict[str, Any]]:
        tools = super().tools()
        tools[1] = {**tools[1], "name": "add_note_to_the_shared_notebook_of_the_whole_engineering_organisation_x"}
        tools.append({**tools[1], "name": "notes.archive"})
        return tools


class BadSchemas(Server):
    """An array without items and an outputSchema whose root is not an object (K1, K2)."""

    def tools(self) -> list[dict[str, Any]]:
        tools = super().tools()
        tools[1] = {**tools[1], "inputSchema": {"type": "object", "properties": {"tags": {"type": "array"}}}}
        tools.append({**tools[0], "name": "list_ids", "outputSchema": {"type": "array", "items": {"type": "string"}}})
        return tools

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "list_ids":
            return {"content": [{"type": "text", "text": "[]"}], "isError": False}
        return await super().call(name, arguments)


class MissingAnnotations(Server):
    """A write tool without annotations (M4)."""

    def tools(self) -> list[dict[str, Any]]:
        tools = super().tools()
        tools[1] = {k: v for k, v in tools[1].items() if k != "annotations"}
        return tools


class OutputMismatch(Server):
    """structuredContent that does not match the declared outputSchema (K3)."""

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "get_status":
            return text_result({"ok": "yes"})
        return await super().call(name, arguments)


class Oversized(Server):
    """A 200,000-character result (O4)."""

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "get_status":
            result = text_result({"ok": True})
            result["content"].append({"type": "text", "text": "x" * 200_000})
            return result
        return await super().call(name, arguments)


class SearchOldShape(Server):
    """search returns the superseded {"ids": [...]} shape (M1)."""

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        if name == "search":
            return {"content": [{"type": "text", "text": json.dumps({"ids": ["n1"]})}], "isError": False}
        return await super().call(name, arguments)


class SlowDiscovery(Server):
    """tools/list takes longer than the client waits (a cold start, F4); the doctor runs with --slow 1."""

    # 1.3 s against a 1 s limit: a slow answer by construction, whatever the machine's load.

    async def tools_list(self) -> dict[str, Any]:
        await asyncio.sleep(1.3)
        return await super().tools_list()


@dataclass(frozen=True)
class Case:
    server: type[Server]
    fails: frozenset[str]
    token: bool = False
    slow_fail: float = 8.0  # the doctor's --slow for this case


CASES: dict[str, Case] = {
    "html_on_get": Case(HtmlOnGet, frozenset({"edge.html"})),
    "slash_redirect": Case(SlashRedirect, frozenset({"edge.redirect"})),
    "buffered_sse": Case(BufferedSse, frozenset({"edge.sse_buffering"})),
    "strict_accept": Case(StrictAccept, frozenset({"transport.accept"})),
    "session_400": Case(SessionBadRequest, frozenset({"session.unknown"})),
    "claude_only_origin": Case(ClaudeOnlyOrigin, frozenset({"origin.accepted"})),
    "wellknown_html": Case(WellKnownHtml, frozenset({"auth.wellknown"})),
    "challenge_without_header": Case(ChallengeWithoutHeader, frozenset({"auth.challenge"}), token=True),
    "issuer_slash": Case(IssuerSlash, frozenset({"auth.issuer"}), token=True),
    "no_s256": Case(NoS256, frozenset({"auth.pkce"}), token=True),
    "no_refresh": Case(NoRefresh, frozenset({"auth.refresh"}), token=True),
    "dcr_rejects_secret_post": Case(DcrRejectsSecretPost, frozenset({"registration.dcr"}), token=True),
    "bad_tool_names": Case(BadToolNames, frozenset({"tools.names"})),
    "bad_schemas": Case(BadSchemas, frozenset({"tools.schemas"})),
    "missing_annotations": Case(MissingAnnotations, frozenset({"tools.annotations"})),
    "output_mismatch": Case(OutputMismatch, frozenset({"tools.output"})),
    "oversized": Case(Oversized, frozenset({"tools.size"})),
    "search_old_shape": Case(SearchOldShape, frozenset({"tools.search_fetch"})),
    "slow_discovery": Case(SlowDiscovery, frozenset({"timing.discovery"}), slow_fail=1.0),
}
