"""Federated sign-in (``[auth.upstream]``) in-process, against an OpenID provider behind httpx's MockTransport with
a real RSA key: claims the ID token leaves out come from UserInfo (OpenID Connect Core §5.4), a UserInfo answer
about someone else is refused (§5.3.2), and the login page's CSP lets the "Sign in with" form reach the provider.
The provider's side of each step (discovery, the authorization request, the token request with PKCE, the ID
token's checks, the claims and roles a person gets) is pinned one refusal or parameter at a time below.
The same flow against a real provider (oidc-provider) is tests/e2e/test_auth_idp.py."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from fixtures.authflow import BASE, PASSWORD, Flow, add_user, call, client_for, running, settings
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from tests.support.browser import Browser, Outcome
from tests.support.clock import Clock

from patchbay.app import create_app
from patchbay.auth import oidc as oidc_module
from patchbay.errors import ConfigError

pytestmark = pytest.mark.anyio
ISSUER = "https://idp.example/oidc"
UPSTREAM = {
    "issuer": ISSUER,
    "client_id": "patchbay",
    "role_map": {"mcp-admins": ["admin"]},
    "display_name": "Example SSO",
}
CALLBACK = f"{BASE}/authorize/callback"
BAD_TOKEN = "The ID token's signature, issuer, audience or expiry is not valid."


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class FakeOP:
    """Discovery, JWKS, token and UserInfo endpoints; the ID token carries only the required claims. Tests change
    one thing at a time: ``claims``/``discovery``/``token_extra`` (None removes a member), ``sign`` (how the ID token
    is signed), ``token_answer``/``userinfo_answer`` (a whole response). ``requests`` records what Patchbay sent."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.jwks: Any = {"keys": [{**jwk, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        self.nonce = ""
        self.userinfo: dict[str, Any] = {"sub": "u-1", "email": "alice@example.com", "groups": ["mcp-admins"]}
        self.claims: dict[str, Any] = {}
        self.discovery: dict[str, Any] = {}
        self.token_extra: dict[str, Any] = {}
        self.sign: Callable[[dict[str, Any]], str] = lambda claims: jwt.encode(
            claims, self.key, algorithm="RS256", headers={"kid": "k1"}
        )
        self.token_answer: httpx.Response | None = None
        self.userinfo_answer: httpx.Response | None = None
        self.unreachable: set[str] = set()  # paths whose requests fail to connect
        self.requests: list[httpx.Request] = []

    def id_token(self) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": "patchbay", "sub": "u-1", "exp": now + 300, "iat": now, "nonce": self.nonce}
        return self.sign(_without_none({**claims, **self.claims}))

    def sent(self, path: str) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == path]

    def transport(self) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            self.requests.append(request)
            path = request.url.path
            if path in self.unreachable:
                raise httpx.ConnectError("connection refused", request=request)
            if path == "/oidc/.well-known/openid-configuration":
                endpoints = {n: f"{ISSUER}/{n}" for n in ("authorize", "token", "jwks", "userinfo")}
                document = {
                    "issuer": ISSUER,
                    "authorization_endpoint": endpoints["authorize"],
                    "token_endpoint": endpoints["token"],
                    "jwks_uri": endpoints["jwks"],
                    "userinfo_endpoint": endpoints["userinfo"],
                }
                return httpx.Response(200, json=_without_none({**document, **self.discovery}))
            if path == "/oidc/jwks":
                return httpx.Response(200, json=self.jwks)
            if path == "/oidc/token" and self.token_answer is not None:
                return self.token_answer
            if path == "/oidc/token" and b"code=the-code" in request.content:
                body = {"access_token": "op-at", "id_token": self.id_token(), **self.token_extra}
                return httpx.Response(200, json=_without_none(body))
            if path == "/oidc/userinfo" and self.userinfo_answer is not None:
                return self.userinfo_answer
            if path == "/oidc/userinfo" and request.headers.get("authorization") == "Bearer op-at":
                return httpx.Response(200, json=self.userinfo)
            return httpx.Response(404)

        return httpx.MockTransport(answer)


async def to_provider(app: Any, http: Any, op: FakeOP) -> tuple[Flow, Browser, Outcome]:
    """From the client's /authorize to the provider's authorization endpoint (not followed)."""
    serve(app, op)
    flow = Flow(http)
    await flow.register()
    browser = Browser(http, (BASE,), prefer="/authorize/upstream")
    return flow, browser, await browser.authorize(flow.authorize_url())


async def sign_in_upstream(app: Any, http: Any, op: FakeOP) -> tuple[Flow, Any]:
    """From the client's /authorize to the provider and back; the outcome is Patchbay's last answer."""
    flow, browser, outcome = await to_provider(app, http, op)
    assert outcome.location is not None and outcome.location.startswith(f"{ISSUER}/authorize?")
    asked = outcome.params
    assert asked["client_id"] == "patchbay" and asked["code_challenge_method"] == "S256"
    op.nonce = asked["nonce"]
    back = await browser.authorize(f"/authorize/callback?code=the-code&state={asked['state']}")
    return flow, back


async def _public_dns(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


def serve(app: Any, op: FakeOP) -> None:
    """The app's own fetcher for the provider (its address policy from the config) reaches ``op``."""
    fetcher = app.runtime.auth.upstream.fetcher
    fetcher.transport, fetcher.resolve = op.transport(), _public_dns


async def whoami(http: Any, flow: Flow, back: Outcome) -> dict[str, Any]:
    """The principal the client's token for this sign-in carries, as a tool sees it."""
    response = await flow.redeem(back.params["code"])
    assert response.status_code == 200, response.text
    called = await call(http, response.json()["access_token"], "tools/call", {"name": "whoami", "arguments": {}})
    me: dict[str, Any] = called.json()["result"]["structuredContent"]
    return me


def page_text(outcome: Any) -> str:
    return html.unescape(outcome.html if isinstance(outcome, Outcome) else outcome.text)


def alert_of(outcome: Any) -> str:
    """The message of an error page: the text of its one ``role="alert"`` paragraph."""
    (message,) = re.findall(
        r'<p role="alert">(.*?)</p>', outcome.html if isinstance(outcome, Outcome) else outcome.text
    )
    return html.unescape(message)


def form_of(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


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


# -- routes and the authorization request (start, authorization_url) --------------------------------------------


async def test_the_provider_is_asked_for_a_code_with_state_nonce_and_pkce(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, outcome = await to_provider(app, http, op)
        assert outcome.status == 302 and outcome.headers["cache-control"] == "no-store"
        assert outcome.location is not None and outcome.location.startswith(f"{ISSUER}/authorize?")
        asked = outcome.params
        assert sorted(asked) == [
            "client_id",
            "code_challenge",
            "code_challenge_method",
            "nonce",
            "redirect_uri",
            "response_type",
            "scope",
            "state",
        ]
        assert asked["response_type"] == "code" and asked["client_id"] == "patchbay"
        assert asked["redirect_uri"] == CALLBACK
        assert asked["scope"] == "openid email profile"
        assert asked["code_challenge_method"] == "S256"
        assert len(asked["state"]) >= 32 and len(asked["nonce"]) >= 16
        # The verifier sent to the token endpoint is the one the challenge was made from (RFC 7636 §4.6).
        op.nonce = asked["nonce"]
        back = await browser.authorize(f"/authorize/callback?code=the-code&state={asked['state']}")
        assert back.location is not None and back.location.startswith("http://127.0.0.1:9999/callback?")
        sent = form_of(op.sent("/oidc/token")[0])
        assert s256(sent["code_verifier"]) == asked["code_challenge"]
        assert sent["code_verifier"] not in (asked["state"], asked["nonce"])


async def test_each_sign_in_gets_its_own_state_nonce_and_challenge(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, _, first = await to_provider(app, http, op)
        _, _, second = await to_provider(app, http, op)
        for name in ("state", "nonce", "code_challenge"):
            assert first.params[name] != second.params[name]
        assert first.params["state"] != first.params["nonce"]


async def test_the_configured_scopes_are_asked_for(tmp_path: Path) -> None:
    upstream = {**UPSTREAM, "scopes": ["openid", "email", "groups"]}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        _, _, outcome = await to_provider(app, http, FakeOP())
        assert outcome.params["scope"] == "openid email groups"


@pytest.mark.parametrize("public_url", [BASE, "https://mcp.example.com"])
async def test_the_sign_in_cookie_stays_on_authorize_for_ten_minutes_and_is_secure_over_https(
    tmp_path: Path, public_url: str
) -> None:
    config = settings(tmp_path, auth={"upstream": UPSTREAM})
    app = create_app(config.model_copy(update={"server": config.server.model_copy(update={"public_url": public_url})}))
    await app.runtime.start()
    try:
        serve(app, FakeOP())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public_url) as http:
            flow = Flow(http)
            await flow.register()
            browser = Browser(http, (public_url,), prefer="/authorize/upstream")
            outcome = await browser.authorize(flow.authorize_url(resource=f"{public_url}/mcp"))
    finally:
        app.sessions.close_all()
        await app.runtime.stop()
    assert outcome.params["redirect_uri"] == f"{public_url}/authorize/callback"
    (cookie,) = [c for c in outcome.headers.get_list("set-cookie") if c.startswith("patchbay_upstream=")]
    pair, *attributes = cookie.split("; ")
    assert len(pair) > len("patchbay_upstream=") + 20  # the sign-in's handle
    shared = {"HttpOnly", "Path=/authorize", "SameSite=lax", "Max-Age=600"}
    assert set(attributes) == shared | ({"Secure"} if public_url.startswith("https") else set())


async def test_the_upstream_form_without_a_pending_request_is_an_expired_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        serve(app, op)
        response = await http.post("/authorize/upstream", data={"request": "nope", "csrf": "nope"})
        assert response.status_code == 400 and "<h1>Sign-in expired</h1>" in response.text
        assert op.requests == []  # nothing was asked of the provider


async def test_the_routes_take_only_their_method(tmp_path: Path) -> None:
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        assert (await http.get("/authorize/upstream")).status_code == 405
        assert (await http.post("/authorize/callback", data={"state": "s", "code": "c"})).status_code == 405


# -- discovery (metadata) -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"issuer": "https://evil.example/oidc"},  # a document naming another issuer is not this provider's
        {"issuer": ISSUER + "/"},
        {"authorization_endpoint": None},
    ],
    ids=["other-issuer", "issuer-with-slash", "no-authorization-endpoint"],
)
async def test_a_provider_without_usable_metadata_makes_sign_in_unavailable(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    op = FakeOP()
    op.discovery = change
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, _, outcome = await to_provider(app, http, op)
        assert outcome.location is None and outcome.status == 502
        assert "<h1>Sign-in unavailable</h1>" in outcome.html
        assert alert_of(outcome) == "Cannot reach Example SSO's sign-in."


async def test_the_metadata_is_fetched_once_for_many_sign_ins(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        async with client_for(app) as another_browser:
            _, back = await sign_in_upstream(app, another_browser, op)
        assert back.location is not None and "code=" in back.location
        assert len(op.sent("/oidc/.well-known/openid-configuration")) == 1
        assert len(op.sent("/oidc/jwks")) == 1  # the keys too, while the ID tokens' kid is known


# -- the callback: state, code, cookies -----------------------------------------------------------------------------


async def test_an_error_from_the_provider_is_shown(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, outcome = await to_provider(app, http, op)
        state = outcome.params["state"]
        back = await browser.authorize(f"/authorize/callback?error=access_denied&state={state}")
        assert back.location is None and back.status == 400
        assert "<h1>Sign-in cancelled</h1>" in back.html and alert_of(back) == "Example SSO answered: access_denied."
        assert op.sent("/oidc/token") == []


@pytest.mark.parametrize(
    "query",
    ["code=the-code&state=unknown", "code=the-code", "state={state}", "code=&state={state}"],
    ids=["unknown-state", "no-state", "no-code", "empty-code"],
)
async def test_a_callback_without_a_known_state_and_a_code_is_an_expired_sign_in(tmp_path: Path, query: str) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, outcome = await to_provider(app, http, op)
        state = outcome.params["state"]
        op.nonce = outcome.params["nonce"]
        back = await browser.authorize("/authorize/callback?" + query.format(state=state))
        assert back.location is None and back.status == 400
        assert (
            "<h1>Sign-in expired</h1>" in back.html
            and alert_of(back) == "This sign-in is unknown or expired. Start again from your app."
        )
        assert op.sent("/oidc/token") == []


async def test_the_state_is_single_use(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, outcome = await to_provider(app, http, op)
        op.nonce = outcome.params["nonce"]
        back = f"/authorize/callback?code=the-code&state={outcome.params['state']}"
        first = await browser.authorize(back)
        assert first.location is not None and "code=" in first.location
        again = await browser.authorize(back)
        assert again.location is None and again.status == 400 and "<h1>Sign-in expired</h1>" in again.html
        assert len(op.sent("/oidc/token")) == 1


async def test_a_callback_in_another_browser_is_an_expired_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, _, outcome = await to_provider(app, http, op)
        op.nonce = outcome.params["nonce"]
        async with client_for(app) as elsewhere:
            back = await elsewhere.get(f"/authorize/callback?code=the-code&state={outcome.params['state']}")
        assert back.status_code == 400 and "<h1>Sign-in expired</h1>" in back.text
        assert op.sent("/oidc/token") == []


async def test_a_callback_for_another_sign_in_of_this_browser_is_an_expired_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, first = await to_provider(app, http, op)
        await to_provider(app, http, op)  # a second sign-in replaces the browser's sign-in cookie
        op.nonce = first.params["nonce"]
        back = await browser.authorize(f"/authorize/callback?code=the-code&state={first.params['state']}")
        assert back.location is None and back.status == 400 and "<h1>Sign-in expired</h1>" in back.html
        assert op.sent("/oidc/token") == []


@pytest.mark.parametrize("csrf", [None, "forged"], ids=["missing", "wrong"])
async def test_a_callback_without_the_forms_csrf_cookie_is_refused(tmp_path: Path, csrf: str | None) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, browser, outcome = await to_provider(app, http, op)
        op.nonce = outcome.params["nonce"]
        for cookie in list(http.cookies.jar):
            if cookie.name.startswith("patchbay_csrf_"):
                http.cookies.jar.clear(cookie.domain, cookie.path, cookie.name)
                if csrf is not None:
                    http.cookies.set(cookie.name, csrf, domain=cookie.domain, path=cookie.path)
        back = await browser.authorize(f"/authorize/callback?code=the-code&state={outcome.params['state']}")
        assert back.location is None and back.status == 403
        assert "<h1>Form expired</h1>" in back.html
        assert alert_of(back) == "This sign-in was not started in this browser. Start again."
        assert op.sent("/oidc/token") == []


async def test_a_signed_in_callback_ends_the_sign_in_cookie_and_opens_a_browser_session(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, _, outcome = await to_provider(app, http, op)
        op.nonce = outcome.params["nonce"]
        back = await http.get(f"/authorize/callback?code=the-code&state={outcome.params['state']}")
        assert back.status_code == 200 and 'name="decision"' in back.text  # consent, as alice@example.com
        assert "alice@example.com" in back.text
        cookies = back.headers.get_list("set-cookie")
        ended = next(c for c in cookies if c.startswith("patchbay_upstream="))
        assert "Max-Age=0" in ended and "Path=/authorize" in ended
        assert any(c.startswith("patchbay_session=") and "Max-Age=0" not in c for c in cookies)


async def test_a_client_removed_during_the_sign_in_is_refused(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow, _, outcome = await to_provider(app, http, op)
        op.nonce = outcome.params["nonce"]
        core = app.runtime.auth.core
        assert await core.run(core.clients.revoke, flow.client_id)
        # The callback's own answer (the Browser would go on through a consent page, which refuses too).
        back = await http.get(f"/authorize/callback?code=the-code&state={outcome.params['state']}")
        assert back.status_code == 400 and "location" not in back.headers
        assert "<h1>Unknown application</h1>" in back.text and alert_of(back) == "This application was removed."


async def test_a_callback_another_sign_in_page_claims_is_answered_by_that_page(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        seen: list[str] = []

        async def not_mine(request: Any) -> Any:
            seen.append("not_mine")
            return None

        async def mine(request: Any) -> Any:
            from starlette.responses import PlainTextResponse

            seen.append("mine")
            return PlainTextResponse("claimed", 200) if request.query_params.get("state") == "mine" else None

        app.runtime.auth.upstream.claimants.extend([not_mine, mine])
        claimed = await http.get("/authorize/callback?code=c&state=mine")
        assert claimed.status_code == 200 and claimed.text == "claimed"
        assert seen == ["not_mine", "mine"]
        # A callback no page claims is the OAuth sign-in's own.
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location


# -- the token request (_claims) ------------------------------------------------------------------------------------


async def test_the_token_request_redeems_the_code_with_the_verifier_for_a_public_client(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        (sent,) = op.sent("/oidc/token")
        assert sent.method == "POST" and "authorization" not in sent.headers
        body = form_of(sent)
        assert sorted(body) == ["client_id", "code", "code_verifier", "grant_type", "redirect_uri"]
        assert body["grant_type"] == "authorization_code" and body["code"] == "the-code"
        assert body["redirect_uri"] == CALLBACK and body["client_id"] == "patchbay"


async def test_a_confidential_client_authenticates_with_http_basic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATCHBAY_TEST_OIDC_SECRET", "s3cret")
    upstream = {**UPSTREAM, "client_secret_env": "PATCHBAY_TEST_OIDC_SECRET"}
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location
        (sent,) = op.sent("/oidc/token")
        assert sent.headers["authorization"] == "Basic " + base64.b64encode(b"patchbay:s3cret").decode()
        assert "client_secret" not in form_of(sent)


@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_an_unset_client_secret_variable_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    # An empty secret would fail only later, at the provider, with invalid_client.
    if value is None:
        monkeypatch.delenv("PATCHBAY_TEST_OIDC_SECRET", raising=False)
    else:
        monkeypatch.setenv("PATCHBAY_TEST_OIDC_SECRET", value)
    upstream = {**UPSTREAM, "client_secret_env": "PATCHBAY_TEST_OIDC_SECRET"}
    with pytest.raises(ConfigError) as caught:
        create_app(settings(tmp_path, auth={"upstream": upstream}))
    assert caught.value.key == "auth.upstream.client_secret_env" and caught.value.file == "<config>"
    assert str(caught.value) == (
        "<config>: auth.upstream.client_secret_env names PATCHBAY_TEST_OIDC_SECRET, which is not set in the environment"
    )


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(400, json={"error": "invalid_grant"}),
        httpx.Response(500, json={"id_token": "x"}),  # only a 200 answer is read
        httpx.Response(200, json={"access_token": "op-at"}),
        httpx.Response(200, json={"access_token": "op-at", "id_token": 42}),
        httpx.Response(200, json=["id_token"]),
    ],
    ids=["400", "500", "no-id-token", "id-token-not-a-string", "not-an-object"],
)
async def test_a_token_answer_without_an_id_token_fails_the_sign_in(tmp_path: Path, answer: httpx.Response) -> None:
    op = FakeOP()
    op.token_answer = answer
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert "Example SSO did not complete the sign-in (no ID token)." in back.html


@pytest.mark.parametrize("broken", ["not-json", "unreachable"])
async def test_a_token_endpoint_that_cannot_answer_makes_sign_in_unavailable(tmp_path: Path, broken: str) -> None:
    op = FakeOP()
    if broken == "not-json":
        op.token_answer = httpx.Response(200, content=b"<html>oops</html>")
    else:
        op.unreachable = {"/oidc/token"}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 502 and "<h1>Sign-in unavailable</h1>" in back.html
        assert alert_of(back) == "Cannot reach Example SSO."


# -- the ID token (_verify) -------------------------------------------------------------------------------------------


def _other_rsa_key() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(
    "case",
    [
        "other-key",
        "other-issuer",
        "other-audience",
        "expired",
        "no-exp",
        "no-iss",
        "no-aud",
        "no-sub",
        "alg-none",
        "hs256",
        "unknown-kid",
    ],
)
async def test_an_id_token_that_is_not_valid_fails_the_sign_in(tmp_path: Path, case: str) -> None:
    op = FakeOP()
    other = _other_rsa_key()
    changes: dict[str, dict[str, Any]] = {
        "other-issuer": {"iss": "https://evil.example/oidc"},
        "other-audience": {"aud": "someone-else"},
        "expired": {"exp": int(time.time()) - 120},  # beyond the 60 s of clock skew allowed
        "no-exp": {"exp": None},
        "no-iss": {"iss": None},
        "no-aud": {"aud": None},
        "no-sub": {"sub": None},
    }
    op.claims = changes.get(case, {})
    signers: dict[str, Callable[[dict[str, Any]], str]] = {
        "other-key": lambda c: jwt.encode(c, other, algorithm="RS256", headers={"kid": "k1"}),
        "alg-none": lambda c: jwt.encode(c, None, algorithm="none", headers={"kid": "k1"}),
        "hs256": lambda c: jwt.encode(c, "a-shared-secret-of-32-bytes-long!", algorithm="HS256", headers={"kid": "k1"}),
        "unknown-kid": lambda c: jwt.encode(c, op.key, algorithm="RS256", headers={"kid": "k9"}),
    }
    op.sign = signers.get(case, op.sign)
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert alert_of(back) == BAD_TOKEN
        assert op.sent("/oidc/userinfo") == []


async def test_a_malformed_id_token_fails_the_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    op.sign = lambda claims: "not-a-jwt"
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and alert_of(back) == "The ID token is malformed."


async def test_an_id_token_expired_within_the_clock_skew_is_accepted(tmp_path: Path) -> None:
    op = FakeOP()
    op.claims = {"exp": int(time.time()) - 20}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location


async def test_an_id_token_for_several_audiences_including_ours_is_accepted(tmp_path: Path) -> None:
    op = FakeOP()
    op.claims = {"aud": ["another-app", "patchbay"], "azp": "patchbay"}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256", "EdDSA"])
async def test_id_tokens_signed_with_each_asymmetric_algorithm_are_accepted(tmp_path: Path, alg: str) -> None:
    op = FakeOP()
    key: Any
    if alg == "ES256":
        key = ec.generate_private_key(ec.SECP256R1())
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    elif alg == "EdDSA":
        key = ed25519.Ed25519PrivateKey.generate()
        jwk = OKPAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        key = _other_rsa_key()
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    op.jwks["keys"].append({**jwk, "kid": "k2", "use": "sig", "alg": alg})
    op.sign = lambda claims: jwt.encode(claims, key, algorithm=alg, headers={"kid": "k2"})
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location, back.html


@pytest.mark.parametrize("alg", ["RS512", "ES384"])
async def test_id_tokens_signed_with_an_algorithm_outside_the_list_are_refused(tmp_path: Path, alg: str) -> None:
    # The provider publishes the key with its algorithm; Patchbay's list (RS256, ES256, PS256, EdDSA) still decides.
    op = FakeOP()
    key: Any = ec.generate_private_key(ec.SECP384R1()) if alg == "ES384" else _other_rsa_key()
    jwk = (ECAlgorithm if alg == "ES384" else RSAAlgorithm).to_jwk(key.public_key(), as_dict=True)
    op.jwks["keys"].append({**jwk, "kid": "k2", "use": "sig", "alg": alg})
    op.sign = lambda claims: jwt.encode(claims, key, algorithm=alg, headers={"kid": "k2"})
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and alert_of(back) == BAD_TOKEN


async def test_an_id_token_without_kid_is_checked_against_every_key(tmp_path: Path) -> None:
    op = FakeOP()
    second = _other_rsa_key()
    jwk = RSAAlgorithm.to_jwk(second.public_key(), as_dict=True)
    op.jwks["keys"].append({**jwk, "kid": "k2", "use": "sig", "alg": "RS256"})
    op.sign = lambda claims: jwt.encode(claims, second, algorithm="RS256")
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location, back.html


async def test_an_id_token_is_checked_only_against_the_key_its_kid_names(tmp_path: Path) -> None:
    op = FakeOP()
    second = _other_rsa_key()
    jwk = RSAAlgorithm.to_jwk(second.public_key(), as_dict=True)
    op.jwks["keys"].append({**jwk, "kid": "k2", "use": "sig", "alg": "RS256"})
    op.sign = lambda claims: jwt.encode(claims, second, algorithm="RS256", headers={"kid": "k1"})
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and alert_of(back) == BAD_TOKEN


async def test_a_token_with_an_unknown_kid_does_not_refetch_keys_fetched_within_a_minute(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        op.sign = lambda claims: jwt.encode(claims, op.key, algorithm="RS256", headers={"kid": "k9"})
        async with client_for(app) as another_browser:
            _, back = await sign_in_upstream(app, another_browser, op)
        assert back.status == 403 and alert_of(back) == BAD_TOKEN
        assert len(op.sent("/oidc/jwks")) == 1


async def test_a_new_kid_refetches_the_providers_keys_at_most_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()  # stands in for time.monotonic inside patchbay.auth.oidc; starts at 1000
    monkeypatch.setattr(oidc_module, "time", SimpleNamespace(monotonic=clock))
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app:

        async def sign_in_at(now: float) -> Outcome:
            clock.now = now
            async with client_for(app) as browser:
                return (await sign_in_upstream(app, browser, op))[1]

        assert "code=" in ((await sign_in_at(1000.0)).location or "")
        assert "code=" in ((await sign_in_at(1200.0)).location or "")  # a known kid: the keys are not fetched again
        assert len(op.sent("/oidc/jwks")) == 1
        # The provider rotates its key: k2 replaces k1.
        rotated = _other_rsa_key()
        jwk = RSAAlgorithm.to_jwk(rotated.public_key(), as_dict=True)
        op.jwks = {"keys": [{**jwk, "kid": "k2", "use": "sig", "alg": "RS256"}]}
        op.sign = lambda claims: jwt.encode(claims, rotated, algorithm="RS256", headers={"kid": "k2"})
        for now in (1030.0, 1060.0):  # within a minute of the last fetch (at 1000): refused, the keys not fetched
            refused = await sign_in_at(now)
            assert refused.status == 403 and alert_of(refused) == BAD_TOKEN
        assert len(op.sent("/oidc/jwks")) == 1
        assert "code=" in ((await sign_in_at(1061.0)).location or "")
        assert len(op.sent("/oidc/jwks")) == 2


async def test_provider_keys_that_are_not_usable_fail_the_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    op.jwks = {"keys": [{"kty": "oct", "kid": "k1"}]}  # a symmetric key without its value
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403
        assert alert_of(back) == "The provider's signing keys are not usable."


async def test_a_provider_without_a_jwks_uri_fails_the_sign_in(tmp_path: Path) -> None:
    op = FakeOP()
    op.discovery = {"jwks_uri": None}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403
        assert alert_of(back) == "The provider's signing keys are not usable."


@pytest.mark.parametrize("nonce", ["someone-elses-nonce", None], ids=["other", "missing"])
async def test_an_id_token_for_another_request_fails_the_sign_in(tmp_path: Path, nonce: str | None) -> None:
    op = FakeOP()
    op.claims = {"nonce": nonce}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403
        assert alert_of(back) == "The sign-in response does not belong to this request (nonce)."


async def test_an_unreachable_provider_makes_sign_in_unavailable(tmp_path: Path) -> None:
    op = FakeOP()
    op.unreachable = {"/oidc/.well-known/openid-configuration"}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, _, outcome = await to_provider(app, http, op)
        assert outcome.location is None and outcome.status == 502
        assert alert_of(outcome) == "Cannot reach Example SSO's sign-in."


@pytest.mark.parametrize("private", [False, True])
async def test_a_provider_on_a_private_address_is_reached_only_with_allow_private_network(
    tmp_path: Path, private: bool
) -> None:
    async def private_dns(host: str, port: int) -> list[str]:
        return ["10.0.0.7"]

    op = FakeOP()
    upstream = {**UPSTREAM, "allow_private_network": private}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        fetcher = app.runtime.auth.upstream.fetcher
        fetcher.transport, fetcher.resolve = op.transport(), private_dns
        flow = Flow(http)
        await flow.register()
        outcome = await Browser(http, (BASE,), prefer="/authorize/upstream").authorize(flow.authorize_url())
        if private:
            assert outcome.location is not None and outcome.location.startswith(f"{ISSUER}/authorize?")
        else:
            assert outcome.location is None and outcome.status == 502
            assert alert_of(outcome) == "Cannot reach Example SSO's sign-in."
            assert op.sent("/oidc/.well-known/openid-configuration") == []


# -- claims: the ID token's, completed from UserInfo (_claims, _userinfo) ------------------------------------------


async def test_userinfo_is_asked_with_the_providers_access_token(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        (asked,) = op.sent("/oidc/userinfo")
        assert asked.method == "GET" and asked.headers["authorization"] == "Bearer op-at"


async def test_the_id_tokens_claims_win_over_userinfo(tmp_path: Path) -> None:
    op = FakeOP()
    op.claims = {"email": "bob@example.com", "groups": []}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        assert me["subject"] == "user:bob@example.com" and me["roles"] == []


@pytest.mark.parametrize(
    "change",
    [{"token_extra": {"access_token": None}}, {"discovery": {"userinfo_endpoint": None}}],
    ids=["no-access-token", "no-userinfo-endpoint"],
)
async def test_without_userinfo_the_id_tokens_claims_are_used(tmp_path: Path, change: dict[str, Any]) -> None:
    op = FakeOP()
    for name, value in change.items():
        setattr(op, name, value)
    op.claims = {"email": "carol@example.com"}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        assert op.sent("/oidc/userinfo") == []
        me = await whoami(http, flow, back)
        assert me["subject"] == "user:carol@example.com" and me["roles"] == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(401, json={"sub": "u-1", "email": "alice@example.com"}),
        httpx.Response(200, json=[{"sub": "u-1"}]),
        httpx.Response(200, json={"email": "alice@example.com"}),
    ],
    ids=["401", "not-an-object", "no-sub"],
)
async def test_a_userinfo_answer_that_does_not_confirm_the_person_is_refused(
    tmp_path: Path, answer: httpx.Response
) -> None:
    op = FakeOP()
    op.userinfo_answer = answer
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert "Example SSO did not confirm who signed in (UserInfo)." in back.html


async def test_a_userinfo_answer_that_is_not_json_makes_sign_in_unavailable(tmp_path: Path) -> None:
    op = FakeOP()
    op.userinfo_answer = httpx.Response(200, content=b"not json")
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 502 and alert_of(back) == "Cannot reach Example SSO."


# -- the local user and roles (_user) -------------------------------------------------------------------------------


async def test_a_new_person_gets_a_federated_user_record(tmp_path: Path) -> None:
    op = FakeOP()
    op.userinfo = {**op.userinfo, "name": "Alice Liddell"}
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        assert me["subject"] == "user:alice@example.com" and me["username"] == "alice@example.com"
        core = app.runtime.auth.core
        user = await core.run(core.users.by_name, "alice@example.com")
        assert user.federated and not user.disabled
        assert (user.email, user.display_name, user.roles) == ("alice@example.com", "Alice Liddell", {"admin"})


async def test_the_username_falls_back_to_the_subject_and_the_name_to_the_username(tmp_path: Path) -> None:
    upstream = {**UPSTREAM, "username_claim": "preferred_username"}
    op = FakeOP()
    op.userinfo = {"sub": "u-1", "groups": ["mcp-admins"], "name": ["not", "a", "string"], "email": 7}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        assert me["subject"] == "user:u-1" and me["roles"] == ["admin"]
        core = app.runtime.auth.core
        user = await core.run(core.users.by_name, "u-1")
        assert (user.email, user.display_name) == (None, "u-1")


async def test_the_configured_claims_name_the_user_and_carry_the_roles(tmp_path: Path) -> None:
    upstream = {
        **UPSTREAM,
        "username_claim": "preferred_username",
        "roles_claim": "roles",
        "role_map": {"ops": ["operator", "reader"], "mcp-admins": ["admin"]},
        "default_roles": ["member"],
    }
    op = FakeOP()
    op.userinfo = {**op.userinfo, "preferred_username": "alice", "roles": ["ops", "unmapped", 3]}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        # groups (mcp-admins) is not the roles claim here; unmapped and non-string values give nothing.
        assert me["subject"] == "user:alice" and me["roles"] == ["member", "operator", "reader"]


@pytest.mark.parametrize(
    ("groups", "roles"),
    [("mcp-admins", ["admin"]), ([], ["member"]), (None, ["member"]), (["other"], ["member"])],
    ids=["a-single-string", "none", "absent", "unmapped"],
)
async def test_roles_come_from_the_role_map_and_the_default_roles(
    tmp_path: Path, groups: Any, roles: list[str]
) -> None:
    upstream = {**UPSTREAM, "default_roles": ["member"]}
    op = FakeOP()
    op.userinfo = _without_none({**op.userinfo, "groups": groups})
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        assert me["roles"] == sorted({"member", *roles})


async def test_a_returning_person_is_updated_from_the_providers_claims(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        core = app.runtime.auth.core
        first = await core.run(core.users.by_name, "alice@example.com")
        op.userinfo = {"sub": "u-1", "email": "alice@example.com", "groups": [], "name": "Alice L."}
        async with client_for(app) as another_browser:
            flow, back = await sign_in_upstream(app, another_browser, op)
            me = await whoami(another_browser, flow, back)
        assert me["roles"] == []  # the admin group was taken away at the provider
        again = await core.run(core.users.by_name, "alice@example.com")
        assert again.id == first.id and again.display_name == "Alice L." and again.roles == set()
        assert len(await core.run(core.users.list)) == 1


async def test_a_federated_sign_in_never_takes_over_a_local_account_of_the_same_name(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        local = await add_user(app, "alice@example.com", PASSWORD)
        flow, back = await sign_in_upstream(app, http, op)
        me = await whoami(http, flow, back)
        # The federated record is keyed by the provider's issuer and subject, and named after them.
        assert me["subject"] == f"user:{ISSUER} u-1" and me["roles"] == ["admin"]
        core = app.runtime.auth.core
        assert (await core.run(core.users.by_name, "alice@example.com")).id == local.id
        assert (await core.run(core.users.by_name, "alice@example.com")).roles == set()


@pytest.mark.parametrize(
    "email",
    ["alice@Example.COM", "bob@sales.example.org", '"alice@home"@example.com'],
    ids=["upper-case", "second-domain", "quoted-at-in-the-local-part"],
)
async def test_an_allowed_domain_signs_in_whatever_its_case(tmp_path: Path, email: str) -> None:
    upstream = {**UPSTREAM, "allowed_domains": ["example.com", "Sales.Example.org"]}
    op = FakeOP()
    op.userinfo = {**op.userinfo, "email": email}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is not None and "code=" in back.location, back.html


@pytest.mark.parametrize(
    "email",
    ["alice@evil.example", "alice@sub.example.com", "alice@example.com@evil.example", None, 42, ""],
    ids=["other", "subdomain", "two-ats", "absent", "not-a-string", "empty"],
)
async def test_an_email_outside_the_allowed_domains_is_refused(tmp_path: Path, email: Any) -> None:
    upstream = {**UPSTREAM, "allowed_domains": ["example.com"]}
    op = FakeOP()
    op.userinfo = _without_none({**op.userinfo, "email": email})
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert alert_of(back) == "Your account's e-mail domain is not allowed to sign in here."
        core = app.runtime.auth.core
        assert await core.run(core.users.list) == []


async def test_a_disabled_account_cannot_sign_in_through_the_provider(tmp_path: Path) -> None:
    op = FakeOP()
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        await sign_in_upstream(app, http, op)
        core = app.runtime.auth.core
        assert await core.run(core.users.set_disabled, "alice@example.com", True)
        async with client_for(app) as another_browser:
            _, back = await sign_in_upstream(app, another_browser, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert alert_of(back) == "This account is disabled. Ask your administrator."


@pytest.mark.parametrize(
    "jwks",
    [{"keys": []}, {"keys": [{"kty": "RSA", "kid": "k1"}]}, {"keys": "k1"}, ["not", "a", "key set"]],
    ids=["empty", "no-usable-key", "keys-not-a-list", "not-an-object"],
)
async def test_a_key_set_without_usable_keys_fails_the_sign_in_with_a_page(tmp_path: Path, jwks: Any) -> None:
    op = FakeOP()
    op.jwks = jwks
    async with running(tmp_path, auth={"upstream": UPSTREAM}) as app, client_for(app) as http:
        _, back = await sign_in_upstream(app, http, op)
        assert back.location is None and back.status == 403 and "<h1>Sign-in failed</h1>" in back.html
        assert alert_of(back) == "The provider's signing keys are not usable."
