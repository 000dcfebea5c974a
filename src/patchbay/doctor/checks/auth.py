"""Steps 6-7, sign-in discovery: well-known documents, the 401 challenge, protected-resource and authorization-server
metadata, issuer, PKCE, auth methods, refresh (field-problems B3, B4, G1-G5, H2, J1, M3; RFC 9728, RFC 8414)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from patchbay.doctor.context import DOCTOR_CLIENT, Context
from patchbay.doctor.model import Result
from patchbay.doctor.probe import Reply

__all__ = ["CHECKS", "AuthFacts", "as_metadata_urls", "discover", "parse_challenge"]

DOC_CAP = 256 * 1024  # metadata documents come from the server: read at most this much
_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


def parse_challenge(header: str) -> dict[str, str] | None:
    """The parameters of a ``Bearer`` challenge (RFC 6750 §3), or None when there is none."""
    match = re.search(r"(?i)\bbearer\b", header)
    if match is None:
        return None
    return {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(header[match.end() :])
    }


def as_metadata_urls(issuer: str) -> list[str]:
    """Where clients look for an issuer's metadata, in order (RFC 8414 §3.1, OIDC Discovery; MCP 2025-11-25)."""
    parts = urlsplit(issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    path = parts.path.rstrip("/")
    if path:
        return [
            f"{origin}/.well-known/oauth-authorization-server{path}",
            f"{origin}/.well-known/openid-configuration{path}",
            f"{origin}{path}/.well-known/openid-configuration",
        ]
    return [f"{origin}/.well-known/oauth-authorization-server", f"{origin}/.well-known/openid-configuration"]


@dataclass
class AuthFacts:
    """What sign-in discovery found; computed once per run."""

    challenge: Reply
    garbage: Reply | None = None
    params: dict[str, str] | None = None
    prm_replies: dict[str, Reply] = field(default_factory=dict)
    prm: dict[str, Any] | None = None
    prm_url: str = ""
    issuer: str = ""
    as_replies: dict[str, Reply] = field(default_factory=dict)
    metadata: dict[str, Any] | None = None
    metadata_url: str = ""

    @property
    def requires_auth(self) -> bool:
        return self.challenge.status in (401, 403)

    @property
    def has_oauth(self) -> bool:
        return self.prm is not None or self.requires_auth


def _doc(reply: Reply) -> dict[str, Any] | None:
    value = reply.json() if reply.status == 200 and not reply.is_html else None
    return value if isinstance(value, dict) else None


async def discover(ctx: Context) -> AuthFacts:
    if "auth" in ctx.facts:
        cached: AuthFacts = ctx.facts["auth"]
        return cached
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": ctx.profile.protocol_versions[0],
            "capabilities": {},
            "clientInfo": DOCTOR_CLIENT,
        },
    }
    challenge = await ctx.probe.send("POST", ctx.target.url, headers=ctx.headers(auth=False), json_body=init)
    facts = AuthFacts(challenge)
    facts.params = parse_challenge(challenge.headers.get("www-authenticate", ""))
    if facts.requires_auth:
        bad = {**ctx.headers(auth=False), "authorization": "Bearer doctor-garbage-token"}
        facts.garbage = await ctx.probe.send("POST", ctx.target.url, headers=bad, json_body=init)
    candidates = []
    if facts.params and facts.params.get("resource_metadata"):
        candidates.append(facts.params["resource_metadata"])
    path = ctx.target.path.rstrip("/")
    candidates += [
        ctx.target.at(f"/.well-known/oauth-protected-resource{path}"),
        ctx.target.at("/.well-known/oauth-protected-resource"),
    ]
    for url in dict.fromkeys(candidates):
        reply = await ctx.probe.send("GET", url, headers={"accept": "application/json"}, cap=DOC_CAP, time_limit=15)
        facts.prm_replies[url] = reply
        doc = _doc(reply)
        if facts.prm is None and doc is not None and "resource" in doc:
            facts.prm, facts.prm_url = doc, url
    servers = (facts.prm or {}).get("authorization_servers")
    if isinstance(servers, list) and servers and isinstance(servers[0], str):
        facts.issuer = servers[0]
    as_urls = as_metadata_urls(facts.issuer) if facts.issuer else []
    as_urls += [
        ctx.target.at("/.well-known/oauth-authorization-server"),
        ctx.target.at("/.well-known/openid-configuration"),
    ]
    for url in dict.fromkeys(as_urls):
        reply = await ctx.probe.send("GET", url, headers={"accept": "application/json"}, cap=DOC_CAP, time_limit=15)
        facts.as_replies[url] = reply
    for url in as_metadata_urls(facts.issuer) if facts.issuer else []:
        doc = _doc(facts.as_replies[url])
        if doc is not None:
            facts.metadata, facts.metadata_url = doc, url
            break
    ctx.facts["auth"] = facts
    ctx.facts["auth:prm"] = facts.prm
    return facts


async def check_wellknown(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    bad = []
    replies = {**facts.prm_replies, **facts.as_replies}
    for url, reply in replies.items():
        if reply.status == 404 or _doc(reply) is not None:
            continue
        kind = "an HTML page" if reply.is_html else (reply.content_type or "no content type")
        bad.append(f"{urlsplit(url).path} → {reply.status or reply.error} ({kind})")
    for url in (
        ctx.target.at("/.well-known/oauth-authorization-server"),
        ctx.target.at("/.well-known/openid-configuration"),
    ):
        head = await ctx.probe.send("HEAD", url, headers={"accept": "application/json"}, time_limit=15)
        if head.status not in (200, 404):
            bad.append(f"HEAD {urlsplit(url).path} → {head.status or head.error}")
    if bad:
        return [ctx.fail("auth.wellknown", "; ".join(bad), details={"urls": bad})]
    return [ctx.ok("auth.wellknown", f"{len(replies)} well-known URLs answer JSON or 404")]


def _no_oauth(ctx: Context, check_id: str, facts: AuthFacts) -> Result | None:
    if facts.has_oauth:
        return None
    return ctx.skip(check_id, "the server does not ask for sign-in (no 401, no protected-resource metadata)")


async def check_challenge(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    reply = facts.challenge
    if not facts.requires_auth:
        if facts.prm is not None:
            return [ctx.ok("auth.challenge", "initialize is open (mixed auth); tools ask for sign-in themselves")]
        return [ctx.skip("auth.challenge", "initialize works without a token (authless server)")]
    if reply.status == 403 and not facts.params:
        return [
            ctx.fail("auth.challenge", "403 without a challenge: clients only start OAuth from 401 + WWW-Authenticate")
        ]
    if not facts.params:
        return [
            ctx.fail(
                "auth.challenge",
                f"{reply.status} without a WWW-Authenticate: Bearer challenge; clients cannot find where to sign in",
            )
        ]
    metadata = facts.params.get("resource_metadata", "")
    if not metadata:
        return [ctx.fail("auth.challenge", "the challenge has no resource_metadata parameter")]
    if not urlsplit(metadata).scheme:
        return [ctx.fail("auth.challenge", f"resource_metadata {metadata!r} is not an absolute URL")]
    if _doc(facts.prm_replies.get(metadata, reply)) is None:
        return [ctx.fail("auth.challenge", f"resource_metadata {metadata} does not resolve to a JSON document")]
    garbage = facts.garbage
    if garbage is not None and (
        garbage.status != 401 or not parse_challenge(garbage.headers.get("www-authenticate", ""))
    ):
        return [
            ctx.fail(
                "auth.challenge",
                f"an invalid token got {garbage.status}, not 401 with a challenge: "
                "clients retry instead of signing in again",
            )
        ]
    return [ctx.ok("auth.challenge", f"401 with resource_metadata={metadata}")]


async def check_prm(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _no_oauth(ctx, "auth.prm", facts)) is not None:
        return [skipped]
    if facts.prm is None:
        return [
            ctx.fail(
                "auth.prm",
                "no protected-resource metadata at " + ", ".join(urlsplit(u).path for u in facts.prm_replies),
            )
        ]
    resource = facts.prm.get("resource")
    if resource != ctx.target.url:
        hint = " (only a trailing slash differs)" if str(resource).rstrip("/") == ctx.target.url.rstrip("/") else ""
        return [ctx.fail("auth.prm", f"resource is {resource!r} but the URL is {ctx.target.url!r}{hint}")]
    if not facts.issuer:
        return [ctx.fail("auth.prm", "authorization_servers is missing or empty")]
    served = [u for u, r in facts.prm_replies.items() if _doc(r) is not None]
    if len(served) < 2:
        return [
            ctx.warn(
                "auth.prm",
                f"metadata only at {', '.join(urlsplit(u).path for u in served)}; serve both the "
                "root and the path-suffixed form",
            )
        ]
    return [ctx.ok("auth.prm", f"resource {resource}; authorization server {facts.issuer}")]


def _metadata_or_skip(ctx: Context, check_id: str, facts: AuthFacts) -> Result | None:
    if ctx.profile.oauth != "client":
        return ctx.skip(check_id, f"{ctx.profile.title} does not sign in itself (the caller supplies the token)")
    if (skipped := _no_oauth(ctx, check_id, facts)) is not None:
        return skipped
    if facts.metadata is None:
        return ctx.skip(check_id, "no authorization-server metadata (see auth.as_metadata)")
    return None


async def check_as_metadata(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if ctx.profile.oauth != "client":
        return [ctx.skip("auth.as_metadata", f"{ctx.profile.title} does not sign in itself")]
    if (skipped := _no_oauth(ctx, "auth.as_metadata", facts)) is not None:
        return [skipped]
    if not facts.issuer:
        return [ctx.skip("auth.as_metadata", "no issuer to look up (see auth.prm)")]
    if facts.metadata is None:
        tried = ", ".join(f"{urlsplit(u).path} → {facts.as_replies[u].status}" for u in as_metadata_urls(facts.issuer))
        return [ctx.fail("auth.as_metadata", f"no metadata for issuer {facts.issuer}: {tried}")]
    missing = [k for k in ("issuer", "authorization_endpoint", "token_endpoint") if not facts.metadata.get(k)]
    if "code" not in (facts.metadata.get("response_types_supported") or []):
        missing.append('response_types_supported with "code"')
    if missing:
        return [ctx.fail("auth.as_metadata", f"{facts.metadata_url} lacks {', '.join(missing)}")]
    return [ctx.ok("auth.as_metadata", f"found at {facts.metadata_url}")]


async def check_issuer(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _metadata_or_skip(ctx, "auth.issuer", facts)) is not None:
        return [skipped]
    issuer = (facts.metadata or {}).get("issuer")
    if issuer != facts.issuer:
        slash = " (a trailing slash differs)" if str(issuer).rstrip("/") == facts.issuer.rstrip("/") else ""
        return [
            ctx.fail(
                "auth.issuer",
                f"authorization_servers says {facts.issuer!r}, the metadata issuer is "
                f"{issuer!r}{slash}; strict clients abort",
            )
        ]
    return [ctx.ok("auth.issuer", f"{issuer} everywhere")]


async def check_pkce(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _metadata_or_skip(ctx, "auth.pkce", facts)) is not None:
        return [skipped]
    methods = (facts.metadata or {}).get("code_challenge_methods_supported")
    if not isinstance(methods, list) or "S256" not in methods:
        return [
            ctx.fail(
                "auth.pkce",
                f"code_challenge_methods_supported is {methods!r}; {ctx.profile.title} stops "
                "before opening the sign-in page",
            )
        ]
    return [ctx.ok("auth.pkce", "S256 advertised")]


async def check_methods(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _metadata_or_skip(ctx, "auth.methods", facts)) is not None:
        return [skipped]
    # RFC 8414 §2: absent means client_secret_basic only.
    offered = (facts.metadata or {}).get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    wanted = ctx.profile.auth_methods
    usable = [m for m in wanted if m in offered]
    if not usable:
        return [
            ctx.fail(
                "auth.methods", f"the server offers {', '.join(offered)}; {ctx.profile.title} uses {', '.join(wanted)}"
            )
        ]
    return [ctx.ok("auth.methods", f"{', '.join(usable)} usable (offered: {', '.join(offered)})")]


async def check_refresh(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _metadata_or_skip(ctx, "auth.refresh", facts)) is not None:
        return [skipped]
    metadata = facts.metadata or {}
    grants = metadata.get("grant_types_supported") or ["authorization_code", "implicit"]  # RFC 8414 §2 default
    if "refresh_token" not in grants:
        return [
            ctx.fail(
                "auth.refresh",
                f"grant_types_supported is {grants}: no refresh_token, so the connection "
                "dies when the first access token expires",
            )
        ]
    scopes = metadata.get("scopes_supported")
    if isinstance(scopes, list) and "offline_access" not in scopes:
        return [
            ctx.warn(
                "auth.refresh",
                "refresh_token is advertised but offline_access is not in scopes_supported; "
                "clients that ask for it get no refresh token from some servers",
            )
        ]
    return [ctx.ok("auth.refresh", "refresh_token grant advertised")]


async def check_urls(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _no_oauth(ctx, "auth.urls", facts)) is not None:
        return [skipped]
    urls: list[tuple[str, str]] = []
    if facts.params and facts.params.get("resource_metadata"):
        urls.append(("WWW-Authenticate resource_metadata", facts.params["resource_metadata"]))
    for name, doc in (("protected-resource", facts.prm), ("authorization-server", facts.metadata)):
        for key, value in (doc or {}).items():
            values = value if isinstance(value, list) else [value]
            if key in ("resource", "authorization_servers", "issuer") or key.endswith(("_endpoint", "_uri")):
                urls += [(f"{name} {key}", v) for v in values if isinstance(v, str)]
    bad = [f"{where} = {url}" for where, url in urls if _url_problem(ctx, url)]
    if bad:
        return [ctx.fail("auth.urls", "; ".join(bad[:5]))]
    return [
        ctx.ok(
            "auth.urls", f"{len(urls)} advertised URLs are absolute" + ("" if ctx.options.local else " public HTTPS")
        )
    ]


def _url_problem(ctx: Context, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "not absolute"
    if ctx.options.local:
        return "http behind https" if ctx.target.parts.scheme == "https" and parts.scheme == "http" else ""
    if parts.scheme != "https":
        return "not https"
    if parts.port not in (None, 443):
        return "port"
    host = parts.hostname
    if host in ("localhost",) or host.endswith((".local", ".internal")) or host.startswith(("127.", "10.", "192.168.")):
        return "internal host"
    return ""


async def check_consistency(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if facts.has_oauth:
        return [ctx.ok("auth.consistency", "the server asks for sign-in and publishes its metadata")]
    answering = [urlsplit(u).path for u, r in facts.as_replies.items() if _doc(r) is not None]
    if answering:
        return [
            ctx.fail(
                "auth.consistency",
                f"no sign-in is required, yet {', '.join(answering)} publish OAuth "
                "metadata: clients start registration against an open server",
            )
        ]
    return [ctx.ok("auth.consistency", "authless, and no OAuth metadata is published")]


CHECKS = (
    check_wellknown,
    check_challenge,
    check_prm,
    check_as_metadata,
    check_issuer,
    check_pkce,
    check_methods,
    check_refresh,
    check_urls,
    check_consistency,
)
