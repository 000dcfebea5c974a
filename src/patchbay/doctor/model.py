"""What a check returns, and the catalogue of every check the doctor knows (ids, steps, references, fixes)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["CATALOG", "STEPS", "Check", "Result", "Status"]


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 (a status, not a password)
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


# Report order: the order in which a client meets each step when it connects (field-problems.md §R).
STEPS: dict[str, str] = {
    "url": "URL",
    "edge": "Network edge",
    "transport": "Transport and protocol",
    "session": "Sessions",
    "origin": "Origin and Host",
    "auth": "Sign-in discovery",
    "registration": "Client registration",
    "signin": "Signed-in connection",
    "tools": "Tools",
    "timing": "Timings",
}


@dataclass(frozen=True)
class Check:
    """A check's fixed facts: what it verifies, its step, the references it enforces and the usual fix."""

    id: str
    step: str
    title: str
    refs: tuple[str, ...]
    fix: str


@dataclass(frozen=True)
class Result:
    """One check's outcome for one client profile. ``why`` says what was observed; ``fix`` what to change."""

    id: str
    status: Status
    why: str
    fix: str = ""
    client: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def check(self) -> Check:
        return CATALOG[self.id]

    def as_json(self) -> dict[str, Any]:
        check = self.check
        return {
            "id": self.id,
            "step": check.step,
            "title": check.title,
            "status": self.status.value,
            "why": self.why,
            "fix": self.fix if self.status in (Status.FAIL, Status.WARN) else "",
            "refs": list(check.refs),
            **({"details": self.details} if self.details else {}),
        }


def _c(id: str, title: str, refs: str, fix: str) -> Check:
    return Check(id, id.split(".", 1)[0], title, tuple(refs.split()), fix)


_CHECKS = [
    # -- url
    _c(
        "url.https",
        "The URL uses HTTPS",
        "A5 R-002",
        "Serve the MCP endpoint over HTTPS with a publicly trusted certificate (a reverse proxy or a tunnel).",
    ),
    _c(
        "url.port",
        "The URL uses port 443",
        "A1",
        "Serve on the default HTTPS port 443 (reverse proxy, tunnel or port forward); Claude's hosted connectors "
        "only connect to 443.",
    ),
    _c(
        "url.credentials",
        "No credentials in the URL",
        "M2 O3 §3.6",
        "Remove tokens and keys from the URL; hosted clients sign in with OAuth and send a bearer token.",
    ),
    _c(
        "url.public",
        "The host resolves to public IPv4 addresses only",
        "A2 A5",
        "Publish public A records only (no private, CGNAT or IPv6-only addresses); hosted clients connect from "
        "the vendor's cloud.",
    ),
    # -- edge
    _c(
        "edge.html",
        "No HTML or challenge pages on MCP and discovery URLs",
        "A3 A6 B3 R-018",
        "Exempt /mcp, /.well-known/* and the OAuth endpoints from SPA catch-alls, bot protection and tunnel "
        "interstitials; they must answer JSON.",
    ),
    _c(
        "edge.redirect",
        "No redirects on /mcp and /mcp/",
        "B1 R-002",
        "Route both /mcp and /mcp/ to the MCP handler (a route, not a mount) and turn off trailing-slash redirects.",
    ),
    _c(
        "edge.sse_buffering",
        "Event streams are not buffered or compressed",
        "F1 R-010 §3.2",
        "Send X-Accel-Buffering: no and Cache-Control: no-cache, no-transform on text/event-stream, exclude SSE "
        "from gzip, and turn off proxy buffering (nginx: proxy_buffering off).",
    ),
    _c(
        "edge.keepalive",
        "Long streams carry keep-alives",
        "F2 §3.2",
        "Flush stream headers at once and send ': keep-alive' comments every 15-30 s so idle timeouts at the edge "
        "(Cloudflare ~100 s, load balancers 60 s) do not cut the stream.",
    ),
    # -- transport
    _c(
        "transport.initialize",
        "initialize negotiates every protocol version the client sends",
        "D1 §2.8 R-012",
        "Answer initialize with the requested version when supported, otherwise your latest 2025 version; never "
        "reject a version at the HTTP layer.",
    ),
    _c(
        "transport.discover",
        "server/discover (2026-07-28) is answered or cleanly refused",
        "D2 R-030",
        "Implement server/discover, or answer it quickly with HTTP 200 and JSON-RPC error -32601 so clients fall "
        "back to initialize.",
    ),
    _c(
        "transport.version_header",
        "A newer MCP-Protocol-Version header is tolerated",
        "D3 R-014",
        "Fall back to the negotiated version when MCP-Protocol-Version names a version newer than the session's "
        "instead of answering 400.",
    ),
    _c(
        "transport.accept",
        "Every Accept variant real clients send is accepted",
        "C1 R-018 §3.1",
        "Be liberal with Accept: answer with JSON when the client accepts application/json (or */*), with an "
        "event stream when it only accepts text/event-stream; never 406.",
    ),
    _c(
        "transport.notification",
        "Notifications get 202 Accepted with no body",
        "C2 R-011",
        "Answer a POSTed notification with 202 and an empty body.",
    ),
    _c(
        "transport.get",
        "GET on the endpoint: an event stream, 405 or 401",
        "C3 R-015",
        "Answer GET /mcp with 405 and Allow: POST (or a real event stream); answer 401 with a challenge first "
        "when the request is unauthenticated.",
    ),
    _c(
        "transport.legacy_sse",
        "Streamable HTTP is offered, not only legacy SSE",
        "C4 §3.4 R-019",
        "Serve Streamable HTTP at /mcp; keep /sse only for old clients.",
    ),
    # -- session
    _c(
        "session.unknown",
        "An unknown session id gets 404",
        "E2 R-013 §3.1",
        "Answer requests carrying an unknown or expired Mcp-Session-Id with 404 (before auth) so clients start a "
        "new session.",
    ),
    _c(
        "session.reuse",
        "One session serves repeated requests",
        "E1 R-003",
        "Keep session state in a shared store (or run stateless) so every replica can serve every request.",
    ),
    # -- origin
    _c(
        "origin.accepted",
        "Requests with the client's Origin (or none) are accepted",
        "A4 R-016 §3.6",
        "Add the client's origin (https://chatgpt.com, https://claude.ai, https://claude.com) to the Origin allow "
        "list and the public host name to the Host allow list.",
    ),
    # -- auth discovery
    _c(
        "auth.wellknown",
        "Every well-known metadata URL answers JSON or 404",
        "B3 G2 G4 R-080",
        "Serve OAuth discovery documents as application/json without authentication, before any catch-all; "
        "answer 404 (not HTML, 401 or 405) where you have none.",
    ),
    _c(
        "auth.challenge",
        "401 carries a WWW-Authenticate challenge with a resolvable resource_metadata",
        "G1 R-081 §4.4",
        'Answer unauthenticated requests with 401 and WWW-Authenticate: Bearer resource_metadata="<absolute URL '
        'of your protected-resource metadata>".',
    ),
    _c(
        "auth.prm",
        "Protected-resource metadata names this resource and its authorization server",
        "G2 G3 R-080 §4.3",
        "Serve RFC 9728 metadata at /.well-known/oauth-protected-resource[/mcp] with resource equal to the MCP URL "
        "and authorization_servers listing your issuer.",
    ),
    _c(
        "auth.as_metadata",
        "Authorization-server metadata is found where the client looks",
        "G4 R-090 §4.2",
        "Serve RFC 8414 metadata (and openid-configuration) for the issuer named in authorization_servers, with "
        "authorization_endpoint, token_endpoint and response_types_supported.",
    ),
    _c(
        "auth.issuer",
        "The issuer is byte-identical everywhere",
        "G5 R-090",
        "Use one issuer string (watch the trailing slash) in authorization_servers, the metadata issuer and the "
        "token iss.",
    ),
    _c(
        "auth.pkce",
        "PKCE S256 is advertised",
        "G4 R-090 §4.5",
        'Add code_challenge_methods_supported: ["S256"] to the authorization-server metadata (and support it).',
    ),
    _c(
        "auth.methods",
        "A token endpoint auth method the client uses is supported",
        "H2 R-090",
        "Advertise and accept none, client_secret_post and client_secret_basic in "
        "token_endpoint_auth_methods_supported.",
    ),
    _c(
        "auth.refresh",
        "Refresh tokens are advertised (refresh_token grant, offline_access)",
        "J1 R-095",
        "Add refresh_token to grant_types_supported and offline_access to scopes_supported, and issue rotating "
        "refresh tokens.",
    ),
    _c(
        "auth.urls",
        "Every advertised URL is absolute HTTPS on a public host",
        "B4",
        "Build every advertised URL from one configured public URL instead of the request's Host/scheme.",
    ),
    _c(
        "auth.consistency",
        "Auth signals agree (authless servers look authless)",
        "M3 O3 R-072",
        "Either serve OAuth completely (challenge, metadata, securitySchemes oauth2) or not at all (404 on every "
        "OAuth well-known, no oauth2 securitySchemes).",
    ),
    # -- registration
    _c(
        "registration.dcr",
        "Dynamic client registration accepts the client's exact request",
        "H1 H2 R-093",
        "Accept RFC 7591 registrations as the client sends them (public clients, its redirect URIs, its requested "
        "auth method) and echo the method back.",
    ),
    _c(
        "registration.redirects",
        "The client's redirect URIs are accepted at /authorize",
        "H3 R-094",
        "Allow the client's callback URLs (exact hosts with per-connector paths, loopback on any port) at "
        "registration and at /authorize.",
    ),
    _c(
        "registration.cimd",
        "Client ID metadata documents are supported",
        "H1 R-092",
        "Advertise client_id_metadata_document_supported: true and accept HTTPS client_id URLs (or offer DCR).",
    ),
    _c(
        "registration.resource",
        "The resource parameter is accepted on /authorize",
        "I2 R-091",
        "Accept the RFC 8707 resource parameter (the exact MCP URL) on /authorize and /token and mint the audience "
        "from it.",
    ),
    # -- signed in
    _c(
        "signin.token",
        "The bearer token opens an MCP session",
        "I1 N2 R-082",
        "Make the MCP endpoint accept the tokens your authorization server issues for this resource (audience = "
        "the MCP URL, issuer = the metadata issuer).",
    ),
    _c(
        "signin.refresh",
        "The refresh grant returns a new access token",
        "J1 J2 I3",
        "Issue refresh tokens and accept the refresh_token grant with and without resource.",
    ),
    # -- tools
    _c(
        "tools.list",
        "tools/list answers",
        "N1 K1",
        "Make tools/list succeed for this client; one failing tool definition hides every tool.",
    ),
    _c(
        "tools.names",
        "Tool names fit the client's charset and length after prefixing",
        "K4 R-050",
        "Use names matching ^[a-zA-Z0-9_-]+$, short enough to leave room for the client's prefix (≤ ~40 "
        "characters), and unique.",
    ),
    _c(
        "tools.schemas",
        "Input and output schemas are portable",
        "K1 K2 N3 R-050",
        'Give every schema a root {"type": "object", "properties": {…}}, no root oneOf/anyOf/allOf, no $ref, '
        "and items on every array.",
    ),
    _c(
        "tools.descriptions",
        "Every tool has a description",
        "R-050 R-054",
        'Describe each tool in one or two sentences starting with what it does ("Use this when …").',
    ),
    _c(
        "tools.annotations",
        "Every tool sets readOnlyHint, destructiveHint and openWorldHint explicitly",
        "M4 R-050 §5.4",
        "Set readOnlyHint, destructiveHint and openWorldHint explicitly on every tool (plus idempotentHint and a "
        "title).",
    ),
    _c(
        "tools.security_schemes",
        "securitySchemes agree with the server's auth",
        "M3 R-072 §5.5",
        "Declare oauth2 securitySchemes only when OAuth discovery works; mirror them in _meta.securitySchemes.",
    ),
    _c(
        "tools.output",
        "structuredContent matches outputSchema, with a text copy",
        "K3 R-052",
        "When a tool declares outputSchema, return structuredContent that conforms to it and the same JSON as a "
        "text content block.",
    ),
    _c(
        "tools.size",
        "Sample results fit the client's result-size limit",
        "O4 R-052",
        "Cap results (~100 KB) and paginate with a cursor, saying in the text that more is available.",
    ),
    _c(
        "tools.search_fetch",
        "search and fetch have the shape deep research expects",
        "M1 R-070 §5.3",
        'Offer read-only search(query: string) returning {"results":[{id,title,url}]} and fetch(id: string) '
        "returning {id,title,text,url,metadata?}, as structuredContent and JSON text.",
    ),
    # -- timing
    _c(
        "timing.discovery",
        "Discovery answers within the client's timeout",
        "F4",
        "Keep initialize, tools/list, the well-known documents, registration and token under 2 s; warm "
        "serverless instances.",
    ),
    _c(
        "timing.calls",
        "Sample tool calls finish within the client's timeout",
        "F3",
        "Return within ~30 s: start long work in one call and poll its status with another.",
    ),
]

CATALOG: dict[str, Check] = {check.id: check for check in _CHECKS}
