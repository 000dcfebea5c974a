"""Step 7, client registration: DCR with the client's exact payload, its redirect URIs, CIMD, ``resource``
(field-problems H1-H3, I2; RFC 7591, RFC 8707, CIMD)."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from patchbay.doctor.checks.auth import AuthFacts, discover
from patchbay.doctor.context import Context
from patchbay.doctor.model import Result
from patchbay.doctor.oauth import pkce_pair
from patchbay.doctor.probe import Reply

__all__ = ["CHECKS"]

LOOPBACK_PORT = 33418  # a fixed stand-in for Claude Code's random callback port
_SECRET_METHODS = ("client_secret_post", "client_secret_basic")


def _applies(ctx: Context, check_id: str, facts: AuthFacts) -> Result | None:
    if ctx.profile.oauth != "client" or not ctx.profile.registration:
        return ctx.skip(check_id, f"{ctx.profile.title} does not register (the caller supplies the token)")
    if not facts.has_oauth:
        return ctx.skip(check_id, "the server does not ask for sign-in")
    if facts.metadata is None:
        return ctx.skip(check_id, "no authorization-server metadata (see auth.as_metadata)")
    return None


async def register(ctx: Context, facts: AuthFacts) -> tuple[Reply | None, dict[str, Any] | None]:
    """Register the profile's client exactly as it does (once per run and profile)."""
    key = f"dcr:{ctx.profile.name}"
    if key not in ctx.facts:
        endpoint = (facts.metadata or {}).get("registration_endpoint")
        if not isinstance(endpoint, str):
            ctx.facts[key] = (None, None)
        else:
            payload = {**ctx.profile.dcr_payload, "redirect_uris": ctx.profile.redirect_uris_for(LOOPBACK_PORT)}
            headers = {"user-agent": ctx.profile.user_agent, "accept": "application/json"}
            reply = await ctx.probe.send("POST", endpoint, headers=headers, json_body=payload, time_limit=15)
            doc = reply.json() if reply.status in (200, 201) else None
            ctx.facts[key] = (reply, doc if isinstance(doc, dict) and doc.get("client_id") else None)
    cached: tuple[Reply | None, dict[str, Any] | None] = ctx.facts[key]
    return cached


async def check_dcr(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _applies(ctx, "registration.dcr", facts)) is not None:
        return [skipped]
    if "dcr" not in ctx.profile.registration:
        return [ctx.skip("registration.dcr", f"{ctx.profile.title} does not use DCR")]
    reply, client = await register(ctx, facts)
    metadata = facts.metadata or {}
    if reply is None:
        if metadata.get("client_id_metadata_document_supported") is True and "cimd" in ctx.profile.registration:
            return [ctx.ok("registration.dcr", "no registration endpoint; the client uses CIMD instead")]
        return [
            ctx.fail(
                "registration.dcr",
                "no registration_endpoint and no client ID metadata document support: "
                f"{ctx.profile.title} cannot register",
            )
        ]
    if client is None:
        return [
            ctx.fail(
                "registration.dcr", f"registration with {ctx.profile.title}'s request was refused: {reply.describe()}"
            )
        ]
    requested = ctx.profile.dcr_payload.get("token_endpoint_auth_method", "client_secret_basic")
    echoed = client.get("token_endpoint_auth_method", requested)
    if echoed != requested:
        return [ctx.warn("registration.dcr", f"asked for {requested}, registered as {echoed}")]
    if (requested in _SECRET_METHODS) != bool(client.get("client_secret")):
        return [
            ctx.fail(
                "registration.dcr",
                f"{requested} registration "
                + (
                    "came back without a client_secret"
                    if requested in _SECRET_METHODS
                    else "came back with a client_secret"
                ),
            )
        ]
    return [ctx.ok("registration.dcr", f"registered as {client['client_id']} ({echoed})")]


async def _authorize(ctx: Context, facts: AuthFacts, client_id: str, redirect_uri: str, resource: bool) -> Reply:
    _, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": secrets.token_urlsafe(8),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    scopes = (facts.prm or {}).get("scopes_supported")
    if isinstance(scopes, list) and scopes:
        params["scope"] = " ".join(str(s) for s in scopes)
    if resource:
        params["resource"] = ctx.target.url
    endpoint = str((facts.metadata or {}).get("authorization_endpoint"))
    sep = "&" if "?" in endpoint else "?"
    return await ctx.probe.send(
        "GET", endpoint + sep + urlencode(params), headers={"accept": "text/html"}, time_limit=15
    )


def _refusal(reply: Reply, redirect_uri: str) -> str:
    """Why /authorize refused the request, or "" when it went on to sign-in (or straight back with a code)."""
    if reply.status in (301, 302, 303, 307):
        location = reply.headers.get("location", "")
        if location.startswith(redirect_uri):
            error = parse_qs(urlsplit(location).query).get("error")
            return f"redirected back with error={error[0]}" if error else ""
        return ""
    if reply.status == 200:
        return ""
    return f"{reply.status} {' '.join(reply.text[:100].split())}"


async def _client(ctx: Context, check_id: str) -> tuple[AuthFacts, dict[str, Any] | None, Result | None]:
    facts = await discover(ctx)
    if (skipped := _applies(ctx, check_id, facts)) is not None:
        return facts, None, skipped
    _, client = await register(ctx, facts)
    if client is None:
        return facts, None, ctx.skip(check_id, "no registered client (see registration.dcr)")
    return facts, client, None


async def check_redirects(ctx: Context) -> list[Result]:
    facts, client, skipped = await _client(ctx, "registration.redirects")
    if client is None:
        return [skipped] if skipped else []
    refused = []
    for uri in ctx.profile.redirect_uris_for(LOOPBACK_PORT):
        why = _refusal(await _authorize(ctx, facts, client["client_id"], uri, resource=False), uri)
        if why:
            refused.append(f"{uri}: {why}")
    if refused:
        return [ctx.fail("registration.redirects", "; ".join(refused))]
    return [ctx.ok("registration.redirects", f"{len(ctx.profile.redirect_uris)} redirect URI(s) accepted")]


async def check_resource(ctx: Context) -> list[Result]:
    facts, client, skipped = await _client(ctx, "registration.resource")
    if client is None:
        return [skipped] if skipped else []
    uri = ctx.profile.redirect_uris_for(LOOPBACK_PORT)[0]
    without = _refusal(await _authorize(ctx, facts, client["client_id"], uri, resource=False), uri)
    if without:
        return [ctx.skip("registration.resource", "/authorize refused the request anyway (see registration.redirects)")]
    why = _refusal(await _authorize(ctx, facts, client["client_id"], uri, resource=True), uri)
    if why:
        return [ctx.fail("registration.resource", f"resource={ctx.target.url} was refused: {why}")]
    return [ctx.ok("registration.resource", f"resource={ctx.target.url} accepted")]


async def check_cimd(ctx: Context) -> list[Result]:
    facts = await discover(ctx)
    if (skipped := _applies(ctx, "registration.cimd", facts)) is not None:
        return [skipped]
    if "cimd" not in ctx.profile.registration:
        return [ctx.skip("registration.cimd", f"{ctx.profile.title} does not use CIMD")]
    metadata = facts.metadata or {}
    if metadata.get("client_id_metadata_document_supported") is True:
        if "none" not in (metadata.get("token_endpoint_auth_methods_supported") or []):
            return [
                ctx.warn(
                    "registration.cimd",
                    'CIMD is advertised but "none" is not among the token endpoint auth '
                    "methods; URL-identified clients are public",
                )
            ]
        return [ctx.ok("registration.cimd", "client_id_metadata_document_supported: true")]
    if metadata.get("registration_endpoint"):
        return [ctx.warn("registration.cimd", "no CIMD support; DCR works today but is deprecated in 2026-07-28")]
    return [ctx.fail("registration.cimd", "neither CIMD nor DCR is offered")]


CHECKS = (check_dcr, check_redirects, check_cimd, check_resource)
