"""The sign-in, consent and error pages of ``/authorize`` as a browser gets them: what they say, how their fields
are labelled, and the headers that keep them out of frames, caches, MIME sniffing and referrers."""

from __future__ import annotations

from html import escape
from pathlib import Path

import httpx
import pytest
from fixtures.authflow import PASSWORD, Flow, add_user, client_for, running
from tests.support.forms import Form, next_form

from patchbay.auth.cimd import MetadataDocuments
from patchbay.auth.pages import REFUSED
from patchbay.outbound import Fetcher

pytestmark = pytest.mark.anyio

HEAD = (
    '<!doctype html><html lang="en"><head><meta charset="utf-8">'
    '<meta name="viewport" content="width=device-width,initial-scale=1">'
)
WHO = (
    "<p><strong>Test client</strong> wants to use Patchbay test on your behalf. "
    "After you agree you are sent back to <code>127.0.0.1:9999</code>.</p>"
)
CIMD_URL = "https://client.example/oauth/client.json"


def policy(*targets: str) -> dict[str, str]:
    """The headers every page carries; form-action names the origins its forms may end up at."""
    action = " ".join(["'self'", *targets])
    return {
        "content-security-policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {action}; "
            "frame-ancestors 'none'; base-uri 'none'"
        ),
        "x-frame-options": "DENY",
        "x-content-type-options": "nosniff",
        "referrer-policy": "no-referrer",
        "cache-control": "no-store",
    }


def headers_of(page: httpx.Response) -> dict[str, str]:
    return {name: page.headers.get(name, "") for name in policy()}


def main_of(page: httpx.Response) -> str:
    text = page.text
    return text[text.index('<main id="main">') + len('<main id="main">') : text.index("</main>")]


def hidden(form: Form) -> str:
    return (
        f'<input type="hidden" name="request" value="{form.fields["request"]}">'
        f'<input type="hidden" name="csrf" value="{form.fields["csrf"]}">'
    )


def local_form(form: Form, described: bool = False) -> str:
    aria = ' aria-describedby="login-error"' if described else ""
    return (
        f'<form method="post" action="/authorize/login">{hidden(form)}'
        '<label for="username">Username</label><input type="text" id="username" name="username" '
        f'autocomplete="username" required autofocus{aria}>'
        '<label for="password">Password</label><input type="password" id="password" name="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )


def consent_body(form: Form, items: str, warning: str = "", who: str = WHO) -> str:
    return (
        f"<h1>Allow access?</h1><p>Signed in as <strong>alice</strong>.</p>{who}{warning}"
        f"<p>It asks for:</p><ul>{items}</ul>"
        f'<form method="post" action="/authorize/consent">{hidden(form)}'
        '<button type="submit" name="decision" value="allow" autofocus>Allow</button> '
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button></form>'
        '<p class="note">You can withdraw this later; your administrator can revoke it at any time.</p>'
    )


async def test_the_sign_in_page_labels_its_fields_and_ties_a_refusal_to_them(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        page = await http.get(flow.authorize_url())
        form = next_form(page.text)
        assert form is not None
        refused = await http.post("/authorize/login", data=form.filled("alice", "wrong password", "allow"))
    assert page.status_code == 200 and refused.status_code == 401
    for answer in (page, refused):
        assert answer.text.startswith(f"{HEAD}<title>Sign in · Patchbay test</title><style>")
        assert headers_of(answer) == policy("http://127.0.0.1:9999")
    assert main_of(page) == f"<h1>Sign in to Patchbay test</h1>{WHO}{local_form(form)}"
    # The refusal is announced (role="alert") and read out with the username field it concerns.
    error = f'<p class="error" role="alert" id="login-error">{escape(REFUSED)}</p>'
    assert main_of(refused) == f"<h1>Sign in to Patchbay test</h1>{WHO}{error}{local_form(form, described=True)}"


async def test_with_an_identity_provider_the_page_offers_it_first_and_local_accounts_after(tmp_path: Path) -> None:
    upstream = {"issuer": "https://idp.example/oidc", "client_id": "patchbay", "display_name": "Example SSO"}
    async with running(tmp_path, auth={"upstream": upstream}) as app, client_for(app) as http:
        flow = Flow(http)
        await flow.register()
        page = await http.get(flow.authorize_url())
        form = next_form(page.text, prefer="/authorize/login")
        assert form is not None
    assert main_of(page) == (
        f"<h1>Sign in to Patchbay test</h1>{WHO}"
        f'<form method="post" action="/authorize/upstream">{hidden(form)}'
        '<button type="submit">Sign in with Example SSO</button></form>'
        f'<p class="note">Or with a local account:</p>{local_form(form)}'
    )
    assert headers_of(page) == policy("http://127.0.0.1:9999", "https://idp.example")


@pytest.mark.parametrize(
    ("auth", "scope", "items"),
    [
        (
            {"scopes_supported": ["mcp", "kb.read"]},
            "mcp kb.read",
            "<li><code>mcp</code></li><li><code>kb.read</code></li>",
        ),
        ({"default_scopes": []}, None, "<li>basic access</li>"),
    ],
)
async def test_the_consent_page_lists_what_is_asked_and_offers_allow_first(
    tmp_path: Path, auth: dict, scope: str | None, items: str
) -> None:
    async with running(tmp_path, auth=auth) as app, client_for(app) as http:
        await add_user(app)
        flow = Flow(http)
        await flow.register()
        form = await flow.login_form(scope=scope)  # type: ignore[arg-type]
        consent = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    assert consent.status_code == 200
    assert consent.text.startswith(f"{HEAD}<title>Allow access · Patchbay test</title><style>")
    assert main_of(consent) == consent_body(form, items)
    assert headers_of(consent) == policy("http://127.0.0.1:9999")


async def test_the_consent_page_warns_in_full_about_a_url_client_that_only_redirects_to_this_computer(
    tmp_path: Path,
) -> None:
    document = {
        "client_id": CIMD_URL,
        "client_name": "Example CIMD client",
        "redirect_uris": ["http://127.0.0.1:8765/callback"],
        "token_endpoint_auth_method": "none",
    }

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=document))
    async with running(tmp_path) as app, client_for(app) as http:
        app.runtime.auth.authorization.documents = MetadataDocuments(Fetcher(transport=transport, resolve=public))
        await add_user(app)
        flow = Flow(http, client_id=CIMD_URL, redirect_uri="http://127.0.0.1:8765/callback")
        form = await flow.login_form()
        consent = await http.post("/authorize/login", data=form.filled("alice", PASSWORD, "allow"))
    warning = (
        '<p class="error" role="note">This client only redirects to this computer (localhost). Allow it '
        "only if you started it yourself just now.</p>"
    )
    who = (
        "<p><strong>Example CIMD client</strong> wants to use Patchbay test on your behalf. "
        "After you agree you are sent back to <code>127.0.0.1:8765</code>.</p>"
    )
    assert main_of(consent) == consent_body(form, "<li><code>mcp</code></li>", warning, who)


async def test_an_error_page_allows_no_form_to_leave_and_is_never_framed_or_cached(tmp_path: Path) -> None:
    async with running(tmp_path) as app, client_for(app) as http:
        page = await http.get("/authorize?response_type=code")
    assert page.status_code == 400
    assert page.text.startswith(f"{HEAD}<title>Cannot sign in</title><style>")
    assert headers_of(page) == policy()
