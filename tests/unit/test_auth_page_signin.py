"""Signing in to Patchbay's own pages (the approval page, the console) through the organisation's provider
(``PageSignIn.start_upstream``, ``claim`` and ``_finish``), in-process against the OpenID provider of
test_auth_upstream.py (httpx's MockTransport, a real RSA key): the button's redirect and the page's round-trip
cookie, the callback claimed only by the page whose state this browser holds, the "Signed in" page that leads back,
and each refusal (docs/approvals.md#approving, docs/console.md, docs/auth.md). The same flow against a real provider
is in tests/e2e."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from tests.support.forms import forms, next_form
from tests.unit.fixtures.authflow import BASE, client_for
from tests.unit.fixtures.console_admin import running
from tests.unit.test_auth_upstream import ISSUER, UPSTREAM, FakeOP, form_of, s256, serve
from tests.unit.test_gate_approval_pages import _held

from patchbay.auth.page_signin import EXPIRED, PageSignIn

pytestmark = pytest.mark.anyio
HTTPS = "https://mcp.example.com"
# The provider's group maps to both roles, so the person may see the approval page and the console.
PROVIDER = {**UPSTREAM, "role_map": {"mcp-admins": ["admin", "approver"]}}
HOLD = [{"subjects": ["*"], "tools": ["write_doc"], "effect": "approve"}]
APPROVALS, CONSOLE = "/approvals/", "/admin/"
CONTINUE = {APPROVALS: "Continue to the approval", CONSOLE: "Continue to the console"}
IDP = {APPROVALS: "patchbay_approver_idp", CONSOLE: "patchbay_admin_idp"}
CSRF = {APPROVALS: "patchbay_approver_csrf", CONSOLE: "patchbay_admin_csrf"}
SESSION = {APPROVALS: "patchbay_approver", CONSOLE: "patchbay_admin"}
EXPIRED_SIGN_IN = (
    '<h1>Sign-in expired</h1><p role="alert">This sign-in is unknown or expired. Start again from your app.</p>'
)


class Pages:
    """The app, a browser on it, the provider, and what each page's sign-in recorded in the audit trail."""

    def __init__(self, app: Any, http: httpx.AsyncClient, op: FakeOP, approval_id: str) -> None:
        self.app, self.http, self.op = app, http, op
        self.keys = {APPROVALS: approval_id, CONSOLE: "overview"}
        self.audited: list[tuple[str, dict[str, Any]]] = []
        for signin in self.signins().values():
            signin.audit = self._record

    def _record(self, method: str, **fields: Any) -> None:
        self.audited.append((method, fields))

    def signins(self) -> dict[str, PageSignIn]:
        """Each page family's sign-in, by prefix: the claimants the provider's callback asks first."""
        return {claim.__self__.prefix: claim.__self__ for claim in self.app.runtime.auth.upstream.claimants}

    def page(self, prefix: str) -> str:
        return prefix + self.keys[prefix]

    async def open(self, prefix: str) -> httpx.Response:
        """The page as this browser sees it (the console's overview is /admin/, its sign-in page's key overview)."""
        return await self.http.get(self.page(prefix), follow_redirects=True)

    async def start(self, prefix: str) -> httpx.Response:
        """Open the page and press "Sign in with Example SSO"; the answer is not followed."""
        shown = await self.open(prefix)
        button = next_form(shown.text, self.page(prefix) + "/upstream")
        assert button is not None and button.action == self.page(prefix) + "/upstream", shown.text
        return await self.http.post(button.action, data=button.fields)

    async def back(self, started: httpx.Response, query: str = "code=the-code&state={state}") -> httpx.Response:
        """The provider sends the browser back to the callback (``query`` formatted with the started state)."""
        asked = params_of(started)
        self.op.nonce = asked["nonce"]
        return await self.http.get("/authorize/callback?" + query.format(state=asked["state"]))


@contextlib.asynccontextmanager
async def pages(tmp: Path, public_url: str = BASE) -> AsyncIterator[Pages]:
    server = {} if public_url == BASE else {"public_url": public_url}
    async with running(tmp, auth={"upstream": PROVIDER}, policy=HOLD, server=server) as app:
        op = FakeOP()
        serve(app, op)
        await app.runtime.dispatcher.approvals.run(lambda: None)  # migrates the approvals table
        approval_id = _held(app, "write_doc", "a" * 64)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=public_url, timeout=10) as http:
            yield Pages(app, http, op, approval_id)


def params_of(response: httpx.Response) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(response.headers["location"]).query).items()}


def main_of(response: httpx.Response) -> str:
    (main,) = re.findall(r'<main id="main">(.*)</main>', response.text, re.S)
    return str(main)


def title_of(response: httpx.Response) -> str:
    (title,) = re.findall(r"<title>(.*?)</title>", response.text)
    return str(title)


def set_cookies(response: httpx.Response, name: str) -> list[str]:
    return [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]


def attributes(cookie: str) -> tuple[str, set[str]]:
    pair, *rest = cookie.split("; ")
    return pair.split("=", 1)[1], set(rest)


def ended(response: httpx.Response, name: str, path: str) -> bool:
    """Whether ``response`` deletes the cookie ``name`` at ``path`` (and sets it nowhere)."""
    (cookie,) = set_cookies(response, name)
    value, attrs = attributes(cookie)
    return value == '""' and "Max-Age=0" in attrs and f"Path={path}" in attrs


def refused(title: str, message: str) -> str:
    return f'<h1>{title}</h1><p role="alert">{message}</p>'


# -- POST <page>/upstream ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("public_url", [BASE, HTTPS], ids=["http", "https"])
@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_the_button_sends_the_browser_to_the_provider_and_keeps_the_round_trip_in_a_cookie(
    tmp_path: Path, prefix: str, public_url: str
) -> None:
    async with pages(tmp_path, public_url) as p:
        started = await p.start(prefix)
        assert started.status_code == 302 and started.headers["cache-control"] == "no-store"
        location = started.headers["location"]
        assert location.startswith(f"{ISSUER}/authorize?")
        asked = params_of(started)
        (cookie,) = set_cookies(started, IDP[prefix])
        value, attrs = attributes(cookie)
        state, verifier, nonce, key = value.split(".")
        assert key == p.keys[prefix]
        assert asked == {
            "response_type": "code",
            "client_id": "patchbay",
            "redirect_uri": f"{public_url}/authorize/callback",
            "scope": "openid email profile",
            "state": state,
            "nonce": nonce,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        }
        assert 43 <= len(verifier) <= 128 and len({state, verifier, nonce}) == 3  # RFC 7636 §4.1
        shared = {"HttpOnly", "Path=/authorize/callback", "SameSite=lax", "Max-Age=600"}
        assert attrs == shared | ({"Secure"} if public_url == HTTPS else set())
        # The login form's token is spent: the browser's CSRF cookie for the page is deleted.
        assert ended(started, CSRF[prefix], prefix.rstrip("/"))
        assert set_cookies(started, SESSION[prefix]) == []


async def test_each_press_of_the_button_gets_its_own_state_verifier_and_nonce(tmp_path: Path) -> None:
    async with pages(tmp_path) as p:
        first, second = await p.start(APPROVALS), await p.start(APPROVALS)
        values = [attributes(set_cookies(r, IDP[APPROVALS])[0])[0].split(".")[:3] for r in (first, second)]
        assert all(a != b for a, b in zip(*values, strict=True))


@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
@pytest.mark.parametrize("csrf", [None, "", "forged"], ids=["missing", "empty", "wrong"])
async def test_the_button_without_the_pages_form_token_is_an_expired_form(
    tmp_path: Path, prefix: str, csrf: str | None
) -> None:
    async with pages(tmp_path) as p:
        await p.open(prefix)  # the browser holds the login CSRF cookie
        form = {"username": "alice"} if csrf is None else {"csrf": csrf}
        answer = await p.http.post(p.page(prefix) + "/upstream", data=form)
        assert answer.status_code == 403 and title_of(answer) == "Form expired"
        assert main_of(answer) == refused("Form expired", EXPIRED)
        assert "location" not in answer.headers and set_cookies(answer, IDP[prefix]) == []
        assert p.op.requests == []  # nothing was asked of the provider


@pytest.mark.parametrize(
    ("path", "title", "message"),
    [
        ("/approvals/not.an.id/upstream", "No such approval", "There is no approval request at this address."),
        ("/admin/nowhere/upstream", "Not found", "There is no console page at this address."),
    ],
    ids=["approvals", "console"],
)
async def test_the_button_of_an_unknown_page_is_a_404_page(tmp_path: Path, path: str, title: str, message: str) -> None:
    async with pages(tmp_path) as p:
        shown = await p.open(APPROVALS)
        button = next_form(shown.text, p.page(APPROVALS) + "/upstream")
        assert button is not None
        await p.open(CONSOLE)  # both login CSRF cookies, so only the key is wrong
        answer = await p.http.post(path, data=button.fields)
        assert answer.status_code == 404 and main_of(answer) == refused(title, message)
        assert "location" not in answer.headers and not any("_idp=" in c for c in answer.headers.get_list("set-cookie"))
        assert p.op.requests == []


@pytest.mark.parametrize(
    "change",
    [{"unreachable": {"/oidc/.well-known/openid-configuration"}}, {"discovery": {"authorization_endpoint": None}}],
    ids=["unreachable", "no-authorization-endpoint"],
)
@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_a_provider_whose_sign_in_cannot_be_found_makes_sign_in_unavailable(
    tmp_path: Path, prefix: str, change: dict[str, Any]
) -> None:
    async with pages(tmp_path) as p:
        for name, value in change.items():
            setattr(p.op, name, value)
        answer = await p.start(prefix)
        assert answer.status_code == 502 and title_of(answer) == "Sign-in unavailable"
        assert main_of(answer) == refused("Sign-in unavailable", "Cannot reach Example SSO&#x27;s sign-in.")
        assert "location" not in answer.headers and set_cookies(answer, IDP[prefix]) == []


# -- GET /authorize/callback, claimed by the page ------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_the_providers_answer_signs_the_person_in_and_leads_back_to_the_page(
    tmp_path: Path, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with pages(tmp_path) as p:
        page = p.page(prefix)
        signed_out = await p.open(prefix)
        assert page + "/upstream" in [f.action for f in forms(signed_out.text)]
        started = await p.start(prefix)
        _, verifier, _, _ = attributes(set_cookies(started, IDP[prefix])[0])[0].split(".")
        with caplog.at_level(logging.INFO, logger="patchbay.auth"):
            back = await p.back(started)
        assert back.status_code == 200 and title_of(back) == "Signed in"
        assert main_of(back) == (
            "<h1>Signed in</h1><p>Signed in as <strong>alice@example.com</strong>.</p>"
            f'<p><a class="button" href="{page}">{CONTINUE[prefix]}</a></p>'
        )
        assert back.headers["refresh"] == f"0; url={page}"
        # The provider was asked for the code with this round trip's verifier (its nonce was checked in the token).
        (token_request,) = p.op.sent("/oidc/token")
        assert form_of(token_request)["code_verifier"] == verifier
        assert ended(back, IDP[prefix], "/authorize/callback")
        (session,) = set_cookies(back, SESSION[prefix])
        value, attrs = attributes(session)
        assert value and "Max-Age=0" not in " ".join(attrs) and f"Path={prefix.rstrip('/')}" in attrs
        assert p.audited == [
            ("auth.sign_in", {"username": "alice@example.com", "outcome": "ok", "via": "Example SSO", "page": prefix})
        ]
        logged = [r.getMessage() for r in caplog.records if r.name == "patchbay.auth" and "signed in" in r.getMessage()]
        assert logged == [f"signed in through Example SSO at {page}: user=alice@example.com"]
        # The page now knows the person: no sign-in form on it.
        shown = await p.open(prefix)
        assert shown.status_code == 200 and page + "/upstream" not in [f.action for f in forms(shown.text)]
        assert "alice@example.com" in shown.text


async def test_the_signed_in_page_escapes_where_it_leads(tmp_path: Path) -> None:
    async with pages(tmp_path) as p:
        signin = p.signins()[APPROVALS]
        signin.continue_label = "Approve <this>"
        back = await p.back(await p.start(APPROVALS))
        assert f'<a class="button" href="{p.page(APPROVALS)}">Approve &lt;this&gt;</a>' in main_of(back)


async def test_the_state_is_single_use(tmp_path: Path) -> None:
    async with pages(tmp_path) as p:
        started = await p.start(APPROVALS)
        first = await p.back(started)
        assert first.status_code == 200 and title_of(first) == "Signed in"
        # The same answer again: no page claims it (its cookie is gone), so it is the OAuth sign-in's, unknown.
        again = await p.back(started)
        assert again.status_code == 400 and main_of(again) == EXPIRED_SIGN_IN
        assert len(p.op.sent("/oidc/token")) == 1 and len(p.audited) == 1


async def test_each_page_claims_only_its_own_round_trip(tmp_path: Path) -> None:
    async with pages(tmp_path) as p:
        to_approve, to_console = await p.start(APPROVALS), await p.start(CONSOLE)
        console_back = await p.back(to_console)
        assert console_back.status_code == 200 and f'href="{p.page(CONSOLE)}"' in main_of(console_back)
        assert set_cookies(console_back, IDP[APPROVALS]) == [] and set_cookies(console_back, SESSION[APPROVALS]) == []
        approval_back = await p.back(to_approve)
        assert approval_back.status_code == 200 and f'href="{p.page(APPROVALS)}"' in main_of(approval_back)
        assert set_cookies(approval_back, IDP[CONSOLE]) == [] and set_cookies(approval_back, SESSION[CONSOLE]) == []
        assert [fields["page"] for _, fields in p.audited] == [CONSOLE, APPROVALS]


# -- the callback's refusals ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_an_error_from_the_provider_cancels_the_sign_in(tmp_path: Path, prefix: str) -> None:
    async with pages(tmp_path) as p:
        back = await p.back(await p.start(prefix), "error=access_denied&state={state}")
        assert back.status_code == 400 and title_of(back) == "Sign-in cancelled"
        assert main_of(back) == refused("Sign-in cancelled", "Example SSO answered: access_denied.")
        assert ended(back, IDP[prefix], "/authorize/callback") and set_cookies(back, SESSION[prefix]) == []
        assert p.op.sent("/oidc/token") == [] and p.audited == []


@pytest.mark.parametrize("query", ["state={state}", "code=&state={state}"], ids=["no-code", "empty-code"])
@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_an_answer_without_a_code_fails_the_sign_in(tmp_path: Path, prefix: str, query: str) -> None:
    async with pages(tmp_path) as p:
        back = await p.back(await p.start(prefix), query)
        assert back.status_code == 400 and title_of(back) == "Sign-in failed"
        assert main_of(back) == refused("Sign-in failed", "Example SSO sent no sign-in code. Open the link again.")
        assert ended(back, IDP[prefix], "/authorize/callback") and set_cookies(back, SESSION[prefix]) == []
        assert p.op.sent("/oidc/token") == [] and p.audited == []


@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_an_id_token_for_another_request_fails_the_sign_in(tmp_path: Path, prefix: str) -> None:
    async with pages(tmp_path) as p:
        p.op.claims = {"nonce": "someone-elses-nonce"}
        back = await p.back(await p.start(prefix))
        assert back.status_code == 403 and title_of(back) == "Sign-in failed"
        message = "The sign-in response does not belong to this request (nonce)."
        assert main_of(back) == refused("Sign-in failed", message)
        assert ended(back, IDP[prefix], "/authorize/callback") and set_cookies(back, SESSION[prefix]) == []
        assert p.audited == []


@pytest.mark.parametrize("prefix", [APPROVALS, CONSOLE], ids=["approvals", "console"])
async def test_an_unreachable_token_endpoint_makes_sign_in_unavailable(tmp_path: Path, prefix: str) -> None:
    async with pages(tmp_path) as p:
        p.op.unreachable = {"/oidc/token"}
        back = await p.back(await p.start(prefix))
        assert back.status_code == 502 and title_of(back) == "Sign-in unavailable"
        assert main_of(back) == refused("Sign-in unavailable", "Cannot reach Example SSO.")
        assert ended(back, IDP[prefix], "/authorize/callback") and set_cookies(back, SESSION[prefix]) == []
        assert p.audited == []


# -- callbacks no page claims: the OAuth sign-in's own ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("cookie", "query"),
    [
        (None, "code=the-code&state={state}"),  # no round-trip cookie
        ("{state}.{verifier}.{nonce}", "code=the-code&state={state}"),  # three parts
        ("{state}.{verifier}.{nonce}.{key}.x", "code=the-code&state={state}"),  # five parts
        ("{state}.{verifier}.{nonce}.{key}", "code=the-code"),  # no state
        ("{state}.{verifier}.{nonce}.{key}", "code=the-code&state="),  # an empty state
        (".{verifier}.{nonce}.{key}", "code=the-code"),  # no state on either side
        ("{state}.{verifier}.{nonce}.{key}", "code=the-code&state={state}x"),  # another state
        ("{state}.{verifier}.{nonce}.{key}", "code=the-code&state=x{state}"),
        ("{state}.{verifier}.{nonce}.", "code=the-code&state={state}"),  # no key
        ("{state}.{verifier}.{nonce}.a/b", "code=the-code&state={state}"),  # a key no page has
        ("{state}.{verifier}.{nonce}." + "a" * 65, "code=the-code&state={state}"),
    ],
    ids=[
        "no-cookie",
        "three-parts",
        "five-parts",
        "no-state",
        "empty-state",
        "both-empty",
        "other-state",
        "other-state-2",
        "no-key",
        "bad-key",
        "long-key",
    ],
)
async def test_a_callback_this_browser_did_not_start_on_the_page_is_not_claimed(
    tmp_path: Path, cookie: str | None, query: str
) -> None:
    async with pages(tmp_path) as p:
        started = await p.start(APPROVALS)
        state, verifier, nonce, key = attributes(set_cookies(started, IDP[APPROVALS])[0])[0].split(".")
        p.op.nonce = nonce
        names = {"state": state, "verifier": verifier, "nonce": nonce, "key": key}
        headers = {} if cookie is None else {"cookie": f"{IDP[APPROVALS]}={cookie.format(**names)}"}
        async with client_for(p.app) as elsewhere:
            back = await elsewhere.get("/authorize/callback?" + query.format(**names), headers=headers)
        assert back.status_code == 400 and main_of(back) == EXPIRED_SIGN_IN
        assert back.headers.get_list("set-cookie") == []  # neither ended nor signed in
        assert p.op.sent("/oidc/token") == [] and p.audited == []


async def test_a_key_of_64_characters_is_claimed(tmp_path: Path) -> None:
    async with pages(tmp_path) as p:
        started = await p.start(APPROVALS)
        state, verifier, nonce, _ = attributes(set_cookies(started, IDP[APPROVALS])[0])[0].split(".")
        p.op.nonce = nonce
        key = "A-z_9" + "a" * 59
        async with client_for(p.app) as elsewhere:
            cookie = {"cookie": f"{IDP[APPROVALS]}={state}.{verifier}.{nonce}.{key}"}
            back = await elsewhere.get(f"/authorize/callback?code=the-code&state={state}", headers=cookie)
        assert back.status_code == 200 and back.headers["refresh"] == f"0; url=/approvals/{key}"
