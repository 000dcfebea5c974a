"""An access token to a running Patchbay for a local user: registration, the sign-in page and the token endpoint,
driven like a person (tests/support/browser.py)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import httpx2 as httpx

from tests.support.browser import Browser

REDIRECT = "http://127.0.0.1:9/callback"  # never followed: the browser stops at the first redirect leaving Patchbay


async def user_token(base: str, username: str, password: str) -> str:
    """An access token for ``username`` at the Patchbay served at ``base`` (audience ``base/mcp``)."""
    async with httpx.AsyncClient(base_url=base, timeout=20, trust_env=False) as http:
        registered = await http.post(
            "/register",
            json={"client_name": f"test {username}", "redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"},
        )
        assert registered.status_code == 201, registered.text
        client_id = registered.json()["client_id"]
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "state": "s",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "resource": f"{base}/mcp",
        }
        outcome = await Browser(http, (base,), username, password).authorize(f"/authorize?{urlencode(query)}")
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
