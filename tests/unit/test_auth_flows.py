"""The flows ChatGPT, Claude and other OAuth clients perform against the built-in authorization server,
in-process: registration, sign-in and consent pages, code + PKCE, refresh, revocation, introspection."""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from pathlib import Path

import httpx
import pytest
from fixtures.authflow import (
    BASE,
    CHATGPT_REDIRECT,
    CLAUDE_REDIRECT,
    MCP,
    PASSWORD,
    REDIRECT,
    Flow,
    add_user,
    call,
    client_for,
    running,
    settings,
)
from tests.support.forms import next_form

from patchbay.app import create_app
from patchbay.auth.cimd import MetadataDocuments
from patchbay.outbound import Fetcher

pytestmark = pytest.mark.anyio


async def whoami(http, token: str) -> dict:  # type: ignore[no-untyped-def]
    response = await call(http, token, "tools/call", {"name": "whoami", "arguments": {}})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["isError"] is False, result
    return result["structuredContent"]


async def test_public_client_signs_in_and_its_principal_reaches_the_tool(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app, roles=("sales",))
        flow = Flow(http)
        await flow.register("none")
        tokens = await flow.tokens(scope="mcp")
        assert tokens["token_type"] == "Bearer" and tokens["scope"] == "mcp" and tokens["refresh_token"]
        me = await whoami(http, tokens["access_token"])
    assert me == {
        "subject": "user:alice",
        "kind": "user",
        "username": "alice",
        "client_id": flow.client_id,
        "scopes": ["mcp"],
        "roles": ["sales"],
    }


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
@pytest.mark.parametrize("redirect", [CHATGPT_REDIRECT, "https://chatgpt.com/connector/oauth/cb_123", CLAUDE_REDIRECT])
async def test_confidential_clients_with_chatgpt_and_claude_redirects(
    tmp_path: Path, method: str, redirect: str
) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        registered = await flow.register(method, redirect)
        # RFC 7591 §3.2.1: the method asked for is echoed, with a secret that never expires.
        assert registered["token_endpoint_auth_method"] == method
        assert registered["client_secret"].startswith("pb_cs_") and registered["client_secret_expires_at"] == 0
        code = await flow.code(scope="mcp offline_access")
        response = await flow.redeem(code, auth="basic" if method == "client_secret_basic" else "post")
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        tokens = response.json()
        assert tokens["scope"] == "mcp offline_access"
        await whoami(http, tokens["access_token"])


async def test_authorize_without_scope_gets_the_default_scopes(tmp_path: Path) -> None:
    auth = {"default_scopes": ["mcp"], "scopes_supported": ["mcp", "kb.read"]}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens(scope=None)  # ChatGPT reconnects without scope
        unknown = await flow.tokens(scope="openid email")  # scopes we do not offer are dropped
    assert tokens["scope"] == "mcp"
    assert unknown["scope"] == "mcp"


async def test_asking_only_for_offline_access_gets_the_default_scopes_too(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens(scope="offline_access")
    assert tokens["scope"] == "mcp offline_access" and tokens["refresh_token"]


async def test_a_configured_client_gets_only_its_own_scopes(tmp_path: Path) -> None:
    """`[[auth.clients]] scopes` narrows what that client may be granted below `scopes_supported`."""
    client = {"client_id": "narrow", "name": "Narrow", "redirect_uris": [REDIRECT], "scopes": ["mcp"]}
    auth = {"scopes_supported": ["mcp", "kb.read"], "clients": [client]}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        narrow = await Flow(http, client_id="narrow").tokens(scope="mcp kb.read")
        wide = Flow(http)
        await wide.register()
        both = await wide.tokens(scope="mcp kb.read")
    assert narrow["scope"] == "mcp"
    assert both["scope"] == "mcp kb.read"


async def test_the_code_and_the_denial_are_redirected_with_no_store(tmp_path: Path) -> None:
    """The redirect carrying the code (or the error) must not be cached (RFC 6749 §5.1's rule, applied to
    the redirect as OAuth 2.1 asks for responses carrying credentials)."""
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        granted = await flow.sign_in()
        from tests.support.browser import Browser

        other = Flow(http)  # consent given once is remembered: another client, to be denied
        await other.register()
        denied = await Browser(http, (BASE,), decision="deny").authorize(other.authorize_url())
    assert "code" in granted.params and denied.params["error"] == "access_denied"
    assert granted.status == 302 and granted.headers["cache-control"] == "no-store"
    assert denied.status == 302 and denied.headers["cache-control"] == "no-store"


async def test_a_redirect_uri_with_a_query_keeps_it_and_gets_the_code_appended(tmp_path: Path) -> None:
    redirect = f"{REDIRECT}?tenant=acme&x=1"
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register(redirect_uri=redirect)
        outcome = await flow.sign_in()
        assert outcome.location is not None
        assert outcome.location.startswith(f"{redirect}&code="), outcome.location
        assert outcome.params["tenant"] == "acme" and outcome.params["x"] == "1"
        assert outcome.params["state"] == flow.state
        response = await flow.redeem(outcome.params["code"])
    assert response.status_code == 200, response.text


async def test_a_client_with_one_redirect_uri_may_leave_it_out_and_gets_the_code_there(tmp_path: Path) -> None:
    """RFC 6749 §3.1.2.3: with a single registered redirect URI the request need not name it."""
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        outcome = await flow.sign_in(redirect_uri=None)  # type: ignore[arg-type]
        assert outcome.location is not None and outcome.location.startswith(f"{REDIRECT}?code="), outcome.location
        redeemed = await flow.redeem(outcome.params["code"])
    assert redeemed.status_code == 200, redeemed.text


async def test_a_client_metadata_document_fetched_again_replaces_the_clients_name_and_redirect_uris(
    tmp_path: Path,
) -> None:
    url = "https://client.example/oauth/client.json"

    def documents(name: str, redirect: str) -> MetadataDocuments:
        document = {"client_id": url, "client_name": name, "redirect_uris": [redirect]}
        transport = httpx.MockTransport(lambda _: httpx.Response(200, json=document))
        return MetadataDocuments(Fetcher(transport=transport, resolve=_public_dns))

    async with running(tmp_path) as app, client_for(app) as http:
        authorization = app.runtime.auth.authorization
        authorization.documents = documents("Old name", "https://client.example/old")
        old = await http.get(Flow(http, client_id=url, redirect_uri="https://client.example/old").authorize_url())
        authorization.documents = documents("New name", "https://client.example/new")  # its cache ran out
        new = await http.get(Flow(http, client_id=url, redirect_uri="https://client.example/new").authorize_url())
        stored = app.runtime.auth.core.clients.get(url)
    assert old.status_code == 200 and "<strong>Old name</strong>" in old.text
    assert new.status_code == 200 and "<strong>New name</strong>" in new.text
    assert stored.name == "New name" and stored.redirect_uris == ("https://client.example/new",)


async def _public_dns(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


async def test_refresh_without_scope_rotates_and_keeps_the_grant(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        first = await flow.tokens(scope="mcp docs.write")
        refreshed = await flow.refresh(first["refresh_token"])  # no scope, no resource
        assert refreshed.status_code == 200, refreshed.text
        second = refreshed.json()
        assert second["refresh_token"] != first["refresh_token"]
        assert second["scope"] == first["scope"]
        await whoami(http, second["access_token"])
        narrower = await flow.refresh(second["refresh_token"], scope="mcp", resource=MCP)
        assert narrower.status_code == 200, narrower.text
        assert narrower.json()["scope"] == "mcp"


async def test_consent_is_remembered_per_user_client_and_scopes(tmp_path: Path) -> None:
    async with running(tmp_path, auth={"scopes_supported": ["mcp", "kb.read"]}) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        browser_pages = []
        first = await flow.sign_in(scope="mcp")
        assert "code" in first.params
        # Same browser (cookie jar), same client, same scopes: straight back to the client, no page at all.
        second = await flow.sign_in(scope="mcp")
        assert "code" in second.params
        response = await http.get(flow.authorize_url(scope="mcp"), follow_redirects=False)
        assert response.status_code == 302
        browser_pages.append(response)
        # A new scope asks again.
        wider = await http.get(flow.authorize_url(scope="mcp kb.read"), follow_redirects=False)
        assert wider.status_code == 200 and "Allow access?" in wider.text and "kb.read" in wider.text


async def test_denied_consent_returns_access_denied_with_state_and_iss(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        from tests.support.browser import Browser

        outcome = await Browser(http, (BASE,), decision="deny").authorize(flow.authorize_url())
    assert outcome.params["error"] == "access_denied"
    assert outcome.params["error_description"] == "the user denied access"
    assert outcome.params["state"] == flow.state and outcome.params["iss"] == BASE


async def test_sign_in_pages_are_accessible_and_cannot_be_framed(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register(redirect_uri=CLAUDE_REDIRECT)
        page = await http.get(flow.authorize_url())
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "form-action 'self' https://claude.ai" in page.headers["content-security-policy"]
    assert '<html lang="en">' in page.text and '<label for="username">' in page.text
    assert "Test client" in page.text and "claude.ai" in page.text
    assert "http" not in page.text.split("<style>")[1].split("</style>")[0]  # no external assets


async def test_revocation_and_introspection(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("client_secret_basic")
        tokens = await flow.tokens()
        basic = base64.b64encode(f"{flow.client_id}:{flow.client_secret}".encode()).decode()
        auth = {"authorization": f"Basic {basic}"}
        info = (await http.post("/introspect", data={"token": tokens["access_token"]}, headers=auth)).json()
        assert info["active"] is True and info["aud"] == MCP and info["client_id"] == flow.client_id
        assert info["iss"] == BASE and info["sub"] == "user:alice"
        await whoami(http, tokens["access_token"])  # cached as valid now
        revoked = await http.post("/revoke", data={"token": tokens["refresh_token"]}, headers=auth)
        assert revoked.status_code == 200
        # RFC 7009 §2.1: revoking the refresh token revokes the grant's access token too, at once.
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 401
        info = (await http.post("/introspect", data={"token": tokens["access_token"]}, headers=auth)).json()
        assert info == {"active": False}
        assert (await flow.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"


async def test_api_keys_work_beside_oauth_and_stop_when_revoked(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        keys = app.runtime.auth.core.keys
        _, secret = keys.create("ci", ["mcp", "docs.write"], ["robot"])
        me = await whoami(http, secret)
        assert me["subject"] == "key:ci" and me["kind"] == "api_key" and me["roles"] == ["robot"]
        done = await call(http, secret, "tools/call", {"name": "write_doc", "arguments": {"title": "x"}})
        assert done.json()["result"]["isError"] is False
        keys.revoke("ci")
        assert (await call(http, secret, "tools/list")).status_code == 401


async def test_secrets_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("client_secret_post")
        tokens = await flow.tokens()
        await whoami(http, tokens["access_token"])
        await call(http, tokens["access_token"] + "x", "tools/list")
    text = caplog.text + json.dumps([r.args for r in caplog.records], default=str)
    for secret in (tokens["access_token"], tokens["refresh_token"], flow.client_secret or "-", "correct horse"):
        assert secret not in text


async def test_a_registration_answers_the_client_its_id_and_secret_and_is_audited(tmp_path: Path) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.clock = lambda: 1_800_000_000.25
        core.audit = lambda method, **fields: events.append((method, fields))
        body = {"redirect_uris": [CLAUDE_REDIRECT], "client_name": "Claude", "token_endpoint_auth_method": "none"}
        public = await http.post("/register", json=body)
        confidential = await http.post("/register", json={**body, "token_endpoint_auth_method": "client_secret_post"})
        refused = await http.post("/register", json={**body, "redirect_uris": []})
        stored = core.clients.get(confidential.json()["client_id"])
    for answer in (public, confidential, refused):
        assert answer.headers["cache-control"] == "no-store" and answer.headers["access-control-allow-origin"] == "*"
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_redirect_uri"
    assert public.status_code == 201
    registered = public.json()
    client_id = registered.pop("client_id")
    assert client_id.startswith("pb_client_") and len(client_id) == 40
    assert registered == {
        "redirect_uris": [CLAUDE_REDIRECT],
        "client_name": "Claude",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "client_id_issued_at": 1_800_000_000,
    }
    secret = confidential.json()["client_secret"]
    assert confidential.json()["client_secret_expires_at"] == 0
    assert stored is not None and stored.auth_method == "client_secret_post" and stored.name == "Claude"
    assert stored.kind == "dcr" and stored.redirect_uris == (CLAUDE_REDIRECT,) and stored.secret_hash != secret
    assert events == [
        ("auth.client_registered", {"client_id": client_id, "client_name": "Claude", "outcome": "ok"}),
        (
            "auth.client_registered",
            {"client_id": confidential.json()["client_id"], "client_name": "Claude", "outcome": "ok"},
        ),
    ]


async def test_registrations_that_never_got_a_token_are_pruned_after_the_configured_days(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    body = {"redirect_uris": [CLAUDE_REDIRECT], "token_endpoint_auth_method": "none"}
    async with running(tmp_path, auth={"unused_client_days": 2}) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.clock = lambda: now[0]
        await add_user(app)
        unused = (await http.post("/register", json=body)).json()["client_id"]
        flow = Flow(http)
        await flow.register(redirect_uri=CLAUDE_REDIRECT)
        await core.run(core.clients.touch, flow.client_id)  # it obtained a token
        now[0] += 2 * 86_400
        await http.post("/register", json=body)
        assert core.clients.get(unused) is not None  # exactly the configured age: kept
        now[0] += 1
        await http.post("/register", json=body)
        assert core.clients.get(unused) is None
        assert core.clients.get(flow.client_id) is not None


async def test_unused_registrations_older_than_the_configured_days_are_pruned_when_the_server_starts(
    tmp_path: Path,
) -> None:
    days = 1000  # a long age, so that being off by a second a day would be off by minutes
    body = {"redirect_uris": [CLAUDE_REDIRECT], "token_endpoint_auth_method": "none"}
    async with running(tmp_path, auth={"unused_client_days": days}) as app, client_for(app) as http:
        core, now = app.runtime.auth.core, time.time()
        core.clock = lambda: now - days * 86_400 - 300
        old = (await http.post("/register", json=body)).json()["client_id"]
        core.clock = lambda: now - days * 86_400 + 300
        young = (await http.post("/register", json=body)).json()["client_id"]
        assert core.clients.get(old) is not None and core.clients.get(young) is not None
    async with running(tmp_path, auth={"unused_client_days": days}) as app:
        core = app.runtime.auth.core
        assert core.clients.get(old) is None and core.clients.get(young) is not None


async def test_a_client_registered_without_the_refresh_grant_gets_no_refresh_token_and_keeps_its_metadata(
    tmp_path: Path,
) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register(grant_types=["authorization_code"], client_uri="https://app.example", software_id="app-1")
        tokens = await flow.tokens(scope="mcp")
        stored = app.runtime.auth.core.clients.get(flow.client_id)
    assert tokens["access_token"] and "refresh_token" not in tokens
    assert stored is not None and stored.grant_types == ("authorization_code",)
    assert stored.metadata == {
        "client_uri": "https://app.example",
        "software_id": "app-1",
        "grant_types": ["authorization_code"],
    }


async def test_an_api_key_holder_introspects_api_keys_and_every_clients_tokens(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        now = time.time() + 0.75
        core.clock = lambda: now
        await add_user(app)
        flow = Flow(http)
        await flow.register("none")
        tokens = await flow.tokens(scope="mcp")
        _, ops = core.keys.create("ops", ["mcp"])
        _, ci = core.keys.create("ci", ["mcp", "docs.write"])
        auth = {"authorization": f"Bearer {ops}"}
        key = await http.post("/introspect", data={"token": ci}, headers=auth)
        access = await http.post("/introspect", data={"token": tokens["access_token"]}, headers=auth)
        refresh = (await http.post("/introspect", data={"token": tokens["refresh_token"]}, headers=auth)).json()
    assert key.status_code == 200 and key.headers["cache-control"] == "no-store"
    assert key.headers["access-control-allow-origin"] == "*"
    described = key.json()
    assert set(described.pop("scope").split()) == {"mcp", "docs.write"}
    assert described == {"active": True, "token_type": "api_key", "sub": "key:ci"}
    assert access.json() == {
        "active": True,
        "scope": "mcp",
        "client_id": flow.client_id,
        "username": "alice",
        "sub": "user:alice",
        "token_type": "Bearer",
        "aud": MCP,
        "iss": BASE,
        "iat": int(now),
        "exp": int(now) + 3600,
    }
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    assert refresh["exp"] == int(now) + 30 * 86_400


async def test_a_client_learns_nothing_of_api_keys_or_of_another_clients_tokens(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        owner, other = Flow(http), Flow(http)
        await owner.register("none")
        await other.register("client_secret_post")
        tokens = await owner.tokens()
        _, key = app.runtime.auth.core.keys.create("ci", ["mcp"])
        secret = {"client_id": other.client_id, "client_secret": other.client_secret or ""}
        for token in (tokens["access_token"], tokens["refresh_token"], key):
            response = await http.post("/introspect", data={"token": token, **secret})
            assert response.status_code == 200
            assert response.json() == {"active": False}


async def test_introspection_needs_a_confidential_client_or_a_live_api_key(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("none")
        tokens = await flow.tokens()
        public = await http.post("/introspect", data={"token": tokens["access_token"], "client_id": flow.client_id})
        unknown = await http.post(
            "/introspect", data={"token": tokens["access_token"]}, headers={"authorization": "Bearer pb_key_nope"}
        )
    assert public.status_code == 401 and public.json() == {
        "error": "invalid_client",
        "error_description": "introspection needs a confidential client or an API key",
    }
    assert unknown.status_code == 401 and unknown.json()["error_description"] == "unknown or revoked API key"


async def test_introspection_without_a_token_or_with_too_many_fields_is_invalid_request(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        _, key = app.runtime.auth.core.keys.create("ops", ["mcp"])
        auth = {"authorization": f"Bearer {key}"}
        missing = await http.post("/introspect", data={"token": ""}, headers=auth)
        fields = {"token": key, **{f"f{i}": "x" for i in range(20)}}
        crowded = await http.post("/introspect", data=fields, headers=auth)
    assert missing.status_code == 400 and missing.json() == {
        "error": "invalid_request",
        "error_description": "send the token to introspect in the token parameter",
    }
    assert crowded.status_code == 400 and crowded.json()["error_description"] == "the form has more than 20 fields"


async def test_the_consent_page_names_the_user_by_their_display_name(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        await core.run(core.users.add, "alice", PASSWORD, display_name="Alice Liddell")
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        consent = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    assert consent.status_code == 200 and "Signed in as <strong>Alice Liddell</strong>." in consent.text


async def test_consent_posted_before_signing_in_is_refused_with_a_page_saying_so(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        fields = {**form.filled("alice", PASSWORD, "allow"), "decision": "allow"}
        refused = await http.post("/authorize/consent", data=fields)
    assert refused.status_code == 403
    assert '<h1>Not signed in</h1><p role="alert">Sign in first. Start again from your app.</p>' in refused.text


async def test_the_browser_session_cookie_lasts_eight_hours(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        signed_in = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    session = [c for c in signed_in.headers.get_list("set-cookie") if c.startswith("patchbay_session=")]
    assert len(session) == 1 and "Max-Age=28800" in session[0], session


@pytest.mark.parametrize("public_url", [BASE, "https://mcp.example.com"])
async def test_the_sign_in_cookies_stay_on_authorize_out_of_scripts_and_are_secure_over_https(
    tmp_path: Path, public_url: str
) -> None:
    config = settings(tmp_path)
    app = create_app(config.model_copy(update={"server": config.server.model_copy(update={"public_url": public_url})}))
    await app.runtime.start()
    try:
        await add_user(app)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public_url) as http:
            flow = Flow(http)
            await flow.register()
            page = await http.get(flow.authorize_url(resource=f"{public_url}/mcp"))
            form = next_form(page.text)
            assert form is not None, page.text
            signed_in = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    finally:
        app.sessions.close_all()
        await app.runtime.stop()
    cookies = [_cookie(c) for c in [*page.headers.get_list("set-cookie"), *signed_in.headers.get_list("set-cookie")]]
    shared = {"HttpOnly", "Path=/authorize", "SameSite=lax"} | ({"Secure"} if public_url.startswith("https") else set())
    # The CSRF cookie is named after the request it guards, so two sign-ins in one browser keep their own.
    (csrf,) = [name for name, _ in cookies if name.startswith("patchbay_csrf_")]
    assert re.fullmatch("patchbay_csrf_[0-9a-f]{16}", csrf)
    assert dict(cookies) == {
        csrf: shared | {"Max-Age=600"},
        "patchbay_session": shared | {"Max-Age=28800"},
        "patchbay_device": shared | {"Max-Age=7776000"},
    }


def _cookie(header: str) -> tuple[str, set[str]]:
    """A Set-Cookie header's name and attributes (its value left out)."""
    pair, *attributes = header.split("; ")
    return pair.split("=", 1)[0], set(attributes)
