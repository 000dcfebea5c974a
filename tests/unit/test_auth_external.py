"""``external`` mode: JWT access tokens from an existing IdP checked against its JWKS (here an in-memory IdP
behind httpx's MockTransport, with a real RSA key): issuer, audience, expiry and signature."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fixtures.authflow import BASE, MCP, call, client_for, running
from jwt.algorithms import RSAAlgorithm

from patchbay.auth.external import ExternalVerifier
from patchbay.outbound import ANY_ADDRESS, Fetcher

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.example/realms/acme"


class FakeIdP:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": MCP, "sub": "u-42", "exp": now + 300, "iat": now, "scope": "mcp", **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": "k1"})

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.url.path.endswith("/.well-known/openid-configuration"):
                return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/certs"})
            if request.url.path.endswith("/certs"):
                return httpx.Response(200, json=self.jwks)
            return httpx.Response(404)

        return httpx.MockTransport(answer)


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


async def start(tmp_path: Path, idp: FakeIdP, **external: Any) -> Any:
    settings = {"issuer": ISSUER, "allow_private_network": True, **external}
    context = running(tmp_path, auth={"mode": "external", "external": settings})
    app = await context.__aenter__()
    server = app.runtime.auth
    fetcher = Fetcher(policy=ANY_ADDRESS, transport=idp.transport())
    verifier = ExternalVerifier(server.core, server.settings.auth.external, fetcher=fetcher)
    server.authenticator.external = verifier.verify
    return context, app


async def test_external_jwt_is_accepted_and_metadata_points_at_the_idp(tmp_path: Path, idp: FakeIdP) -> None:
    context, app = await start(tmp_path, idp)
    try:
        async with client_for(app) as http:
            prm = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
            assert prm["authorization_servers"] == [ISSUER] and prm["resource"] == MCP
            assert (await http.get("/.well-known/oauth-authorization-server")).status_code == 404
            token = idp.token(scope="mcp docs.write", roles=["sales"], preferred_username="alice")
            response = await call(http, token, "tools/call", {"name": "whoami", "arguments": {}})
            me = response.json()["result"]["structuredContent"]
            assert me["subject"] == "u-42" and me["kind"] == "external" and me["username"] == "alice"
            assert me["scopes"] == ["docs.write", "mcp"] and me["roles"] == ["sales"]
    finally:
        await context.__aexit__(None, None, None)


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "https://evil.example"},
        {"aud": "https://other.example/mcp"},
        {"aud": BASE},
        {"exp": int(time.time()) - 3600},
    ],
    ids=["wrong-issuer", "wrong-audience", "origin-audience", "expired"],
)
async def test_external_tokens_for_someone_else_are_refused(tmp_path: Path, idp: FakeIdP, claims: dict) -> None:
    context, app = await start(tmp_path, idp)
    try:
        async with client_for(app) as http:
            response = await call(http, idp.token(**claims), "tools/list")
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    finally:
        await context.__aexit__(None, None, None)


async def test_external_token_signed_by_another_key_is_refused(tmp_path: Path, idp: FakeIdP) -> None:
    context, app = await start(tmp_path, idp)
    try:
        forged = FakeIdP().token()
        async with client_for(app) as http:
            assert (await call(http, forged, "tools/list")).status_code == 401
    finally:
        await context.__aexit__(None, None, None)


@pytest.mark.parametrize(("skew", "accepted"), [(None, True), (0, False)], ids=["default-60s", "no-skew"])
async def test_clock_skew_decides_whether_a_just_expired_token_passes(
    tmp_path: Path, idp: FakeIdP, skew: int | None, accepted: bool
) -> None:
    context, app = await start(tmp_path, idp, **({} if skew is None else {"clock_skew_seconds": skew}))
    try:
        async with client_for(app) as http:
            response = await call(http, idp.token(exp=int(time.time()) - 5), "tools/list")
        assert (response.status_code == 200) is accepted
    finally:
        await context.__aexit__(None, None, None)
