"""``external`` mode: JWT access tokens from an existing IdP checked against its JWKS (here an in-memory IdP
behind httpx's MockTransport, with a real RSA key): issuer, audience, expiry and signature; discovery of the
IdP's endpoints (RFC 8414, then OpenID Connect Discovery), its key set's cache, RFC 7662 introspection for other
tokens, and the principal the claims become."""

from __future__ import annotations

import base64
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fixtures.authflow import BASE, MCP, call, client_for, running, settings
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from patchbay.app import create_app
from patchbay.auth import external as external_module
from patchbay.auth.external import JWKS_REFRESH_SECONDS, ExternalVerifier
from patchbay.errors import ConfigError
from patchbay.outbound import ANY_ADDRESS, Fetcher

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.example/realms/acme"
RFC8414 = "https://idp.example/.well-known/oauth-authorization-server/realms/acme"
OIDC = f"{ISSUER}/.well-known/openid-configuration"


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: Any, kid: str | None) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "use": "sig", **({"kid": kid} if kid else {})}


class FakeIdP:
    """An identity provider on httpx's MockTransport. It serves its OpenID Connect discovery document (and any other
    document put in ``documents``), its key set at ``/certs`` and RFC 7662 introspection at ``/introspect``, whose
    answers are ``introspected[token]`` (``{"active": false}`` for any other token). ``seen`` lists every request
    as ``"METHOD url"``; ``introspections`` keeps the introspection requests themselves."""

    def __init__(self, issuer: str = ISSUER) -> None:
        self.issuer = issuer
        self.key = rsa_key()
        self.jwks = {"keys": [{**public_jwk(self.key, "k1"), "alg": "RS256"}]}
        base = issuer.rstrip("/")
        self.jwks_uri = f"{base}/certs"
        self.introspection_endpoint = f"{base}/introspect"
        self.documents: dict[str, Any] = {
            f"{base}/.well-known/openid-configuration": {
                "issuer": issuer,
                "jwks_uri": self.jwks_uri,
                "introspection_endpoint": self.introspection_endpoint,
            }
        }
        self.introspected: dict[str, Any] = {}
        self.raw: dict[str, tuple[int, bytes]] = {}
        self.seen: list[str] = []
        self.introspections: list[httpx.Request] = []

    def token(self, key: Any = None, kid: str | None = "k1", algorithm: str = "RS256", **claims: Any) -> str:
        """A JWT access token for our MCP URL; a claim given as None is left out."""
        now = int(time.time())
        body = {"iss": self.issuer, "aud": MCP, "sub": "u-42", "exp": now + 300, "iat": now, "scope": "mcp", **claims}
        body = {k: v for k, v in body.items() if v is not None}
        headers = {"kid": kid} if kid else {}
        signing = None if algorithm == "none" else self.key if key is None else key
        return jwt.encode(body, signing, algorithm=algorithm, headers=headers)

    def fetched(self, url: str) -> int:
        return self.seen.count(f"GET {url}")

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            url = str(request.url)
            self.seen.append(f"{request.method} {url}")
            if url in self.raw:
                status, body = self.raw[url]
                return httpx.Response(status, content=body)
            if url in self.documents and request.method == "GET":
                return httpx.Response(200, json=self.documents[url])
            if url == self.jwks_uri and request.method == "GET":
                return httpx.Response(200, json=self.jwks)
            if url == self.introspection_endpoint:
                if request.method != "POST":
                    return httpx.Response(405)
                self.introspections.append(request)
                (token,) = parse_qs(request.content.decode()).get("token", [""])
                answer = self.introspected.get(token, {"active": False})
                return httpx.Response(200, json=answer)
            return httpx.Response(404)

        return httpx.MockTransport(answer)


class Clock:
    """Stands in for the ``time`` module inside patchbay.auth.external: a monotonic clock that starts at 0 (a host
    booted a moment ago) and that tests move, and the wall clock, real unless ``wall`` pins it."""

    def __init__(self) -> None:
        self.mono = 0.0
        self.wall: float | None = None

    def monotonic(self) -> float:
        return self.mono

    def time(self) -> float:
        return time.time() if self.wall is None else self.wall


@pytest.fixture
def idp() -> FakeIdP:
    return FakeIdP()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(external_module, "time", fake)
    return fake


async def start(tmp_path: Path, idp: FakeIdP, **external: Any) -> Any:
    settings = {"issuer": idp.issuer, "allow_private_network": True, **external}
    context = running(tmp_path, auth={"mode": "external", "external": settings})
    app = await context.__aenter__()
    server = app.runtime.auth
    fetcher = Fetcher(policy=ANY_ADDRESS, transport=idp.transport())
    verifier = ExternalVerifier(server.core, server.settings.auth.external, fetcher=fetcher)
    server.authenticator.external = verifier.verify
    return context, app


@pytest.mark.parametrize("private", [False, True])
async def test_the_servers_own_verifier_reaches_an_idp_on_a_private_address_only_when_allowed(
    tmp_path: Path, idp: FakeIdP, private: bool
) -> None:
    """Not the verifier ``start`` builds: the one ``[auth.external]`` builds, with its address policy."""

    async def private_dns(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    settings = {"issuer": idp.issuer, "allow_private_network": private}
    async with running(tmp_path, auth={"mode": "external", "external": settings}) as app, client_for(app) as http:
        fetcher = app.runtime.auth.external.fetcher
        fetcher.transport, fetcher.resolve = idp.transport(), private_dns
        response = await call(http, idp.token(), "tools/call", {"name": "whoami", "arguments": {}})
        if private:
            assert response.status_code == 200 and response.json()["result"]["structuredContent"]["subject"] == "u-42"
        else:
            assert response.status_code == 401 and idp.seen == []


async def test_external_jwt_is_accepted_and_metadata_points_at_the_idp(tmp_path: Path, idp: FakeIdP) -> None:
    context, app = await start(tmp_path, idp)
    try:
        async with client_for(app) as http:
            prm = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
            assert prm["authorization_servers"] == [ISSUER] and prm["resource"] == MCP
            assert prm["resource_name"] == "Patchbay test"
            assert (await http.get("/.well-known/oauth-authorization-server")).status_code == 404
            for path in ("/authorize", "/token", "/register"):  # the IdP is the authorization server
                assert (await http.request("GET" if path == "/authorize" else "POST", path)).status_code == 404, path
            listed = await call(http, idp.token(), "tools/list")
            (whoami,) = [t for t in listed.json()["result"]["tools"] if t["name"] == "whoami"]
            assert whoami["securitySchemes"] == [{"type": "oauth2", "scopes": ["mcp"]}]
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


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, idp: FakeIdP, **external: Any) -> AsyncIterator[tuple[Any, Any]]:
    context, app = await start(tmp_path, idp, **external)
    try:
        async with client_for(app) as http:
            yield app, http
    finally:
        await context.__aexit__(None, None, None)


async def whoami(http: Any, token: str) -> Any:
    """What the whoami tool sees, or the HTTP status when the request is refused."""
    response = await call(http, token, "tools/call", {"name": "whoami", "arguments": {}})
    if response.status_code != 200:
        return response.status_code
    return response.json()["result"]["structuredContent"]


async def principal_of(app: Any, token: str) -> Any:
    """The principal the app's authenticator hands to tools for this token (a Rejection when refused)."""
    return await app.runtime.auth.authenticator.authenticate(f"Bearer {token}".encode())


def refused(response: Any) -> bool:
    return response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]


# Discovery


@pytest.mark.parametrize(
    ("issuer", "rfc8414", "oidc"),
    [
        (ISSUER, RFC8414, OIDC),
        (
            "https://idp.example",
            "https://idp.example/.well-known/oauth-authorization-server",
            "https://idp.example/.well-known/openid-configuration",
        ),
        (
            "https://idp.example/",
            "https://idp.example/.well-known/oauth-authorization-server",
            "https://idp.example/.well-known/openid-configuration",
        ),
        (
            "https://idp.example/tenant/X/",
            "https://idp.example/.well-known/oauth-authorization-server/tenant/X/",
            "https://idp.example/tenant/X/.well-known/openid-configuration",
        ),
        (
            "https://idp.example/federation/https://upstream.example",
            "https://idp.example/.well-known/oauth-authorization-server/federation/https://upstream.example",
            "https://idp.example/federation/https://upstream.example/.well-known/openid-configuration",
        ),
    ],
    ids=["path", "no-path", "trailing-slash", "path-and-trailing-slash", "url-in-path"],
)
async def test_discovery_asks_rfc8414_first_then_openid_configuration(
    tmp_path: Path, issuer: str, rfc8414: str, oidc: str
) -> None:
    idp = FakeIdP(issuer)
    idp.documents = {oidc: {"issuer": issuer, "jwks_uri": idp.jwks_uri}}
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(), "tools/list")).status_code == 200
    assert idp.seen == [f"GET {rfc8414}", f"GET {oidc}", f"GET {idp.jwks_uri}"]


async def test_an_rfc8414_document_is_used_without_asking_for_openid_configuration(
    tmp_path: Path, idp: FakeIdP
) -> None:
    idp.documents[RFC8414] = {"issuer": ISSUER, "jwks_uri": idp.jwks_uri}
    idp.documents[OIDC] = {"issuer": ISSUER, "jwks_uri": "https://idp.example/elsewhere"}
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(), "tools/list")).status_code == 200
    assert idp.seen == [f"GET {RFC8414}", f"GET {idp.jwks_uri}"]


@pytest.mark.parametrize(
    "answer",
    [
        {"document": {"issuer": "https://evil.example", "jwks_uri": "https://evil.example/certs"}},
        {"document": {"issuer": f"{ISSUER}/", "jwks_uri": "https://evil.example/certs"}},
        {"document": [{"issuer": ISSUER, "jwks_uri": "https://evil.example/certs"}]},
        {"raw": (200, b"<html>not json</html>")},
        {"raw": (500, b"{}")},
    ],
    ids=["another-issuer", "issuer-not-exact", "not-an-object", "not-json", "error-status"],
)
async def test_an_rfc8414_answer_that_is_not_this_issuers_document_falls_back_to_openid_configuration(
    tmp_path: Path, idp: FakeIdP, answer: dict[str, Any]
) -> None:
    if "raw" in answer:
        idp.raw[RFC8414] = answer["raw"]
    else:
        idp.documents[RFC8414] = answer["document"]
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(), "tools/list")).status_code == 200
    assert idp.seen == [f"GET {RFC8414}", f"GET {OIDC}", f"GET {idp.jwks_uri}"]


async def test_without_a_document_for_the_issuer_tokens_are_refused_and_the_log_says_why(
    tmp_path: Path, idp: FakeIdP, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    idp.documents = {OIDC: {"issuer": "https://evil.example", "jwks_uri": idp.jwks_uri}}
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, idp.token(), "tools/list"))
    assert idp.fetched(idp.jwks_uri) == 0
    problems = f"GET {RFC8414} answered 404; {OIDC} names another issuer"
    expected = f"cannot verify a token with {ISSUER}: no metadata for issuer {ISSUER}: {problems}"
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"] == [expected]


async def test_the_issuers_document_is_fetched_once(tmp_path: Path, idp: FakeIdP) -> None:
    async with serving(tmp_path, idp) as (_, http):
        for subject in ("u-1", "u-2"):
            assert (await call(http, idp.token(sub=subject), "tools/list")).status_code == 200
    assert idp.fetched(RFC8414) == 1 and idp.fetched(OIDC) == 1


@pytest.mark.parametrize("configured", ["jwks_uri", "introspection_endpoint"])
async def test_configured_endpoints_work_without_a_metadata_document(
    tmp_path: Path, idp: FakeIdP, configured: str
) -> None:
    idp.documents = {}
    idp.introspected["opaque-1"] = {"active": True, "aud": MCP, "sub": "svc-1", "scope": "mcp"}
    endpoint = idp.jwks_uri if configured == "jwks_uri" else idp.introspection_endpoint
    token = idp.token() if configured == "jwks_uri" else "opaque-1"
    async with serving(tmp_path, idp, **{configured: endpoint}) as (_, http):
        assert (await call(http, token, "tools/list")).status_code == 200


# Which check a token gets


async def test_jwts_are_checked_against_the_keys_and_other_tokens_are_introspected(
    tmp_path: Path, idp: FakeIdP
) -> None:
    idp.introspected["opaque-1"] = {"active": True, "aud": MCP, "sub": "svc-1", "scope": "mcp"}
    async with serving(tmp_path, idp) as (_, http):
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"
        assert (await whoami(http, idp.token()))["subject"] == "u-42"
    assert len(idp.introspections) == 1 and idp.fetched(idp.jwks_uri) == 1


@pytest.mark.parametrize(
    "jwks_uri", [None, 42, "", ["https://idp.example/certs"]], ids=["absent", "number", "empty", "list"]
)
async def test_without_a_key_set_jwts_are_introspected_too(tmp_path: Path, idp: FakeIdP, jwks_uri: Any) -> None:
    # A jwks_uri in the metadata that is not a URL string is no key set.
    document = {"issuer": ISSUER, "introspection_endpoint": idp.introspection_endpoint, "jwks_uri": jwks_uri}
    idp.documents[OIDC] = {k: v for k, v in document.items() if v is not None}
    token = idp.token()
    idp.introspected[token] = {"active": True, "aud": MCP, "sub": "svc-2", "scope": "mcp"}
    async with serving(tmp_path, idp) as (_, http):
        assert (await whoami(http, token))["subject"] == "svc-2"
    assert idp.fetched(idp.jwks_uri) == 0


async def test_a_token_with_two_dots_that_is_not_a_jwt_is_refused(tmp_path: Path, idp: FakeIdP) -> None:
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, "not.a.jwt", "tools/list"))
    assert idp.introspections == []


# JWT access tokens


@pytest.mark.parametrize(
    "claims",
    [{"exp": None}, {"iss": None}, {"aud": None}, {"nbf": 600}],
    ids=["no-exp", "no-iss", "no-aud", "not-yet-valid"],
)
async def test_jwts_missing_a_required_claim_or_not_yet_valid_are_refused(
    tmp_path: Path, idp: FakeIdP, claims: dict[str, Any]
) -> None:
    if "nbf" in claims:  # seconds from now
        claims = {"nbf": int(time.time()) + claims["nbf"]}
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, idp.token(**claims), "tools/list"))


async def test_unsigned_and_hs256_jwts_are_refused(tmp_path: Path, idp: FakeIdP) -> None:
    secret = b"a shared secret the IdP also publishes"
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    idp.jwks["keys"].append({"kty": "oct", "k": k, "kid": "hs", "alg": "HS256"})
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(), "tools/list")).status_code == 200
        assert refused(await call(http, idp.token(key=secret, kid="hs", algorithm="HS256"), "tools/list"))
        assert refused(await call(http, idp.token(kid=None, algorithm="none"), "tools/list"))


@pytest.mark.parametrize(
    ("skew", "nbf_in", "accepted"),
    [(None, 30, True), (None, 90, False), (0, 30, False)],
    ids=["default-60s-covers-30s", "default-60s-not-90s", "no-skew"],
)
async def test_clock_skew_applies_to_nbf(
    tmp_path: Path, idp: FakeIdP, skew: int | None, nbf_in: int, accepted: bool
) -> None:
    settings = {} if skew is None else {"clock_skew_seconds": skew}
    async with serving(tmp_path, idp, **settings) as (_, http):
        response = await call(http, idp.token(nbf=int(time.time()) + nbf_in), "tools/list")
    assert (response.status_code == 200) is accepted


async def test_a_configured_audience_replaces_the_mcp_url(tmp_path: Path, idp: FakeIdP) -> None:
    audience = "https://api.example/"
    async with serving(tmp_path, idp, audience=audience) as (_, http):
        assert (await call(http, idp.token(aud=audience), "tools/list")).status_code == 200
        assert refused(await call(http, idp.token(), "tools/list"))


async def test_a_jwt_without_kid_is_tried_against_every_key(tmp_path: Path, idp: FakeIdP) -> None:
    idp.jwks["keys"].insert(0, public_jwk(rsa_key(), "k0"))
    async with serving(tmp_path, idp) as (_, http):
        assert (await whoami(http, idp.token(kid=None)))["subject"] == "u-42"


async def test_the_kid_names_the_one_key_tried(tmp_path: Path, idp: FakeIdP) -> None:
    other = rsa_key()
    idp.jwks["keys"].append(public_jwk(other, "k2"))
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(key=other, kid="k2"), "tools/list")).status_code == 200
        assert refused(await call(http, idp.token(key=other, kid="k1"), "tools/list"))


async def test_ec_keys_verify_es256_and_never_an_rs256_token(tmp_path: Path, idp: FakeIdP) -> None:
    curve = ec.generate_private_key(ec.SECP256R1())
    idp.jwks = {"keys": [public_jwk(curve, "k1")]}
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(key=curve, algorithm="ES256"), "tools/list")).status_code == 200
        assert refused(await call(http, idp.token(), "tools/list"))


# The key set's cache


async def test_the_key_set_is_kept_while_tokens_name_known_keys(tmp_path: Path, idp: FakeIdP, clock: Clock) -> None:
    # The monotonic clock starts at 0: the first token still fetches the keys on a host booted under a minute ago.
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(sub="u-1"), "tools/list")).status_code == 200
        clock.mono += 3600
        assert (await call(http, idp.token(sub="u-2"), "tools/list")).status_code == 200
    assert idp.fetched(idp.jwks_uri) == 1


async def test_an_unknown_kid_refetches_the_key_set_at_most_once_a_minute(
    tmp_path: Path, idp: FakeIdP, clock: Clock
) -> None:
    clock.mono = 1000.0
    rotated = rsa_key()
    async with serving(tmp_path, idp) as (_, http):
        assert (await call(http, idp.token(), "tools/list")).status_code == 200
        idp.jwks["keys"].append(public_jwk(rotated, "k2"))
        clock.mono = 1030.0
        assert refused(await call(http, idp.token(key=rotated, kid="k2"), "tools/list"))
        assert idp.fetched(idp.jwks_uri) == 1
        clock.mono = 1000.0 + JWKS_REFRESH_SECONDS
        assert (await call(http, idp.token(key=rotated, kid="k2"), "tools/list")).status_code == 200
        assert idp.fetched(idp.jwks_uri) == 2
        assert refused(await call(http, idp.token(key=rotated, kid="k3"), "tools/list"))
    assert idp.fetched(idp.jwks_uri) == 2


# RFC 7662 introspection

SECRET_ENV = "PATCHBAY_TEST_INTROSPECTION_SECRET"


def active(**claims: Any) -> dict[str, Any]:
    """An introspection answer that admits the token; a claim given as None is left out."""
    answer = {"active": True, "aud": MCP, "iss": ISSUER, "sub": "svc-1", "scope": "mcp", "exp": time.time() + 300}
    return {k: v for k, v in {**answer, **claims}.items() if v is not None}


@pytest.mark.parametrize(
    ("settings", "secret", "credentials"),
    [
        (
            {"introspection_client_id": "patchbay-rs", "introspection_client_secret_env": SECRET_ENV},
            "s3cret",
            "patchbay-rs:s3cret",
        ),
        ({"introspection_client_id": "patchbay-rs"}, "s3cret", "patchbay-rs:"),
        ({}, "s3cret", None),
    ],
    ids=["client-and-secret", "no-secret-variable", "no-client"],
)
async def test_introspection_posts_the_token_with_the_clients_credentials(
    tmp_path: Path,
    idp: FakeIdP,
    monkeypatch: pytest.MonkeyPatch,
    settings: dict[str, str],
    secret: str | None,
    credentials: str | None,
) -> None:
    if secret is None:
        monkeypatch.delenv(SECRET_ENV, raising=False)
    else:
        monkeypatch.setenv(SECRET_ENV, secret)
    idp.introspected["opaque-1"] = active()
    async with serving(tmp_path, idp, **settings) as (_, http):
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"
    (request,) = idp.introspections
    assert request.method == "POST" and parse_qs(request.content.decode()) == {"token": ["opaque-1"]}
    if credentials is None:
        assert "authorization" not in request.headers
    else:
        assert request.headers["authorization"] == f"Basic {base64.b64encode(credentials.encode()).decode()}"


@pytest.mark.parametrize(
    "answer",
    [
        lambda: active(active=False),
        lambda: active(active="true"),
        lambda: active(active=1),
        lambda: active(aud="https://other.example/mcp"),
        lambda: active(aud=f"{MCP}/other"),
        lambda: active(aud=["https://other.example/mcp"]),
        lambda: active(aud=None),
        lambda: active(iss="https://evil.example"),
        lambda: active(exp=time.time() - 3600),
        lambda: [active()],
    ],
    ids=[
        "inactive",
        "active-as-string",
        "active-as-number",
        "another-audience",
        "audience-extending-ours",
        "audience-list-without-ours",
        "no-audience",
        "another-issuer",
        "expired",
        "not-an-object",
    ],
)
async def test_introspection_answers_that_do_not_admit_the_token(
    tmp_path: Path, idp: FakeIdP, answer: Callable[[], Any]
) -> None:
    idp.introspected["opaque-1"] = answer()
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, "opaque-1", "tools/list"))
    assert len(idp.introspections) == 1


@pytest.mark.parametrize(
    "answer",
    [
        lambda: active(aud=["https://other.example/mcp", MCP]),
        lambda: active(iss=None),
        lambda: active(exp=None),
        lambda: active(exp=time.time() - 5),
    ],
    ids=["audience-list-with-ours", "no-issuer", "no-expiry", "expired-within-skew"],
)
async def test_introspection_answers_that_admit_the_token(
    tmp_path: Path, idp: FakeIdP, answer: Callable[[], Any]
) -> None:
    idp.introspected["opaque-1"] = answer()
    async with serving(tmp_path, idp) as (_, http):
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"


@pytest.mark.parametrize(("expired_for", "accepted"), [(59, True), (60, False)], ids=["59s", "60s"])
async def test_introspected_expiry_allows_exactly_the_clock_skew(
    tmp_path: Path, idp: FakeIdP, clock: Clock, expired_for: int, accepted: bool
) -> None:
    clock.wall = 1_900_000_000.0
    idp.introspected["opaque-1"] = active(exp=int(clock.wall) - expired_for)
    async with serving(tmp_path, idp) as (_, http):
        response = await call(http, "opaque-1", "tools/list")
    assert (response.status_code == 200) is accepted


@pytest.mark.parametrize(
    ("status", "body", "problem"),
    [
        (500, b"{}", "introspection answered 500"),
        (401, b'{"error": "invalid_client"}', "introspection answered 401"),
        (200, b"<html>", None),
    ],
    ids=["server-error", "client-refused", "not-json"],
)
async def test_an_introspection_failure_refuses_the_token_and_the_log_says_why(
    tmp_path: Path, idp: FakeIdP, caplog: pytest.LogCaptureFixture, status: int, body: bytes, problem: str | None
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    idp.raw[idp.introspection_endpoint] = (status, body)
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, "opaque-1", "tools/list"))
    (message,) = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"]
    assert message.startswith(f"cannot verify a token with {ISSUER}: ")
    if problem is not None:
        assert message == f"cannot verify a token with {ISSUER}: {problem}"


# The principal


@pytest.mark.parametrize(
    ("claims", "subject", "username", "client_id"),
    [
        (
            {"sub": "u-1", "preferred_username": "alice", "email": "a@x.example", "username": "al", "client_id": "app"},
            "u-1",
            "alice",
            "app",
        ),
        ({"email": "a@x.example", "username": "al", "azp": "web", "client_id": None}, "u-42", "a@x.example", "web"),
        ({"username": "al", "azp": "web", "client_id": "app"}, "u-42", "al", "app"),
        ({"sub": None, "client_id": "svc"}, "svc", None, "svc"),
        (
            {"sub": None, "client_id": "svc", "preferred_username": 5, "email": "a@x.example"},
            "svc",
            "a@x.example",
            "svc",
        ),
    ],
    ids=["all", "email-and-azp", "username-and-client-id", "client-credentials", "non-string-claims"],
)
async def test_the_tool_sees_subject_username_and_client_from_the_claims(
    tmp_path: Path, idp: FakeIdP, claims: dict[str, Any], subject: str, username: str | None, client_id: str | None
) -> None:
    async with serving(tmp_path, idp) as (_, http):
        me = await whoami(http, idp.token(**claims))
    assert (me["subject"], me["kind"], me["username"], me["client_id"]) == (subject, "external", username, client_id)


@pytest.mark.parametrize(
    ("settings", "claims", "scopes", "roles"),
    [
        ({}, {"scope": "mcp a", "scp": "b", "roles": ["r1", 3, "r2"]}, {"mcp", "a"}, {"r1", "r2"}),
        ({}, {"scope": None, "scp": "mcp b", "roles": "admin"}, {"mcp", "b"}, {"admin"}),
        ({}, {"scope": None, "scp": ["mcp", 7, "c"]}, {"mcp", "c"}, set()),
        ({}, {"scope": None}, set(), set()),
        (
            {"scopes_claim": "permissions", "roles_claim": "groups"},
            {"permissions": ["mcp", "x"], "groups": ["g"], "roles": ["r"]},
            {"mcp", "x"},
            {"g"},
        ),
    ],
    ids=["scope-and-roles", "scp-and-one-role", "scp-list", "none", "configured-claims"],
)
async def test_scopes_and_roles_come_from_their_claims(
    tmp_path: Path, idp: FakeIdP, settings: dict[str, str], claims: dict[str, Any], scopes: set, roles: set
) -> None:
    async with serving(tmp_path, idp, **settings) as (app, _):
        principal = await principal_of(app, idp.token(**claims))
    assert (principal.scopes, principal.roles) == (scopes, roles)


async def test_the_principal_keeps_the_expiry_and_the_short_scalar_claims(tmp_path: Path, idp: FakeIdP) -> None:
    exp = int(time.time()) + 300
    extra = {"tenant": "acme", "level": 3, "staff": True, "groups": ["a"], "address": {"city": "x"}}
    sized = {"fits": "y" * 197, "too_long": "z" * 198}  # 199 and 200 characters as JSON
    async with serving(tmp_path, idp) as (app, _):
        principal = await principal_of(app, idp.token(exp=exp, **extra, **sized))
    assert principal.expires_at == float(exp)
    assert principal.claims["tenant"] == "acme" and principal.claims["level"] == 3 and principal.claims["staff"] is True
    assert principal.claims["fits"] == sized["fits"] and principal.claims["sub"] == "u-42"
    assert not {"groups", "address", "too_long"} & set(principal.claims)


async def test_an_unset_secret_variable_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    external = {"issuer": ISSUER, "introspection_client_id": "rs", "introspection_client_secret_env": SECRET_ENV}
    with pytest.raises(ConfigError) as caught:
        create_app(settings(tmp_path, auth={"mode": "external", "external": external}))
    assert caught.value.key == "auth.external.introspection_client_secret_env" and caught.value.file == "<config>"
    assert str(caught.value) == (
        f"<config>: auth.external.introspection_client_secret_env names {SECRET_ENV}, "
        "which is not set in the environment"
    )


@pytest.mark.parametrize(
    "claims",
    [{"sub": None}, {"sub": None, "client_id": 7}, {"sub": ""}, {"sub": None, "client_id": ""}],
    ids=["neither", "client-id-not-a-string", "empty-subject", "empty-client-id"],
)
async def test_a_token_that_names_no_caller_is_refused(tmp_path: Path, idp: FakeIdP, claims: dict[str, Any]) -> None:
    # Two such callers could not be told apart (RFC 9068 §2.2 requires sub).
    idp.introspected["opaque-1"] = active(**claims)
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, idp.token(**claims), "tools/list"))
        assert refused(await call(http, "opaque-1", "tools/list"))


@pytest.mark.parametrize(
    "jwks",
    [{"keys": []}, {"keys": [{"kty": "nope", "kid": "k1"}]}, {"keys": "k1"}, ["not", "a", "key set"]],
    ids=["empty", "no-usable-key", "keys-not-a-list", "not-an-object"],
)
async def test_an_unusable_key_set_refuses_tokens_and_the_log_says_why(
    tmp_path: Path, idp: FakeIdP, jwks: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    idp.jwks = jwks
    async with serving(tmp_path, idp) as (_, http):
        assert refused(await call(http, idp.token(), "tools/list"))
    (message,) = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"]
    assert message.startswith(f"cannot verify a token with {ISSUER}: the JWKS at {idp.jwks_uri} is not usable: ")
    if isinstance(jwks, list):
        assert message.endswith(": not a JSON object")


@pytest.mark.parametrize(
    ("claims", "scopes", "roles"),
    [
        ({"roles": 5}, {"mcp"}, set()),
        ({"scope": 5, "roles": {"admin": True}}, set(), set()),
        ({"scope": None, "scp": None, "roles": None}, set(), set()),
        ({"scope": None, "scp": 5, "roles": [None, "r"]}, set(), {"r"}),
    ],
    ids=["roles-number", "scope-number-roles-object", "all-absent", "scp-number"],
)
async def test_a_malformed_scope_or_roles_claim_grants_nothing(
    tmp_path: Path, idp: FakeIdP, claims: dict[str, Any], scopes: set, roles: set
) -> None:
    idp.introspected["opaque-1"] = active(**claims)
    async with serving(tmp_path, idp) as (app, _):
        for token in (idp.token(**claims), "opaque-1"):
            principal = await principal_of(app, token)
            assert (principal.scopes, principal.roles) == (scopes, roles)


async def test_one_configured_endpoint_leaves_the_other_to_the_metadata(tmp_path: Path, idp: FakeIdP) -> None:
    # docs/auth.md: jwks_uri and introspection_endpoint each default to the issuer's metadata document.
    idp.introspected["opaque-1"] = active()
    async with serving(tmp_path, idp, jwks_uri=idp.jwks_uri) as (_, http):
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"
        assert (await whoami(http, idp.token()))["subject"] == "u-42"
    assert idp.fetched(OIDC) == 1


async def test_a_metadata_document_that_cannot_be_read_is_asked_again_after_a_minute(
    tmp_path: Path, idp: FakeIdP, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    documents, idp.documents = idp.documents, {}
    idp.introspected["opaque-1"] = active()
    async with serving(tmp_path, idp, jwks_uri=idp.jwks_uri) as (_, http):
        assert (await whoami(http, idp.token()))["subject"] == "u-42"  # the configured key set works meanwhile
        assert refused(await call(http, "opaque-1", "tools/list"))  # no introspection endpoint known yet
        idp.documents = documents
        clock.mono = JWKS_REFRESH_SECONDS - 1
        assert refused(await call(http, "opaque-1", "tools/list"))
        assert idp.fetched(OIDC) == 1
        clock.mono = JWKS_REFRESH_SECONDS
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"
        assert (await whoami(http, idp.token()))["subject"] == "u-42"
    assert idp.fetched(OIDC) == 2
    warnings = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"]
    assert warnings == [
        f"using only the configured endpoints of {ISSUER} for now: no metadata for issuer {ISSUER}: "
        f"GET {RFC8414} answered 404; GET {OIDC} answered 404"
    ]


async def test_with_both_endpoints_configured_the_metadata_is_never_asked_for(
    tmp_path: Path, idp: FakeIdP, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="patchbay.auth")
    idp.documents = {}
    idp.introspected["opaque-1"] = active()
    endpoints = {"jwks_uri": idp.jwks_uri, "introspection_endpoint": idp.introspection_endpoint}
    async with serving(tmp_path, idp, **endpoints) as (_, http):
        assert (await whoami(http, idp.token()))["subject"] == "u-42"
        assert (await whoami(http, "opaque-1"))["subject"] == "svc-1"
    assert idp.seen == [f"GET {idp.jwks_uri}", f"POST {idp.introspection_endpoint}"]
    assert not [r for r in caplog.records if r.name == "patchbay.auth"]
