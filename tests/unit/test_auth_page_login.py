"""Signing in with a local account on Patchbay's own pages (``PageSignIn``: the approval page, the console, the link
pages), directly on a small Starlette app with a real account store on SQLite: the sign-in page (the provider's
button and/or the local form, its alert, its login CSRF cookie and form-action), the checks on the sign-in form
(unknown page, body limits, the cookie-bound token), each answer of ``login`` (refused, disabled, throttled, signed
in: the session cookie, the log line, the audit event), and a form posted on a signed-in page (``signed_form``).
See docs/approvals.md#approving, docs/console.md, docs/links.md and docs/auth.md. The provider's round trip is in
test_auth_page_signin.py."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from html import escape
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import httpx2 as httpx
import pytest
from fixtures.hashing import cheap_hashes  # noqa: F401 (an autouse fixture)
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from tests.support.clock import Clock
from tests.support.forms import forms

from patchbay.auth.lockout import AddressThrottle
from patchbay.auth.page_signin import EXPIRED, FORM_SECONDS, PageCookies, PageSignIn, page_token
from patchbay.auth.pages import DISABLED, REFUSED
from patchbay.auth.users import Users
from patchbay.store import create_engine, upgrade

pytestmark = pytest.mark.anyio

NOW = 1_800_000_000.0
PASSWORD = "correct horse battery"
WRONG = "not the password 1"
PREFIX = "/things/"
SESSION, LOGIN_CSRF, PATH = "pb_things", "pb_things_csrf", "/things"
SECONDS = 900
TRIES = 3
BASE = "http://testserver"
PROMPT = "<h1>Sign in to see {key}</h1><p>Sign in first.</p>"
EXPIRED_PAGE = f'<h1>Form expired</h1><p role="alert">{EXPIRED}</p>'
SIGNED_OUT = "Your sign-in expired. Sign in again."
ORGANISATION = "Sign in with your organisation's account."


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated store, copied for each test (migrating takes longer than the tests)."""
    path = tmp_path_factory.mktemp("template") / "store.db"
    made = create_engine(f"sqlite:///{path}")
    upgrade(made)
    made.dispose()
    return path


@pytest.fixture
def engine(tmp_path: Path, migrated: Path) -> Iterator[Engine]:
    shutil.copyfile(migrated, tmp_path / "store.db")
    made = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    yield made
    made.dispose()


async def _run(call: Callable[..., Any], *args: Any) -> Any:
    return call(*args)


def _token(cookie: str, key: str) -> str:
    return page_token(cookie, "things-form", key)


class Site:
    """A page family at /things/<key> signed in by a ``PageSignIn``, a browser on it, and what it recorded."""

    def __init__(self, engine: Engine, **options: Any) -> None:
        self.clock = Clock(NOW)
        self.users = Users(engine, self.clock)
        if self.users.by_name("ada") is None:
            self.users.add("ada", PASSWORD, roles=("approver",))
        self.throttle = AddressThrottle(TRIES, 60, self.clock)
        self.audited: list[tuple[str, dict[str, Any]]] = []
        same_site: Literal["strict", "lax"] = options.pop("same_site", "strict")
        self.signin = PageSignIn(
            self.users,
            self.throttle,
            _run,
            PageCookies(SESSION, PATH, same_site),
            PREFIX,
            prompt=lambda key: PROMPT.format(key=key),
            known=lambda key: key != "gone",
            server_name="Test Server",
            session_seconds=SECONDS,
            audit=self._record,
            **options,
        )
        self.app = Starlette(
            routes=[
                Route(PREFIX + "{key}", self.show, methods=["GET"]),
                Route(PREFIX + "{key}/do", self.do, methods=["POST"]),
                *self.signin.routes(),
            ]
        )

    def _record(self, method: str, **fields: Any) -> None:
        self.audited.append((method, fields))

    async def show(self, request: Request) -> Response:
        """The page: the sign-in page when signed out, else who is signed in and the form's token."""
        key = request.path_params["key"]
        signed_in = await self.signin.user(request)
        if signed_in is None:
            return self.signin.page(key)
        user, cookie = signed_in
        return PlainTextResponse(f"{user.username} {_token(cookie, key)}")

    async def do(self, request: Request) -> Response:
        """A form posted on the page by the person signed in there."""
        signed = await self.signin.signed_form(request, request.path_params["key"], _token)
        if isinstance(signed, Response):
            return signed
        user, cookie, form = signed
        assert cookie == request.cookies[SESSION]
        return PlainTextResponse(f"done by {user.username}: {form.get('note')}")


class Browser:
    def __init__(self, site: Site, http: httpx.AsyncClient) -> None:
        self.site, self.http = site, http

    async def login_form(self, key: str = "k1") -> dict[str, str]:
        """Open the page signed out and take the local form's hidden fields (its CSRF token)."""
        shown = await self.http.get(PREFIX + key)
        local = [f for f in forms(shown.text) if f.action == f"{PREFIX}{key}/login"]
        assert len(local) == 1, shown.text
        return dict(local[0].fields)

    async def sign_in(self, username: str = "ada", password: str = PASSWORD, key: str = "k1") -> httpx.Response:
        fields = await self.login_form(key)
        return await self.http.post(f"{PREFIX}{key}/login", data={**fields, "username": username, "password": password})

    async def token(self, key: str = "k1") -> str:
        shown = await self.http.get(PREFIX + key)
        assert shown.status_code == 200 and shown.text.startswith("ada "), shown.text
        return shown.text.split(" ")[1]


@pytest.fixture
def site(engine: Engine) -> Site:
    return Site(engine)


async def _browser(site: Site, base: str = BASE) -> AsyncIterator[Browser]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=site.app), base_url=base) as http:
        yield Browser(site, http)


@pytest.fixture
async def browser(site: Site) -> AsyncIterator[Browser]:
    async for b in _browser(site):
        yield b


def main_of(response: httpx.Response) -> str:
    (main,) = re.findall(r'<main id="main">(.*)</main>', response.text, re.S)
    return str(main)


def title_of(response: httpx.Response) -> str:
    (title,) = re.findall(r"<title>(.*?)</title>", response.text)
    return str(title)


def cookie_of(response: httpx.Response, name: str) -> tuple[str, set[str]]:
    """The one Set-Cookie for ``name``: its value and its attributes."""
    (cookie,) = [c for c in response.headers.get_list("set-cookie") if c.startswith(name + "=")]
    pair, *rest = cookie.split("; ")
    return pair.split("=", 1)[1], set(rest)


def form_action(response: httpx.Response) -> str:
    (action,) = re.findall(r"form-action ([^;]*);", response.headers["content-security-policy"])
    return str(action)


def hidden(csrf: str) -> str:
    return f'<input type="hidden" name="csrf" value="{csrf}">'


def local_form(key: str, csrf: str, described: bool = False) -> str:
    aria = ' aria-describedby="login-error"' if described else ""
    return (
        f'<form method="post" action="{PREFIX}{key}/login">{hidden(csrf)}'
        '<label for="username">Username</label><input type="text" id="username" name="username" '
        f'autocomplete="username" required autofocus{aria}>'
        '<label for="password">Password</label><input type="password" id="password" name="password" '
        'autocomplete="current-password" required><button type="submit">Sign in</button></form>'
    )


def button_form(key: str, csrf: str) -> str:
    return (
        f'<form method="post" action="{PREFIX}{key}/upstream">{hidden(csrf)}'
        '<button type="submit">Sign in with Example SSO</button></form>'
    )


def alert(message: str) -> str:
    return f'<p class="error" role="alert" id="login-error">{message}</p>'


def provider() -> Any:
    """What the sign-in page reads of an ``UpstreamLogin``: its name and the list of callback claimants."""
    return SimpleNamespace(settings=SimpleNamespace(display_name="Example SSO"), claimants=[])


def login_csrf_of(response: httpx.Response) -> str:
    value, attrs = cookie_of(response, LOGIN_CSRF)
    assert attrs == {f"Max-Age={FORM_SECONDS}", f"Path={PATH}", "HttpOnly", "SameSite=strict"}
    return value


# -- page_token ----------------------------------------------------------------------------------------------------


def test_a_page_token_is_bound_to_the_session_the_purpose_and_the_key() -> None:
    token = page_token("session-cookie", "patchbay-approval", "a1")
    assert token == hmac.new(b"session-cookie", b"patchbay-approval\0a1", hashlib.sha256).hexdigest()
    assert token == page_token("session-cookie", "patchbay-approval", "a1")
    others = {
        page_token("session-cookie2", "patchbay-approval", "a1"),
        page_token("session-cookie", "patchbay-links", "a1"),
        page_token("session-cookie", "patchbay-approval", "a2"),
    }
    assert token not in others and len(others) == 3


# -- routes and the provider ---------------------------------------------------------------------------------------


def test_the_routes_are_the_login_form_and_with_a_provider_its_button(engine: Engine) -> None:
    site = Site(engine)
    assert [(r.path, r.methods, r.endpoint) for r in site.signin.routes()] == [  # type: ignore[attr-defined]
        ("/things/{key}/login", {"POST"}, site.signin.login)
    ]
    site.signin.attach_provider(provider(), "https://idp.example.com", True)
    assert [(r.path, r.methods, r.endpoint) for r in site.signin.routes()] == [  # type: ignore[attr-defined]
        ("/things/{key}/login", {"POST"}, site.signin.login),
        ("/things/{key}/upstream", {"POST"}, site.signin.start_upstream),
    ]


async def test_the_login_route_takes_only_a_post(browser: Browser) -> None:
    assert (await browser.http.get(PREFIX + "k1/login")).status_code == 405
    assert (await browser.http.get(PREFIX + "k1/upstream")).status_code == 404  # no provider, no button


def test_attaching_a_provider_offers_it_and_claims_its_callbacks(engine: Engine) -> None:
    site = Site(engine)
    upstream = provider()
    site.signin.attach_provider(upstream, "https://idp.example.com", False)
    assert site.signin.upstream is upstream
    assert site.signin.upstream_origin == "https://idp.example.com"
    assert site.signin.local_login is False
    assert upstream.claimants == [site.signin.claim]


def test_the_provider_of_the_auth_server_is_offered_only_when_it_has_one(engine: Engine) -> None:
    site = Site(engine)
    site.signin.offer_provider_of(None)
    site.signin.offer_provider_of(SimpleNamespace(upstream=None))
    assert site.signin.upstream is None and site.signin.local_login is True
    upstream = provider()
    authorization = SimpleNamespace(upstream_origin="https://idp.example.com", local_login=False)
    site.signin.offer_provider_of(SimpleNamespace(upstream=upstream, authorization=authorization))
    assert site.signin.upstream is upstream
    assert site.signin.upstream_origin == "https://idp.example.com"
    assert site.signin.local_login is False
    assert upstream.claimants == [site.signin.claim]


def test_a_page_is_at_the_prefix_and_its_key(site: Site) -> None:
    assert site.signin.page_of("k1") == "/things/k1"


# -- the sign-in page ----------------------------------------------------------------------------------------------


async def test_the_sign_in_page_offers_the_local_form_with_a_cookie_bound_token(browser: Browser) -> None:
    shown = await browser.http.get(PREFIX + "k1")
    assert shown.status_code == 200
    assert title_of(shown) == "Sign in · Test Server"
    csrf = login_csrf_of(shown)
    assert len(csrf) >= 32
    assert main_of(shown) == PROMPT.format(key="k1") + local_form("k1", csrf)
    assert form_action(shown) == "'self'"
    assert shown.headers["cache-control"] == "no-store"
    assert shown.headers["x-frame-options"] == "DENY"
    again = await browser.http.get(PREFIX + "k1")
    assert login_csrf_of(again) != csrf  # a new token each time the page is shown


async def test_the_sign_in_page_with_an_error_announces_it_and_describes_the_username_with_it(site: Site) -> None:
    shown = site.signin.page("k1", "Something <wrong>", 401)
    assert shown.status_code == 401
    csrf, _ = _cookie_from(shown, LOGIN_CSRF)
    body = bytes(shown.body).decode()
    (main,) = re.findall(r'<main id="main">(.*)</main>', body, re.S)
    assert main == PROMPT.format(key="k1") + alert("Something &lt;wrong&gt;") + local_form("k1", csrf, True)


def _cookie_from(response: Response, name: str) -> tuple[str, set[str]]:
    (cookie,) = [v.decode() for k, v in response.raw_headers if k == b"set-cookie" and v.startswith(name.encode())]
    pair, *rest = cookie.split("; ")
    return pair.split("=", 1)[1], set(rest)


@pytest.mark.parametrize("local", [True, False], ids=["and-local", "only-provider"])
async def test_with_a_provider_the_page_offers_its_button_and_allows_its_origin_as_a_form_target(
    site: Site, browser: Browser, local: bool
) -> None:
    site.signin.attach_provider(provider(), "https://idp.example.com", local)
    shown = await browser.http.get(PREFIX + "k1")
    csrf = login_csrf_of(shown)
    rest = '<p class="note">Or with a local account:</p>' + local_form("k1", csrf) if local else ""
    assert main_of(shown) == PROMPT.format(key="k1") + button_form("k1", csrf) + rest
    assert form_action(shown) == "'self' https://idp.example.com"


async def test_a_provider_without_a_known_origin_and_an_origin_without_a_provider_add_no_form_target(
    engine: Engine,
) -> None:
    site = Site(engine)
    site.signin.attach_provider(provider(), None, True)
    shown = site.signin.page("k1")
    assert "form-action 'self';" in shown.headers["content-security-policy"]
    bare = Site(engine, upstream_origin="https://idp.example.com")
    assert "form-action 'self';" in bare.signin.page("k1").headers["content-security-policy"]


@pytest.mark.parametrize(("secure", "same_site"), [(True, "lax"), (False, "lax"), (True, "strict")])
def test_the_login_csrf_cookie_follows_the_family_and_the_public_url(
    engine: Engine, secure: bool, same_site: str
) -> None:
    site = Site(engine, secure_cookies=secure, same_site=same_site)
    _, attrs = _cookie_from(site.signin.page("k1"), LOGIN_CSRF)
    expected = {f"Max-Age={FORM_SECONDS}", f"Path={PATH}", "HttpOnly", f"SameSite={same_site}"}
    assert attrs == (expected | {"Secure"} if secure else expected)


# -- POST <page>/login: the form -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["gone", "a.b", "x" * 65], ids=["unknown", "not-a-key", "too-long"])
async def test_a_sign_in_for_no_page_is_not_found(browser: Browser, key: str) -> None:
    fields = await browser.login_form()
    answer = await browser.http.post(f"{PREFIX}{key}/login", data={**fields, "username": "ada", "password": PASSWORD})
    assert answer.status_code == 404
    assert main_of(answer) == '<h1>Not found</h1><p role="alert">There is nothing at this address.</p>'
    assert browser.site.audited == []


async def test_the_not_found_page_is_the_familys_own(engine: Engine) -> None:
    site = Site(engine, missing=("No such approval", "There is no approval request at this address."))
    async for browser in _browser(site):
        answer = await browser.http.post(PREFIX + "gone/login", data={"csrf": "x"})
        assert answer.status_code == 404 and title_of(answer) == "No such approval"
        assert main_of(answer) == (
            '<h1>No such approval</h1><p role="alert">There is no approval request at this address.</p>'
        )


async def test_a_key_of_64_characters_names_a_page(browser: Browser) -> None:
    key = "x" * 64
    answer = await browser.sign_in(key=key)
    assert answer.status_code == 303 and answer.headers["location"] == PREFIX + key


async def test_a_sign_in_form_larger_than_the_limit_is_refused(engine: Engine) -> None:
    site = Site(engine, max_form_bytes=200)
    async for browser in _browser(site):
        fields = await browser.login_form()
        data = {**fields, "username": "ada", "password": PASSWORD}
        body = "&".join(f"{k}={v}" for k, v in data.items())
        padded = {**data, "note": "n" * (200 - len(body) - len("&note="))}
        fits = await browser.http.post(PREFIX + "k1/login", data=padded)
        assert fits.status_code == 303
        browser.http.cookies.clear()
        fields = await browser.login_form()
        over = {**fields, "username": "ada", "password": PASSWORD, "note": padded["note"] + "n"}
        answer = await browser.http.post(PREFIX + "k1/login", data=over)
        assert answer.status_code == 413
        assert answer.json() == {
            "error": "invalid_request",
            "error_description": "the request body is larger than this endpoint accepts (200 bytes)",
        }


async def test_a_sign_in_form_of_more_than_five_fields_is_refused(browser: Browser) -> None:
    fields = await browser.login_form()
    data = {**fields, "username": "ada", "password": PASSWORD, "a": "1", "b": "2"}
    answer = await browser.http.post(PREFIX + "k1/login", data={**data, "c": "3"})
    assert answer.status_code == 400
    assert answer.json()["error_description"] == "the form has more than 5 fields"
    fields = await browser.login_form()
    answer = await browser.http.post(PREFIX + "k1/login", data={**data, **fields})
    assert answer.status_code == 303


@pytest.mark.parametrize("case", ["no-field", "empty", "other-token", "no-cookie"])
async def test_a_sign_in_form_not_opened_in_this_browser_has_expired(browser: Browser, case: str) -> None:
    fields = await browser.login_form()
    data = {"username": "ada", "password": PASSWORD}
    if case == "empty":
        data["csrf"] = ""
    elif case == "other-token":
        data["csrf"] = fields["csrf"][:-1] + ("A" if fields["csrf"][-1] != "A" else "B")
    elif case == "no-cookie":
        data["csrf"] = fields["csrf"]
        browser.http.cookies.clear()
    answer = await browser.http.post(PREFIX + "k1/login", data=data)
    assert answer.status_code == 403
    assert title_of(answer) == "Form expired" and main_of(answer) == EXPIRED_PAGE
    assert SESSION not in answer.cookies and browser.site.audited == []


async def test_an_empty_token_does_not_match_a_missing_cookie(browser: Browser) -> None:
    answer = await browser.http.post(PREFIX + "k1/login", data={"csrf": "", "username": "ada", "password": PASSWORD})
    assert answer.status_code == 403 and main_of(answer) == EXPIRED_PAGE


# -- POST <page>/login: the answers --------------------------------------------------------------------------------


async def test_a_right_password_signs_in_and_returns_to_the_page(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "patchbay.auth")
    answer = await browser.sign_in(" ada ")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/things/k1" and answer.headers["cache-control"] == "no-store"
    session, attrs = cookie_of(answer, SESSION)
    assert attrs == {f"Max-Age={SECONDS}", f"Path={PATH}", "HttpOnly", "SameSite=strict"}
    ended, ended_attrs = cookie_of(answer, LOGIN_CSRF)
    assert ended == '""' and {"Max-Age=0", f"Path={PATH}"} <= ended_attrs
    assert browser.site.audited == [
        ("auth.sign_in", {"username": "ada", "outcome": "ok", "address": "127.0.0.1", "page": PREFIX})
    ]
    assert [r for r in caplog.records if r.name == "patchbay.auth"] == []
    assert browser.site.users.browser_session_user(session).username == "ada"  # type: ignore[union-attr]
    assert await browser.token() == _token(session, "k1")
    assert browser.site.throttle.failures == {}


@pytest.mark.parametrize(("secure", "same_site"), [(True, "lax"), (False, "lax")])
async def test_the_session_cookie_follows_the_family_and_the_public_url(
    engine: Engine, secure: bool, same_site: str
) -> None:
    site = Site(engine, secure_cookies=secure, same_site=same_site)
    async for browser in _browser(site, "https://testserver" if secure else BASE):
        answer = await browser.sign_in()
        _, attrs = cookie_of(answer, SESSION)
        expected = {f"Max-Age={SECONDS}", f"Path={PATH}", "HttpOnly", f"SameSite={same_site}"}
        assert attrs == (expected | {"Secure"} if secure else expected)


async def test_the_session_lasts_session_seconds(browser: Browser) -> None:
    session, _ = cookie_of(await browser.sign_in(), SESSION)
    browser.site.clock.now += SECONDS - 1
    assert (await browser.http.get(PREFIX + "k1")).text.startswith("ada ")
    browser.site.clock.now += 1
    signed_out = await browser.http.get(PREFIX + "k1")
    assert title_of(signed_out) == "Sign in · Test Server"
    assert browser.site.users.browser_session_user(session) is None


async def test_a_wrong_password_is_refused_logged_audited_and_counted(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "patchbay.auth")
    answer = await browser.sign_in(password=WRONG)
    assert answer.status_code == 401
    assert title_of(answer) == "Sign in · Test Server"
    csrf = login_csrf_of(answer)
    assert main_of(answer) == PROMPT.format(key="k1") + alert(REFUSED) + local_form("k1", csrf, True)
    assert SESSION not in answer.cookies
    assert [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "patchbay.auth"] == [
        (logging.WARNING, "sign-in at /things/ failed: user='ada' address=127.0.0.1 outcome=invalid")
    ]
    assert browser.site.audited == [
        ("auth.sign_in", {"username": "ada", "outcome": "invalid", "address": "127.0.0.1", "page": PREFIX})
    ]
    assert len(browser.site.throttle.failures["127.0.0.1"]) == 1


async def test_the_name_tried_is_logged_and_audited_cut_to_100_characters(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "patchbay.auth")
    tried = "  " + "n" * 150
    answer = await browser.sign_in(tried, WRONG)
    assert answer.status_code == 401
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"] == [
        f"sign-in at /things/ failed: user={tried[:100]!r} address=127.0.0.1 outcome=invalid"
    ]
    assert browser.site.audited == [
        ("auth.sign_in", {"username": "n" * 100, "outcome": "invalid", "address": "127.0.0.1", "page": PREFIX})
    ]


async def test_a_sign_in_without_a_name_or_password_is_refused_with_an_empty_name(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "patchbay.auth")
    fields = await browser.login_form()
    answer = await browser.http.post(PREFIX + "k1/login", data=fields)
    assert answer.status_code == 401 and alert(REFUSED) in main_of(answer)
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"] == [
        "sign-in at /things/ failed: user='' address=127.0.0.1 outcome=invalid"
    ]
    assert browser.site.audited == [
        ("auth.sign_in", {"username": "", "outcome": "invalid", "address": "127.0.0.1", "page": PREFIX})
    ]


async def test_a_disabled_account_is_told_so(browser: Browser) -> None:
    browser.site.users.set_disabled("ada", True)
    answer = await browser.sign_in()
    assert answer.status_code == 401
    csrf = login_csrf_of(answer)
    assert main_of(answer) == PROMPT.format(key="k1") + alert(DISABLED) + local_form("k1", csrf, True)
    assert browser.site.audited == [
        ("auth.sign_in", {"username": "ada", "outcome": "disabled", "address": "127.0.0.1", "page": PREFIX})
    ]
    assert SESSION not in answer.cookies


async def test_an_address_that_failed_too_often_is_refused_without_counting_the_refusal(
    browser: Browser, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(TRIES):
        assert (await browser.sign_in(password=WRONG)).status_code == 401
    assert len(browser.site.throttle.failures["127.0.0.1"]) == TRIES
    caplog.clear()
    caplog.set_level(logging.WARNING, "patchbay.auth")
    answer = await browser.sign_in()  # the right password, from a throttled address
    assert answer.status_code == 401 and SESSION not in answer.cookies
    assert alert(REFUSED) in main_of(answer)
    assert browser.site.audited[-1] == (
        "auth.sign_in",
        {"username": "ada", "outcome": "throttled", "address": "127.0.0.1", "page": PREFIX},
    )
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.auth"] == [
        "sign-in at /things/ failed: user='ada' address=127.0.0.1 outcome=throttled"
    ]
    assert len(browser.site.throttle.failures["127.0.0.1"]) == TRIES
    browser.site.clock.now += 60
    assert (await browser.sign_in()).status_code == 303


async def test_a_sign_in_from_an_unknown_address_is_counted_as_unknown(site: Site) -> None:
    fields = {"csrf": "t", "username": "ada", "password": WRONG}
    body = "&".join(f"{k}={v.replace(' ', '+')}" for k, v in fields.items()).encode()
    scope = {
        "type": "http",
        "method": "POST",
        "path": PREFIX + "k1/login",
        "path_params": {"key": "k1"},
        "query_string": b"",
        "headers": [
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
            (b"cookie", f"{LOGIN_CSRF}=t".encode()),
        ],
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    answer = await site.signin.login(Request(scope, receive))
    assert answer.status_code == 401
    assert site.audited == [
        ("auth.sign_in", {"username": "ada", "outcome": "invalid", "address": "unknown", "page": PREFIX})
    ]
    assert list(site.throttle.failures) == ["unknown"]


async def test_with_local_sign_in_off_the_form_points_to_the_organisations_account(site: Site) -> None:
    site.signin.attach_provider(provider(), "https://idp.example.com", True)
    async for browser in _browser(site):
        fields = await browser.login_form()
        site.signin.local_login = False
        answer = await browser.http.post(PREFIX + "k1/login", data={**fields, "username": "ada", "password": PASSWORD})
        assert answer.status_code == 400
        csrf = login_csrf_of(answer)
        assert main_of(answer) == PROMPT.format(key="k1") + alert(escape(ORGANISATION)) + button_form("k1", csrf)
        assert SESSION not in answer.cookies
        assert site.audited == [] and site.throttle.failures == {}


# -- a form posted on a signed-in page -----------------------------------------------------------------------------


async def test_a_form_posted_by_the_person_signed_in_with_the_pages_token_is_taken(browser: Browser) -> None:
    await browser.sign_in()
    token = await browser.token()
    answer = await browser.http.post(PREFIX + "k1/do", data={"csrf": token, "note": "hello"})
    assert answer.status_code == 200 and answer.text == "done by ada: hello"


async def test_a_form_posted_signed_out_shows_the_sign_in_page_again(browser: Browser) -> None:
    answer = await browser.http.post(PREFIX + "k1/do", data={"csrf": "x", "note": "hello"})
    assert answer.status_code == 401
    assert title_of(answer) == "Sign in · Test Server"
    csrf = login_csrf_of(answer)
    assert main_of(answer) == PROMPT.format(key="k1") + alert(SIGNED_OUT) + local_form("k1", csrf, True)


async def test_a_form_posted_with_a_session_the_store_does_not_know_shows_the_sign_in_page(browser: Browser) -> None:
    browser.http.cookies.set(SESSION, "not-a-session", domain="testserver", path=PATH)
    answer = await browser.http.post(PREFIX + "k1/do", data={"csrf": _token("not-a-session", "k1")})
    assert answer.status_code == 401 and alert(SIGNED_OUT) in main_of(answer)


@pytest.mark.parametrize("case", ["missing", "other-page", "other-session", "tampered"])
async def test_a_form_without_the_pages_token_has_expired(browser: Browser, case: str) -> None:
    await browser.sign_in()
    token = await browser.token()
    session = browser.http.cookies[SESSION]
    csrf = {
        "missing": None,
        "other-page": _token(session, "k2"),
        "other-session": _token("another-session", "k1"),
        "tampered": token[::-1],
    }[case]
    data = {"note": "hello"} if csrf is None else {"csrf": csrf, "note": "hello"}
    answer = await browser.http.post(PREFIX + "k1/do", data=data)
    assert answer.status_code == 403
    assert title_of(answer) == "Form expired" and main_of(answer) == EXPIRED_PAGE


async def test_a_form_on_a_signed_in_page_is_read_within_the_limits(engine: Engine) -> None:
    site = Site(engine, max_form_bytes=300)
    async for browser in _browser(site):
        await browser.sign_in()
        token = await browser.token()
        fields = {"csrf": token, "a": "1", "b": "2", "c": "3"}
        size = len("&".join(f"{k}={v}" for k, v in fields.items())) + len("&note=")
        fits = await browser.http.post(PREFIX + "k1/do", data={**fields, "note": "n" * (300 - size)})
        assert fits.status_code == 200 and fits.text == "done by ada: " + "n" * (300 - size)
        over = await browser.http.post(PREFIX + "k1/do", data={**fields, "note": "n" * (301 - size)})
        assert over.status_code == 413
        assert over.json()["error_description"] == "the request body is larger than this endpoint accepts (300 bytes)"
        many = await browser.http.post(PREFIX + "k1/do", data={**fields, "note": "x", "d": "4"})
        assert many.status_code == 400
        assert many.json()["error_description"] == "the form has more than 5 fields"
