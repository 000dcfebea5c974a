"""Every refusal the issue lists, each with the RFC's error, and each leaving everything else as it was."""

from __future__ import annotations

from html import escape, unescape
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
from fixtures.authflow import BASE, PASSWORD, REDIRECT, Flow, add_user, call, client_for, running
from sqlalchemy import update
from tests.support.forms import next_form

from patchbay.auth.access import ToolAccessPolicy
from patchbay.auth.cimd import MetadataDocuments
from patchbay.auth.crypto import pkce_matches, s256
from patchbay.auth.pages import DISABLED, REFUSED
from patchbay.auth.principal import Principal
from patchbay.catalog import ToolAccess
from patchbay.outbound import Fetcher
from patchbay.store.models import AuthToken, AuthUser

pytestmark = pytest.mark.anyio


async def test_wrong_pkce_verifier_is_invalid_grant_and_the_code_still_works(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        code = await flow.code()
        wrong = await flow.redeem(code, code_verifier="x" * 43)
        assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
        assert (await flow.redeem(code)).status_code == 200


async def test_replayed_code_is_refused_and_revokes_what_it_issued(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        code = await flow.code()
        first = (await flow.redeem(code)).json()
        assert (await call(http, first["access_token"], "tools/list")).status_code == 200
        replay = await flow.redeem(code)
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # The very next request: the access token was verified (and cached) above, and must not outlive the grant.
        assert (await call(http, first["access_token"], "tools/list")).status_code == 401
        assert (await flow.refresh(first["refresh_token"])).json()["error"] == "invalid_grant"


async def test_reused_refresh_token_revokes_the_grant(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        first = await flow.tokens()
        second = (await flow.refresh(first["refresh_token"])).json()
        assert (await call(http, second["access_token"], "tools/list")).status_code == 200
        reuse = await flow.refresh(first["refresh_token"])
        assert reuse.status_code == 400 and reuse.json()["error"] == "invalid_grant"
        assert (await call(http, second["access_token"], "tools/list")).status_code == 401


async def test_redirect_uri_mismatch_is_never_redirected_to(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        page = await http.get(flow.authorize_url(redirect_uri="https://evil.example/cb"), follow_redirects=False)
        assert page.status_code == 400 and "location" not in page.headers
        # A loopback redirect matches on any port (RFC 8252 §7.3), but not on another path.
        other_port = await http.get(flow.authorize_url(redirect_uri="http://127.0.0.1:4321/callback"))
        assert other_port.status_code == 200
        other_path = await http.get(flow.authorize_url(redirect_uri="http://127.0.0.1:9999/other"))
        assert other_path.status_code == 400
        code = await flow.code()
        mismatch = await flow.redeem(code, redirect_uri="http://127.0.0.1:9999/other")
        assert mismatch.json()["error"] == "invalid_grant"


async def test_unknown_client_is_refused_at_authorize_and_token(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http, client_id="pb_client_nobody")
        page = await http.get(flow.authorize_url(), follow_redirects=False)
        assert page.status_code == 400 and "Unknown application" in page.text
        token = await flow.redeem("pb_ac_whatever")
        # Claude re-registers when the token endpoint says 401 invalid_client.
        assert token.status_code == 401 and token.json()["error"] == "invalid_client"


async def test_wrong_client_secret_is_invalid_client(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register("client_secret_basic")
        code = await flow.code()
        flow.client_secret = "pb_cs_wrong"
        refused = await flow.redeem(code, auth="basic")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_client"
        assert refused.headers["www-authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
    ],
)
async def test_bad_authorization_requests_from_a_configured_client_go_back_with_the_error(
    tmp_path: Path, params: dict, error: str
) -> None:
    configured = {"clients": [{"client_id": "operator-app", "name": "Operator app", "redirect_uris": [REDIRECT]}]}
    async with running(tmp_path, auth=configured) as app, client_for(app) as http:
        flow = Flow(http, client_id="operator-app")
        response = await http.get(flow.authorize_url(**params), follow_redirects=False)
    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(REDIRECT) and f"error={error}" in location
    assert f"state={flow.state}" in location and "iss=http" in location


PKCE_NEEDED = "PKCE is required: send code_challenge with code_challenge_method=S256"


async def test_a_configured_clients_bad_requests_go_back_saying_what_to_fix(tmp_path: Path) -> None:
    configured = {"clients": [{"client_id": "operator-app", "name": "Operator app", "redirect_uris": [REDIRECT]}]}
    cases = {
        "plain PKCE": {"code_challenge_method": "plain"},
        "no PKCE": {"code_challenge": None, "code_challenge_method": None},
        "malformed challenge": {"code_challenge": "too-short"},
        "implicit": {"response_type": "token"},
        "other resource": {"resource": "https://other.example/mcp"},
    }
    async with running(tmp_path, auth=configured) as app, client_for(app) as http:
        flow = Flow(http, client_id="operator-app")
        answers = {
            case: await http.get(flow.authorize_url(state="s-1", **params), follow_redirects=False)
            for case, params in cases.items()
        }
    said = {case: dict(parse_qsl(urlsplit(a.headers["location"]).query)) for case, a in answers.items()}
    pkce = {"error": "invalid_request", "error_description": PKCE_NEEDED, "state": "s-1", "iss": BASE}
    assert said == {
        "plain PKCE": pkce,
        "no PKCE": pkce,
        "malformed challenge": pkce,
        "implicit": {
            "error": "unsupported_response_type",
            "error_description": "only response_type=code is supported",
            "state": "s-1",
            "iss": BASE,
        },
        "other resource": {
            "error": "invalid_target",
            "error_description": f"resource must be this server's MCP URL, {BASE}/mcp",
            "state": "s-1",
            "iss": BASE,
        },
    }


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
    ],
)
async def test_bad_authorization_requests_from_a_registered_client_show_a_page_and_never_redirect(
    tmp_path: Path, params: dict, error: str
) -> None:
    # RFC 9700 §4.11.2: anyone can register any redirect URI, so /authorize would be an open redirect.
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register(redirect_uri="https://attacker.example/landing")
        response = await http.get(flow.authorize_url(**params), follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert f"({error})" in response.text and "attacker.example" not in response.text


def _page_says(page: httpx.Response) -> tuple[int, str, str] | None:
    """An error page's status, title and message, read from its heading and alert (the title tag must agree)."""
    text = page.text
    if "location" in page.headers or '<p role="alert">' not in text:
        return None
    title = text[text.index("<h1>") + 4 : text.index("</h1>")]
    message = text[text.index('<p role="alert">') + 16 : text.index("</p>", text.index('<p role="alert">'))]
    assert f"<title>{title}</title>" in text
    return page.status_code, unescape(title), unescape(message)


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


async def test_authorize_requests_it_cannot_start_get_a_page_saying_why(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        flow = Flow(http)
        await flow.register()
        two = Flow(http)
        await two.register(redirect_uris=[REDIRECT, "http://127.0.0.1:9999/other"])
        gone = Flow(http)
        await gone.register()
        core.clients.revoke(gone.client_id)
        liar = Flow(http, client_id="https://liar.example/client.json", redirect_uri="https://liar.example/cb")
        lie = {"client_id": "https://other.example/c", "redirect_uris": ["https://liar.example/cb"]}
        app.runtime.auth.authorization.documents = MetadataDocuments(
            Fetcher(transport=httpx.MockTransport(lambda _: httpx.Response(200, json=lie)), resolve=_public)
        )
        pages = {
            "no client_id": await http.get("/authorize?response_type=code"),
            "unknown client": await http.get(Flow(http, client_id="pb_client_nobody").authorize_url()),
            "revoked client": await http.get(gone.authorize_url()),
            "invalid metadata document": await http.get(liar.authorize_url()),
            "unregistered redirect": await http.get(flow.authorize_url(redirect_uri="https://evil.example/cb")),
            "no redirect, two registered": await http.get(two.authorize_url(redirect_uri=None)),  # type: ignore[arg-type]
            "bad request": await http.get(flow.authorize_url(response_type="token")),
        }
    said = {case: _page_says(page) for case, page in pages.items()}
    no_redirect = (400, "Cannot sign in", "redirect_uri is missing or is not registered for this application.")
    unknown = (400, "Unknown application", "This application is not registered here (or was removed).")
    assert said == {
        "no client_id": (400, "Cannot sign in", "The request names no client_id. Start again from your app."),
        "unknown client": unknown,
        "revoked client": unknown,
        "invalid metadata document": (
            400,
            "Unknown application",
            "the client metadata document's client_id is not its own URL",
        ),
        "unregistered redirect": no_redirect,
        "no redirect, two registered": no_redirect,
        "bad request": (
            400,
            "Cannot sign in",
            "Test client sent a request this server cannot accept: only response_type=code is supported "
            "(unsupported_response_type). Start again from your app.",
        ),
    }


async def test_with_metadata_documents_off_a_url_client_id_is_an_unknown_application(tmp_path: Path) -> None:
    async with running(tmp_path, auth={"client_metadata_documents": False}) as app, client_for(app) as http:
        flow = Flow(
            http, client_id="https://client.example/oauth/client.json", redirect_uri="https://client.example/cb"
        )
        page = await http.get(flow.authorize_url())
    assert _page_says(page) == (400, "Unknown application", "This application is not registered here (or was removed).")


async def test_forms_for_a_request_that_is_gone_or_was_opened_elsewhere_get_a_page_saying_so(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        data = (await flow.login_form()).filled("alice", PASSWORD, "allow")
        pages = {
            "no request": await http.post("/authorize/login", data={"username": "alice", "password": PASSWORD}),
            "unknown request": await http.post("/authorize/login", data={**data, "request": "nope"}),
            "other csrf": await http.post("/authorize/login", data={**data, "csrf": "x" * 43}),
        }
        core.clients.revoke(flow.client_id)
        pages["client removed"] = await http.post("/authorize/login", data=data)
    said = {case: _page_says(page) for case, page in pages.items()}
    expired = (400, "Sign-in expired", "This sign-in request has expired. Start again from your app.")
    assert said == {
        "no request": expired,
        "unknown request": expired,
        "other csrf": (403, "Form expired", "This form was not opened in this browser. Start again."),
        "client removed": (400, "Unknown application", "This application was removed."),
    }


async def test_expired_and_wrong_audience_tokens_are_401(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.clock = lambda: now[0]
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens()
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200
        now[0] += 3601
        expired = await call(http, tokens["access_token"], "tools/list")
        assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["www-authenticate"]
        fresh = (await flow.refresh(tokens["refresh_token"])).json()
        with core.engine.begin() as connection:
            connection.execute(update(AuthToken).values(resource="https://other.example/mcp"))
        assert (await call(http, fresh["access_token"], "tools/list")).status_code == 401


async def test_resource_on_token_request_must_match(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        code = await flow.code()
        wrong = await flow.redeem(code, resource="https://other.example/mcp")
        assert wrong.json()["error"] == "invalid_target"
        assert (await flow.redeem(code)).status_code == 200


async def test_insufficient_scope_is_a_tool_level_challenge(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens(scope="mcp")
        response = await call(
            http, tokens["access_token"], "tools/call", {"name": "write_doc", "arguments": {"title": "x"}}
        )
        result = response.json()["result"]
        assert result["isError"] is True
        (challenge,) = result["_meta"]["mcp/www_authenticate"]
        assert 'error="insufficient_scope"' in challenge and "error_description=" in challenge
        assert 'scope="mcp docs.write"' in challenge
        assert f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"' in challenge
        # Step up: sign in again for docs.write, then the call goes through.
        wider = await flow.tokens(scope="mcp docs.write")
        done = await call(http, wider["access_token"], "tools/call", {"name": "write_doc", "arguments": {"title": "x"}})
        assert done.json()["result"]["isError"] is False


async def test_server_wide_required_scope_is_403(tmp_path: Path) -> None:
    auth = {"scopes_supported": ["mcp", "admin"], "required_scopes": ["admin"]}
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens(scope="mcp")
        response = await call(http, tokens["access_token"], "tools/list")
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    assert 'scope="admin mcp"' in response.headers["www-authenticate"]


async def test_repeated_bad_passwords_lock_the_account(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    async with running(tmp_path, auth={"login_attempts": 3, "lockout_seconds": 600}) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.clock = lambda: now[0]
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        for _ in range(3):
            refused = await flow.sign_in(password="wrong password")
            assert refused.location is None and refused.status == 401
        locked = await flow.sign_in()  # the right password, during the lockout
        assert locked.location is None and locked.status == 401
        assert _error_text(locked.html) == _error_text(refused.html)  # a lock is not told apart from a typo
        with core.engine.connect() as connection:
            assert connection.execute(AuthUser.__table__.select()).one().disabled is False
        now[0] += 601
        assert "code" in (await flow.sign_in(password=PASSWORD)).params


async def test_login_form_from_another_browser_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        http.cookies.clear()  # a cross-site POST would not carry our CSRF cookie
        data = form.filled("alice", PASSWORD, "allow")
        response = await http.post("/authorize/login", data=data, follow_redirects=False)
    assert response.status_code == 403 and "location" not in response.headers


async def test_with_local_sign_in_off_a_posted_password_is_refused_even_when_right(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        app.runtime.auth.authorization.local_login = False
        refused = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    assert refused.status_code == 400 and "location" not in refused.headers
    assert _error_text(refused.text) == escape("Sign in with your organisation's account.")
    assert next_form(refused.text) is not None  # the sign-in page again, for the same request
    assert refused.headers.get_list("set-cookie") == []


async def test_a_csrf_cookie_planted_in_the_browser_does_not_stand_in_for_the_pages_token(tmp_path: Path) -> None:
    # Someone able to set a cookie for this host (a sibling subdomain) must still not forge the form.
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        (name,) = [n for n in http.cookies if n.startswith("patchbay_csrf_")]
        http.cookies.clear()
        http.cookies.set(name, "planted-value", path="/authorize")
        data = {**form.filled("alice", PASSWORD, "allow"), "csrf": "planted-value"}
        refused = await http.post("/authorize/login", data=data, follow_redirects=False)
    assert refused.status_code == 403 and "Form expired" in refused.text


async def test_a_sign_in_form_with_more_than_ten_fields_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form()
        data = form.filled("alice", PASSWORD, "allow")
        ten = await http.post("/authorize/login", data={**data, **{f"x{i}": "1" for i in range(10 - len(data))}})
        form = await flow.login_form()
        data = form.filled("alice", PASSWORD, "allow")
        eleven = await http.post("/authorize/login", data={**data, **{f"x{i}": "1" for i in range(11 - len(data))}})
    assert ten.status_code == 200 and "Allow access?" in ten.text
    assert eleven.status_code == 400
    assert eleven.json() == {"error": "invalid_request", "error_description": "the form has more than 10 fields"}


async def test_only_the_right_password_learns_that_an_account_is_disabled(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        app.runtime.auth.core.users.set_disabled("alice", True)
        flow = Flow(http)
        await flow.register()
        wrong = await flow.sign_in(password="wrong password")
        right = await flow.sign_in()
    assert wrong.status == right.status == 401 and wrong.location is None and right.location is None
    assert _error_text(wrong.html) == escape(REFUSED)
    assert _error_text(right.html) == escape(DISABLED)


async def test_sign_ins_are_audited_with_the_name_tried_the_outcome_and_the_address_never_the_password(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    async with running(tmp_path) as app:
        app.runtime.auth.core.audit = lambda method, **fields: events.append((method, fields))
        await add_user(app)
        known = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
        nowhere = httpx.ASGITransport(app=app, client=None)  # type: ignore[arg-type]  # a Unix socket
        async with httpx.AsyncClient(transport=known, base_url=BASE) as http:
            flow = Flow(http)
            await flow.register()
            form = await flow.login_form()
            for username, password in [("  alice ", "wrong password"), ("", "wrong password"), ("x" * 120, PASSWORD)]:
                await http.post("/authorize/login", data=form.filled(username, password, "allow"))
            signed_in = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
        async with httpx.AsyncClient(transport=nowhere, base_url=BASE) as http:
            elsewhere = Flow(http, client_id=flow.client_id)
            form = await elsewhere.login_form()
            await http.post("/authorize/login", data=form.filled("bob", "wrong password", "allow"))
    assert signed_in.status_code == 200
    assert [f for m, f in events if m == "auth.sign_in"] == [
        {"username": "alice", "outcome": "invalid", "address": "198.51.100.7"},
        {"username": "", "outcome": "invalid", "address": "198.51.100.7"},
        {"username": "x" * 100, "outcome": "invalid", "address": "198.51.100.7"},
        {"username": "alice", "outcome": "ok", "address": "198.51.100.7", "client_id": flow.client_id},
        {"username": "bob", "outcome": "invalid", "address": "unknown"},
    ]
    assert PASSWORD not in repr(events) and "wrong password" not in repr(events)


async def test_disabled_user_cannot_sign_in_and_loses_tokens(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        tokens = await flow.tokens()
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 200
        core = app.runtime.auth.core
        core.users.set_disabled("alice", True)
        assert (await call(http, tokens["access_token"], "tools/list")).status_code == 401
        assert (await flow.refresh(tokens["refresh_token"])).json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("metadata", "error", "says"),
    [
        ({"redirect_uris": ["http://evil.example/cb"]}, "invalid_redirect_uri", "loopback"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri", "javascript"),
        ({"redirect_uris": []}, "invalid_redirect_uri", "1 to 20"),
        (
            {"redirect_uris": ["https://ok.example/cb"], "token_endpoint_auth_method": "private_key_jwt"},
            "invalid_client_metadata",
            "token_endpoint_auth_method 'private_key_jwt' is not supported",
        ),
        (
            {"redirect_uris": ["https://ok.example/cb"], "grant_types": ["client_credentials"]},
            "invalid_client_metadata",
            "grant_types",
        ),
        (
            {"redirect_uris": ["https://ok.example/cb"], "grant_types": ["refresh_token"]},
            "invalid_client_metadata",
            "grant_types",
        ),
    ],
)
async def test_registration_rejects_bad_metadata(tmp_path: Path, metadata: dict, error: str, says: str) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        response = await http.post("/register", json=metadata)
        assert response.status_code == 400
        assert response.json()["error"] == error and says in response.json()["error_description"]
        assert app.runtime.auth.core.clients.list() == []


async def test_registration_is_rate_limited_per_address(tmp_path: Path) -> None:
    body = {"redirect_uris": ["https://ok.example/cb"], "token_endpoint_auth_method": "none"}
    async with running(tmp_path, auth={"registration_per_minute": 3}) as app, client_for(app) as http:
        answers = [(await http.post("/register", json=body)).status_code for _ in range(4)]
        assert answers == [201, 201, 201, 429]
        assert len(app.runtime.auth.core.clients.list()) == 3


async def test_a_refused_registration_says_when_to_retry_and_another_address_keeps_its_own_budget(
    tmp_path: Path,
) -> None:
    body = {"redirect_uris": ["https://ok.example/cb"], "token_endpoint_auth_method": "none"}
    async with running(tmp_path, auth={"registration_per_minute": 1}) as app:
        first = httpx.ASGITransport(app=app, client=("198.51.100.7", 40000))
        second = httpx.ASGITransport(app=app, client=("198.51.100.8", 40000))
        async with (
            httpx.AsyncClient(transport=first, base_url=BASE) as one,
            httpx.AsyncClient(transport=second, base_url=BASE) as other,
        ):
            assert (await one.post("/register", json=body)).status_code == 201
            refused = await one.post("/register", json=body)
            assert (await other.post("/register", json=body)).status_code == 201
        assert len(app.runtime.auth.core.clients.list()) == 2
    assert refused.status_code == 429
    assert refused.json() == {
        "error": "invalid_request",
        "error_description": "too many registrations; try again in a minute",
    }
    assert refused.headers["retry-after"] == "60" and refused.headers["access-control-allow-origin"] == "*"


async def test_registrations_from_no_known_address_share_one_budget(tmp_path: Path) -> None:
    body = {"redirect_uris": ["https://ok.example/cb"], "token_endpoint_auth_method": "none"}
    async with running(tmp_path, auth={"registration_per_minute": 1}) as app:
        # An ASGI server gives no client address for a connection over a Unix socket.
        transport = httpx.ASGITransport(app=app, client=None)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            answers = [(await http.post("/register", json=body)).status_code for _ in range(2)]
    assert answers == [201, 429]


def _error_text(html: str) -> str:
    start = html.index('id="login-error">') + len('id="login-error">')
    return html[start : html.index("</p>", start)]


async def test_token_requests_missing_what_their_grant_needs_say_what(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register()
        answers = {
            "no verifier": await flow.token(grant_type="authorization_code", code="pb_ac_x"),
            "no code": await flow.token(grant_type="authorization_code", code_verifier="v" * 43),
            "no refresh token": await flow.token(grant_type="refresh_token"),
            "password grant": await flow.token(grant_type="password", username="alice", password=PASSWORD),
            "no grant": await flow.token(code="pb_ac_x"),
            "other resource": await flow.redeem("pb_ac_x", resource="https://other.example/mcp"),
            "one of two resources": await flow.token(
                grant_type="refresh_token", refresh_token="pb_rt_x", resource="https://other.example/mcp"
            ),
        }
    said = {case: (r.status_code, r.json()) for case, r in answers.items()}
    code_needs = {"error": "invalid_request", "error_description": "authorization_code needs code and code_verifier"}
    unsupported = {"error": "unsupported_grant_type", "error_description": "use authorization_code or refresh_token"}
    target = {
        "error": "invalid_target",
        "error_description": f"resource must be this server's MCP URL, {BASE}/mcp",
    }
    assert said == {
        "no verifier": (400, code_needs),
        "no code": (400, code_needs),
        "no refresh token": (
            400,
            {"error": "invalid_request", "error_description": "refresh_token grant needs refresh_token"},
        ),
        "password grant": (400, unsupported),
        "no grant": (400, unsupported),
        "other resource": (400, target),
        "one of two resources": (400, target),
    }
    assert all(r.headers["cache-control"] == "no-store" for r in answers.values())


async def test_issued_and_refreshed_tokens_are_audited_mark_the_client_used_and_are_never_cached(
    tmp_path: Path,
) -> None:
    events: list[tuple[str, dict[str, object]]] = []
    async with running(tmp_path) as app, client_for(app) as http:
        core = app.runtime.auth.core
        core.audit = lambda method, **fields: events.append((method, fields))
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        assert core.clients.get(flow.client_id).last_used_at is None
        response = await flow.redeem(await flow.code())
        assert core.clients.get(flow.client_id).last_used_at is not None
        refreshed = await flow.refresh(response.json()["refresh_token"])
    for answer in (response, refreshed):
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store" and answer.headers["pragma"] == "no-cache"
        assert answer.headers["access-control-allow-origin"] == "*"
    tokens = [(m, f) for m, f in events if m.startswith("auth.token")]
    assert tokens == [
        ("auth.token_issued", {"client_id": flow.client_id, "outcome": "ok"}),
        ("auth.token_refreshed", {"client_id": flow.client_id, "outcome": "ok"}),
    ]


PRM = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"


def test_a_token_lacking_tool_scopes_gets_a_permission_challenge_naming_each_missing_scope() -> None:
    policy = ToolAccessPolicy(PRM, ("mcp",), advertise=True)
    caller = Principal("user:alice", "user", scopes=frozenset({"mcp"}))
    refusal = policy.denied("write_doc", ToolAccess(scopes=("docs.write", "docs.admin")), caller)
    needs = "The tool 'write_doc' needs the scope(s): docs.write docs.admin"
    assert refusal == {
        "content": [{"type": "text", "text": f"Permission required: {needs}. Sign in again to grant it."}],
        "isError": True,
        "_meta": {
            "mcp/www_authenticate": [
                f'Bearer resource_metadata="{PRM}", scope="mcp docs.write docs.admin", '
                f'error="insufficient_scope", error_description="{needs}"'
            ]
        },
    }


def test_an_anonymous_caller_gets_a_sign_in_challenge_for_the_tools_scopes_or_the_default_ones() -> None:
    policy = ToolAccessPolicy(None, ("mcp", "kb.read"), advertise=True)
    own = policy.denied("search", ToolAccess(scopes=("kb.search", "kb.read")), None)
    default = policy.denied("search", ToolAccess(), None)
    text = [{"type": "text", "text": "Authentication required: you need to sign in to use this tool."}]
    assert own == {
        "content": text,
        "isError": True,
        "_meta": {
            "mcp/www_authenticate": [
                'Bearer scope="kb.search kb.read", error="insufficient_scope", '
                'error_description="You need to sign in to use this tool"'
            ]
        },
    }
    assert default is not None
    (challenge,) = default["_meta"]["mcp/www_authenticate"]
    assert challenge.startswith('Bearer scope="mcp kb.read", ')


def test_public_tools_and_tools_without_access_rules_are_never_refused_by_scope() -> None:
    policy = ToolAccessPolicy(PRM, ("mcp",), advertise=True)
    assert policy.denied("search", ToolAccess(scopes=("kb.search",), public=True), None) is None
    assert policy.denied("search", None, None) is None
    caller = Principal("user:alice", "user", scopes=frozenset({"mcp", "kb.search"}))
    assert policy.denied("search", ToolAccess(scopes=("kb.search",)), caller) is None


def test_pkce_refuses_a_verifier_outside_rfc_7636_even_when_its_s256_matches() -> None:
    for verifier in ("a" * 42, "a" * 129, "a" * 42 + "!"):
        assert not pkce_matches(verifier, s256(verifier)), verifier
    for verifier in ("a" * 43, "A-._~" * 25 + "z09"):
        assert pkce_matches(verifier, s256(verifier)), verifier
