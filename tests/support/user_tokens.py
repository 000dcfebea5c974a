"""Local users and their access tokens for a running Patchbay: ``patchbay users add`` as an operator runs it, and
registration, the sign-in page and the token endpoint driven like a person (tests/support/browser.py)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlencode

import httpx2 as httpx

from tests.support.browser import Browser

REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the browser stops at the first redirect leaving Patchbay


def add_user(config: Path, name: str, password: str, roles: Iterable[str] = ()) -> None:
    """``patchbay users add name [--role r ...] --password-stdin`` against ``config``."""
    flags = [flag for role in roles for flag in ("--role", role)]
    script = str(Path(sys.executable).with_name("patchbay"))
    added = subprocess.run(
        [script, "users", "add", name, *flags, "--password-stdin", "-c", str(config)],
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr


async def user_token(
    base: str,
    username: str,
    password: str,
    *,
    client_name: str | None = None,
    scope: str | None = None,
    idp: str | None = None,
) -> str:
    """An access token for ``username`` at the Patchbay served at ``base`` (audience ``base/mcp``): a public client
    registered as ``client_name`` (RFC 7591), the code flow with PKCE and a resource indicator (RFC 8707).

    With ``idp`` (the issuer of ``[auth.upstream]``), the person presses "Sign in with <IdP>" and signs in there.
    """
    async with httpx.AsyncClient(base_url=base, timeout=30, trust_env=False) as http:
        registered = await http.post(
            "/register",
            json={
                "client_name": client_name or f"test {username}",
                "redirect_uris": [REDIRECT],
                "token_endpoint_auth_method": "none",
            },
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": secrets.token_urlsafe(8),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": f"{base}/mcp",
        }
        if scope is not None:
            query["scope"] = scope
        follow = (base,) if idp is None else (base, idp)
        prefer = None if idp is None else "/authorize/upstream"
        browser = Browser(http, follow, username, password, prefer=prefer)
        outcome = await browser.authorize(f"/authorize?{urlencode(query)}")
        form = {
            "grant_type": "authorization_code",
            "code": outcome.params["code"],
            "code_verifier": verifier,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "resource": f"{base}/mcp",
        }
        issued = await http.post("/token", data=form)
        assert issued.status_code == 200, issued.text
        token: str = issued.json()["access_token"]
        return token
