"""Federated sign-in (``[auth.upstream]``) in-process, against an OpenID provider behind httpx's MockTransport with
a real RSA key: claims the ID token leaves out come from UserInfo (OpenID Connect Core §5.4), a UserInfo answer
about someone else is refused (§5.3.2), and the login page's CSP lets the "Sign in with" form reach the provider.
The same flow against a real provider (oidc-provider) is tests/e2e/test_auth_idp.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fixtures.authflow import BASE, Flow, call, client_for, running
from jwt.algorithms import RSAAlgorithm
from tests.support.browser import Browser

from patchbay.outbound import Fetcher

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.example/oidc"
UPSTREAM = {
    "issuer": ISSUER,
    "client_id": "patchbay",
    "role_map": {"mcp-admins": ["admin"]},
    "display_name": "Example SSO",
}


class FakeOP:
    """Discovery, JWKS, token and UserInfo endpoints; the ID token carries only the required claims."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.nonce = ""
        self.userinfo: dict[str, Any] = {"sub": "u-1", "email": "alice@example.com", "groups": ["mcp-admins"]}

    def id_token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": "patchbay", "sub": "u-1", "exp": now + 300, "iat": now, "nonce": self.nonce}
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "k1"})

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            path = request.url.path
            if path == "/oidc/.well-known/openid-configuration":
                endpoints = {n: f"{ISSUER}/{n}" for n in ("authorize", "token", "jwks", "userinfo")}
                return httpx.Response(
                    200,
                    json={
                        "issuer": ISSUER,
                        "authorization_endpoint": endpoints["authorize"],
                        "token_endpoint": endpoints["token"],
                        "jwks_uri": endpoints["jwks"],
                        "userinfo_endpoint": endpoints["userinfo"],
                    },
                )
            if path == "/oidc/jwks":
                return httpx.Response(200, json=self.jwks)
            if path == "/oidc/token" and b"code=the-code" in request.content:
                return httpx.Response(200, json={"access_token": "op-at", "id_token": self.id_token()})
            if path == "/oidc/userinfo" and request.headers.get("authorization") == "Bearer op-at":
                return httpx.Response(200, json=self.userinfo)
            return httpx.Response(404)

        return httpx.MockTransport(answer)


async def sign_in_upstream(app: Any, http: Any, op: FakeOP) -> tuple[Flow, Any]:
    """From the client's /authorize to the provider and back; the outcome is Patchbay's last answer."""
    upstream = app.runtime.auth.upstream
    upstream.fetcher = Fetcher(transport=op.transport(), resolve=_public_dns)
    flow = Flow(http)
    await flow.register()
    browser = Browser(http, (BASE,), prefer="/authorize/upstream")
    to_provider = await browser.authorize(flow.authorize_url())
    assert to_provider.location is not None and to_provider.location.startswith(f"{ISSUER}/authorize?")
    asked = to_provider.params
    assert asked["client_id"] == "patchbay" and asked["code_challenge_method"] == "S256"
    op.nonce = asked["nonce"]
    back = await browser.authorize(f"/authorize/callback?code=the-code&state={asked['state']}")
    return flow, back


async def _public_dns(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


async def test_claims_missing_from_the_id_token_come_from_userinfo(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        response = await flow.redeem(back.params["code"])
        assert response.status_code == 200, response.text
        called = await call(http, response.json()["access_token"], "tools/call", {"name": "whoami", "arguments": {}})
        me = called.json()["result"]["structuredContent"]
        assert me["subject"] == "user:alice@example.com" and me["roles"] == ["admin"]


async def test_userinfo_about_someone_else_is_refused(tmp_path: Path) -> None:
    op = FakeOP()
    op.userinfo = {"sub": "someone-else", "email": "mallory@example.com", "groups": ["mcp-admins"]}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403
        assert "did not confirm who signed in" in back.html


async def test_the_login_page_lets_the_upstream_form_reach_the_provider(tmp_path: Path) -> None:
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register()
        page = await http.get(flow.authorize_url())
        assert 'action="/authorize/upstream"' in page.text
        # Browsers apply form-action to the redirect that answers the form's POST (here: to the provider).
        policy = page.headers["content-security-policy"]
        form_action = next(d for d in policy.split("; ") if d.startswith("form-action "))
        assert form_action.split()[1:] == ["'self'", "http://127.0.0.1:9999", "https://idp.example"]
