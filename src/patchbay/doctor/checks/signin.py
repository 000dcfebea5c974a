"""The signed-in connection: the bearer token opens a session; the refresh grant works (field-problems I1, J1, N2)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from patchbay.doctor.checks.auth import discover
from patchbay.doctor.context import Context
from patchbay.doctor.model import Result
from patchbay.doctor.oauth import SignIn, SignInError, refresh

__all__ = ["CHECKS", "jwt_claims"]


def jwt_claims(token: str) -> dict[str, Any] | None:
    """The unverified claims of a JWT-shaped token (only to compare aud/iss/exp), or None for opaque tokens."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    return claims if isinstance(claims, dict) else None


async def check_token(ctx: Context) -> list[Result]:
    if not ctx.token:
        return [ctx.skip("signin.token", "no token (use --token or --interactive)")]
    session = await ctx.session()
    if not session.ok:
        return [ctx.fail("signin.token", f"initialize with the bearer token failed: {session.error}")]
    claims = jwt_claims(ctx.token)
    if claims is None:
        return [ctx.ok("signin.token", "the token opens a session (opaque token)")]
    facts = await discover(ctx)
    resource = (facts.prm or {}).get("resource")
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if resource and resource not in audiences:
        return [
            ctx.fail(
                "signin.token",
                f"token aud is {audience!r}, not the resource {resource!r}; strict servers and clients reject it",
            )
        ]
    if facts.issuer and claims.get("iss") not in (None, facts.issuer):
        return [ctx.fail("signin.token", f"token iss {claims.get('iss')!r} differs from the issuer {facts.issuer!r}")]
    if isinstance(claims.get("exp"), int | float) and claims["exp"] < time.time():
        return [ctx.fail("signin.token", "the token has expired", "Get a fresh token and run again.")]
    return [ctx.ok("signin.token", "the token opens a session; aud, iss and exp agree")]


async def check_refresh(ctx: Context) -> list[Result]:
    signin: SignIn | None = ctx.facts.get("signin")
    if signin is None:
        return [ctx.skip("signin.refresh", "no interactive sign-in in this run (--interactive)")]
    if "refreshed" not in ctx.facts:
        try:
            await refresh(ctx.probe, signin, ctx.target.url)
            ctx.facts["refreshed"] = ""
        except SignInError as exc:
            ctx.facts["refreshed"] = str(exc)
    if ctx.facts["refreshed"]:
        return [ctx.fail("signin.refresh", ctx.facts["refreshed"])]
    return [ctx.ok("signin.refresh", "the refresh grant returned a new access token")]


CHECKS = (check_token, check_refresh)
