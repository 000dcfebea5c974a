"""Steps 3-5: transport negotiation in both eras and legacy SSE, Accept variants, sessions, Origin/Host
(field-problems C1-C4, D1-D3, E1, E2, A4; mcp-requirements §2.8, §3)."""

from __future__ import annotations

from urllib.parse import urlsplit

from patchbay.doctor.context import DOCTOR_CLIENT, FUTURE_VERSION, MODERN, Context, Session
from patchbay.doctor.model import Result

__all__ = ["CHECKS"]

_HTML_SKIP = "the endpoint answered with an HTML page (see edge.html)"
_SIGN_IN_SKIP = "the server requires sign-in (see auth.challenge); run with --token or --interactive to check it"
_KNOWN = ("2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", MODERN)


def _broken(session: Session) -> str | None:
    """Why later checks cannot use this session: None when it works."""
    if session.ok:
        return None
    if session.reply.status == 401:
        return _SIGN_IN_SKIP
    return _HTML_SKIP if session.reply.is_html else f"no MCP session ({session.error}; see transport.initialize)"


def _host_hint(session: Session) -> str:
    if session.reply.status == 421 or "host" in session.reply.text.lower()[:200]:
        return (
            " The Host header was refused: add the public host name to the server's allowed hosts (DNS-rebinding "
            "protection with a localhost-only list)."
        )
    return ""


async def check_initialize(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if session.reply.is_html:
        return [ctx.skip("transport.initialize", _HTML_SKIP)]
    if session.reply.status == 401:
        return [ctx.skip("transport.initialize", _SIGN_IN_SKIP)]
    if not session.ok:
        return [ctx.fail("transport.initialize", f"initialize failed: {session.error}.{_host_hint(session)}")]
    accepted = ctx.profile.protocol_versions
    if session.version not in accepted:
        return [
            ctx.fail(
                "transport.initialize",
                f"asked for {accepted[0]}, the server answered {session.version!r}, "
                f"which {ctx.profile.title} does not speak ({', '.join(accepted)})",
            )
        ]
    future = await ctx.initialize(FUTURE_VERSION)
    if not future.ok:
        return [
            ctx.fail(
                "transport.initialize",
                f"initialize with an unknown newer version ({FUTURE_VERSION}) was "
                f"refused instead of negotiated: {future.error}",
            )
        ]
    if future.version not in _KNOWN:
        return [
            ctx.warn(
                "transport.initialize",
                f"initialize {FUTURE_VERSION} was answered with {future.version!r}, not a published version",
            )
        ]
    return [ctx.ok("transport.initialize", f"{accepted[0]} → {session.version}; {FUTURE_VERSION} → {future.version}")]


async def check_discover(ctx: Context) -> list[Result]:
    if ctx.profile.opening != "discover-then-initialize":
        return [ctx.skip("transport.discover", f"{ctx.profile.title} opens with initialize")]
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientInfo": DOCTOR_CLIENT,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    headers = {**ctx.headers(version=MODERN), "mcp-method": "server/discover"}
    body = {"jsonrpc": "2.0", "id": 1, "method": "server/discover", "params": {"_meta": meta}}
    reply = await ctx.probe.send("POST", ctx.target.url, headers=headers, json_body=body)
    if reply.is_html:
        return [ctx.skip("transport.discover", _HTML_SKIP)]
    if reply.status == 401:
        return [ctx.skip("transport.discover", _SIGN_IN_SKIP)]
    message = reply.json()
    if isinstance(message, dict) and isinstance(message.get("result"), dict):
        versions = message["result"].get("supportedVersions")
        if isinstance(versions, list) and versions:
            return [ctx.ok("transport.discover", f"modern server; supportedVersions {', '.join(map(str, versions))}")]
        return [ctx.fail("transport.discover", "server/discover answered without supportedVersions")]
    if isinstance(message, dict) and isinstance(message.get("error"), dict):
        if reply.status == 200:
            return [
                ctx.ok("transport.discover", "legacy server: a clean JSON-RPC error, clients fall back to initialize")
            ]
        return [
            ctx.warn(
                "transport.discover",
                f"server/discover refused with HTTP {reply.status}; current Claude "
                "versions fall back to initialize, older client builds stop here",
            )
        ]
    return [ctx.fail("transport.discover", f"server/discover got no JSON-RPC answer: {reply.describe()}")]


async def check_version_header(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if (why := _broken(session)) is not None:
        return [ctx.skip("transport.version_header", why)]
    newer = "2025-11-25" if session.version < "2025-11-25" else MODERN
    reply, _ = await ctx.request(session, "tools/list", {}, version=newer)
    if reply.status == 400:
        return [
            ctx.fail(
                "transport.version_header",
                f"negotiated {session.version}, then MCP-Protocol-Version: {newer} was refused: {reply.describe()}",
            )
        ]
    return [ctx.ok("transport.version_header", f"negotiated {session.version}; a {newer} header → {reply.status}")]


async def check_accept(ctx: Context) -> list[Result]:
    if (why := _broken(await ctx.session())) is not None:
        return [ctx.skip("transport.accept", why)]
    refused: list[str] = []
    for accept in ctx.profile.accept_variants:
        session = await ctx.initialize(accept=accept)
        if not session.ok:
            refused.append(f"Accept: {accept} → {session.reply.status}")
    if refused:
        return [ctx.fail("transport.accept", "; ".join(refused))]
    return [ctx.ok("transport.accept", "accepted: " + " | ".join(ctx.profile.accept_variants))]


async def check_notification(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if (why := _broken(session)) is not None or session.notified is None:
        return [ctx.skip("transport.notification", why or "no session")]
    reply = session.notified
    if reply.status == 202 and not reply.body.strip():
        return [ctx.ok("transport.notification", "notifications/initialized → 202, empty body")]
    return [
        ctx.fail(
            "transport.notification",
            f"notifications/initialized → {reply.status}"
            + (f" with a body ({reply.text[:80]!r})" if reply.body.strip() else ""),
        )
    ]


async def check_get(ctx: Context) -> list[Result]:
    headers = ctx.headers(accept="text/event-stream", auth=False)
    reply = await ctx.probe.send("GET", ctx.target.url, headers=headers, hold=1.0)
    if reply.is_html:
        return [ctx.skip("transport.get", _HTML_SKIP)]
    if reply.status in (405, 401) or (reply.status == 200 and reply.is_sse):
        return [ctx.ok("transport.get", f"GET → {reply.status}")]
    if reply.status == 400:
        return [ctx.warn("transport.get", "GET without a session → 400; some clients only treat 405 as 'no stream'")]
    return [ctx.fail("transport.get", f"GET with Accept: text/event-stream → {reply.describe()}")]


async def check_legacy_sse(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if session.ok or session.reply.is_html:
        return [
            ctx.ok("transport.legacy_sse", "Streamable HTTP answers")
            if session.ok
            else ctx.skip("transport.legacy_sse", _HTML_SKIP)
        ]
    sse_url = ctx.target.at("/sse")
    reply = await ctx.probe.send("GET", sse_url, headers=ctx.headers(accept="text/event-stream"), hold=2.0)
    endpoint = next((e for e in reply.events if e.event == "endpoint"), None)
    if endpoint is not None:
        return [
            ctx.fail(
                "transport.legacy_sse",
                f"only legacy HTTP+SSE answers ({sse_url}); ChatGPT needs Streamable HTTP and Claude is retiring SSE",
            )
        ]
    return [
        ctx.skip("transport.legacy_sse", "neither Streamable HTTP nor legacy SSE answered (see transport.initialize)")
    ]


async def check_unknown_session(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if (why := _broken(session)) is not None:
        return [ctx.skip("session.unknown", why)]
    if not session.session_id:
        return [ctx.ok("session.unknown", "stateless server: no session ids to expire")]
    fake = Session(session.reply, version=session.version, session_id=ctx.fresh_session_id())
    reply, _ = await ctx.request(fake, "tools/list", {})
    if reply.status == 404:
        return [ctx.ok("session.unknown", "a random Mcp-Session-Id → 404")]
    return [
        ctx.fail(
            "session.unknown",
            f"a random Mcp-Session-Id → {reply.status}, not 404: clients will not "
            "re-initialize after a restart or expiry",
        )
    ]


async def check_session_reuse(ctx: Context) -> list[Result]:
    session = await ctx.session()
    if (why := _broken(session)) is not None:
        return [ctx.skip("session.reuse", why)]
    statuses = []
    for n in range(5):
        reply, message = await ctx.request(session, "ping", {}, id=100 + n, cached=False)
        statuses.append(reply.status)
        if not reply.ok or not isinstance(message, dict) or "result" not in message:
            return [ctx.fail("session.reuse", f"request {n + 1} of 5 on one session failed: {reply.describe()}")]
    return [ctx.ok("session.reuse", "5 requests on one session all answered")]


async def check_origin(ctx: Context) -> list[Result]:
    if (why := _broken(await ctx.session())) is not None:
        return [ctx.skip("origin.accepted", why)]
    refused = []
    for origin in ctx.profile.origins:
        session = await ctx.initialize(origin=origin)
        if not session.ok:
            refused.append(f"Origin: {origin} → {session.reply.status}")
    host = urlsplit(ctx.target.url).netloc
    if refused:
        return [ctx.fail("origin.accepted", "; ".join(refused) + f" (Host: {host})")]
    shown = ", ".join(ctx.profile.origins) or "none sent"
    return [ctx.ok("origin.accepted", f"Host {host}; no Origin and {shown} accepted")]


CHECKS = (
    check_initialize,
    check_discover,
    check_version_header,
    check_accept,
    check_notification,
    check_get,
    check_legacy_sse,
    check_unknown_session,
    check_session_reuse,
    check_origin,
)
