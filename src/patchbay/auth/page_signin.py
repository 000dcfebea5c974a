"""Sign-in for Patchbay's own pages (the approval page, the link pages, an admin console): what the OAuth sign-in
page offers, in one piece, so a person signs in on every page of Patchbay the same way.

Local accounts go through ``Users.verify`` (its account lock, the per-address throttle, one refusal message); with
``[auth.upstream]`` the organisation's OpenID provider's button is offered too, and the local form only while local
sign-in is on (``patchbay.auth.authorize.Authorization.local_login``). The provider's round trip is the OAuth
page's own (``UpstreamLogin``: code flow with PKCE, ``state`` and ``nonce``, the ID token checked, roles from
``role_map``) and returns to the one redirect URI the provider knows, ``/authorize/callback``. A page's round trip
is remembered in its own short cookie scoped to that callback (state, PKCE verifier, nonce, the page's key), so a
callback is claimed only by the page whose state this browser holds (login CSRF, OpenID Connect Core §3.1.2.7);
``SameSite=Lax``, because the provider sends the browser back with a cross-site top-level GET.

Each page family has its own cookies (``PageCookies``: the session, the login form's CSRF token and the provider
round trip), its own address prefix and session length; the session is a browser session of the accounts' table,
in an HttpOnly cookie scoped to the pages' path (``Secure`` when the public URL is https).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any, Literal

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.body import Form, read_form
from patchbay.auth.crypto import new_secret, same
from patchbay.auth.errors import OAuthError
from patchbay.auth.lockout import Throttle
from patchbay.auth.pages import DISABLED, REFUSED, _page, error_page
from patchbay.auth.redirects import csp_source

if TYPE_CHECKING:
    from patchbay.auth.oidc import UpstreamLogin
    from patchbay.auth.users import Users, UserView  # the account store imports argon2 and SQLAlchemy

log = logging.getLogger("patchbay.auth")
CALLBACK_PATH = "/authorize/callback"
FORM_SECONDS = 600
# A page's key travels in the provider round trip's cookie, joined with ".": never one of its characters.
KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
EXPIRED = "This form was not opened in this browser. Open the link again."
Run = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class PageCookies:
    """The cookies of one family of pages: ``session`` (and ``<session>_csrf``, ``<session>_idp``) under ``path``."""

    session: str
    path: str
    same_site: Literal["strict", "lax"]

    @property
    def login_csrf(self) -> str:
        return f"{self.session}_csrf"

    @property
    def idp(self) -> str:
        return f"{self.session}_idp"


def _no_audit(method: str, **fields: Any) -> None:
    return None


def page_token(session_cookie: str, purpose: str, key: str) -> str:
    """A page form's CSRF token: bound to the person's session, to the form's ``purpose`` and to the page's key, so
    a page of another site can neither post the form nor reuse a token for another page."""
    return hmac.new(session_cookie.encode(), f"{purpose}\0{key}".encode(), hashlib.sha256).hexdigest()


@dataclass
class PageSignIn:
    """Sign-in for the pages at ``prefix + key`` (``/approvals/<id>``, ``/links/to/<connector>``).

    ``prompt(key)`` is the sign-in page's heading and introduction (HTML); ``known(key)`` whether a key names a
    page; ``run`` runs a blocking store call in a worker thread. Serve ``routes()`` (``<prefix><key>/login`` and,
    with a provider, ``<prefix><key>/upstream``) and call ``attach_provider`` when ``[auth.upstream]`` is set.
    """

    users: Users
    throttle: Throttle
    run: Run
    cookies: PageCookies
    prefix: str
    prompt: Callable[[str], str]
    known: Callable[[str], bool]
    server_name: str
    session_seconds: int
    continue_label: str = "Continue"
    missing: tuple[str, str] = ("Not found", "There is nothing at this address.")
    max_form_bytes: int = 64 * 1024
    secure_cookies: bool = False
    upstream: UpstreamLogin | None = None
    upstream_origin: str | None = None
    local_login: bool = True
    # Records an audit event: audit(method, **fields); set by the page's owner (its audit may come later).
    audit: Callable[..., None] = _no_audit

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = [Route(self.prefix + "{key}/login", self.login, methods=["POST"])]
        if self.upstream is not None:
            routes.append(Route(self.prefix + "{key}/upstream", self.start_upstream, methods=["POST"]))
        return routes

    def attach_provider(self, upstream: UpstreamLogin, origin: str | None, local_login: bool) -> None:
        """Offer the organisation's provider (an ``UpstreamLogin``) as the OAuth sign-in page does."""
        self.upstream, self.upstream_origin, self.local_login = upstream, origin, local_login
        upstream.claimants.append(self.claim)

    def offer_provider_of(self, auth: Any) -> None:
        """Offer the provider of ``auth`` (the app's AuthServer, or None) when it has ``[auth.upstream]``."""
        upstream = getattr(auth, "upstream", None)
        if upstream is not None:
            self.attach_provider(upstream, auth.authorization.upstream_origin, auth.authorization.local_login)

    def page_of(self, key: str) -> str:
        return f"{self.prefix}{key}"

    def _known(self, key: str) -> bool:
        return bool(KEY.match(key)) and self.known(key)

    # -- who is signed in ---------------------------------------------------------------------------------------

    async def user(self, request: Request) -> tuple[UserView, str] | None:
        """The signed-in person and their session cookie (CSRF tokens derive from it); None when signed out."""
        cookie = request.cookies.get(self.cookies.session)
        user: UserView | None = await self.run(self.users.browser_session_user, cookie)
        return (user, cookie) if user is not None and cookie is not None else None

    async def signed_form(
        self, request: Request, key: str, token: Callable[[str, str], str]
    ) -> tuple[UserView, str, Form] | Response:
        """A form posted on the page at ``key`` by the person signed in there (with their session cookie), its
        ``csrf`` field checked against ``token(session_cookie, key)``; or the page saying why not (too large,
        signed out, not opened in this browser)."""
        try:
            form = await read_form(request, self.max_form_bytes, max_fields=5)
        except OAuthError as exc:
            return exc.response()
        signed_in = await self.user(request)
        if signed_in is None:
            return self.page(key, "Your sign-in expired. Sign in again.", 401)
        user, cookie = signed_in
        if not same(form.get("csrf") or "", token(cookie, key)):
            return error_page("Form expired", EXPIRED, 403)
        return user, cookie, form

    async def open_session(self, response: Response, user_id: int) -> None:
        """Open the person's browser session and set its cookie on ``response``."""
        cookie = await self.run(self.users.open_browser_session, user_id, float(self.session_seconds))
        self._cookie(response, self.cookies.session, cookie, self.session_seconds)

    # -- the sign-in page -----------------------------------------------------------------------------------------

    def page(self, key: str, error: str | None = None, status: int = 200) -> Response:
        """The sign-in page for ``key``: the provider's button and/or the local account form."""
        csrf = new_secret()
        alert = f'<p class="error" role="alert" id="login-error">{escape(error)}</p>' if error else ""
        described = ' aria-describedby="login-error"' if error else ""
        hidden = f'<input type="hidden" name="csrf" value="{escape(csrf)}">'
        action = escape(self.page_of(key))
        parts = [self.prompt(key), alert]
        if self.upstream is not None:
            name = escape(self.upstream.settings.display_name)
            parts.append(
                f'<form method="post" action="{action}/upstream">{hidden}'
                f'<button type="submit">Sign in with {name}</button></form>'
            )
            if self.local_login:
                parts.append('<p class="note">Or with a local account:</p>')
        if self.local_login:
            parts.append(
                f'<form method="post" action="{action}/login">{hidden}'
                f'<label for="username">Username</label><input type="text" id="username" name="username" '
                f'autocomplete="username" required autofocus{described}>'
                '<label for="password">Password</label><input type="password" id="password" name="password" '
                'autocomplete="current-password" required><button type="submit">Sign in</button></form>'
            )
        # The provider's form answers with a redirect to the provider, which form-action must allow too.
        targets = (csp_source(self.upstream_origin) if self.upstream is not None and self.upstream_origin else None,)
        response = _page(f"Sign in · {self.server_name}", "".join(parts), status, targets)
        self._cookie(response, self.cookies.login_csrf, csrf, FORM_SECONDS)
        return response

    async def _form(self, request: Request) -> Form | Response:
        """The sign-in form, checked against the browser's login CSRF cookie; or the page saying why not."""
        if not self._known(request.path_params["key"]):
            return error_page(*self.missing, 404)
        try:
            form = await read_form(request, self.max_form_bytes, max_fields=5)
        except OAuthError as exc:
            return exc.response()
        given = form.get("csrf") or ""
        if not given or not same(given, request.cookies.get(self.cookies.login_csrf, "")):
            return error_page("Form expired", EXPIRED, 403)
        return form

    # -- POST <prefix><key>/login ---------------------------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        key = request.path_params["key"]
        form = await self._form(request)
        if isinstance(form, Response):
            return form
        if not self.local_login:
            return self.page(key, "Sign in with your organisation's account.", 400)
        address = request.client.host if request.client else "unknown"
        username, password = form.get("username") or "", form.get("password") or ""
        blocked = await self.throttle.blocked(address)
        attempt = await self.run(lambda: self.users.verify(username, password, address_blocked=blocked))
        if attempt.outcome != "ok" or attempt.user is None:
            if attempt.outcome != "throttled":
                await self.throttle.failed(address)
            log.warning(
                "sign-in at %s failed: user=%r address=%s outcome=%s",
                self.prefix,
                username[:100],
                address,
                attempt.outcome,
            )
            self.audit(
                "auth.sign_in",
                username=username.strip()[:100],
                outcome=attempt.outcome,
                address=address,
                page=self.prefix,
            )
            return self.page(key, DISABLED if attempt.outcome == "disabled" else REFUSED, 401)
        self.audit("auth.sign_in", username=attempt.user.username, outcome="ok", address=address, page=self.prefix)
        response = RedirectResponse(self.page_of(key), 303, headers={"Cache-Control": "no-store"})
        await self.open_session(response, attempt.user.id)
        response.delete_cookie(self.cookies.login_csrf, path=self.cookies.path)
        return response

    # -- POST <prefix><key>/upstream and its callback ----------------------------------------------------------

    async def start_upstream(self, request: Request) -> Response:
        """Send the browser to the organisation's provider; its answer comes back to this page."""
        from patchbay.outbound import FetchError

        form = await self._form(request)
        if isinstance(form, Response):
            return form
        assert self.upstream is not None  # the route exists only with a provider
        key = request.path_params["key"]
        state, verifier, nonce = new_secret(), new_secret(), new_secret()[:32]
        try:
            location = await self.upstream.authorization_url(state, verifier, nonce)
        except (FetchError, KeyError):
            name = self.upstream.settings.display_name
            return error_page("Sign-in unavailable", f"Cannot reach {name}'s sign-in.", 502)
        response = RedirectResponse(location, 302, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            self.cookies.idp,
            ".".join((state, verifier, nonce, key)),
            max_age=FORM_SECONDS,
            path=CALLBACK_PATH,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
        )
        response.delete_cookie(self.cookies.login_csrf, path=self.cookies.path)
        return response

    async def claim(self, request: Request) -> Response | None:
        """The answer to a provider callback this browser started on one of these pages; None for any other."""
        parts = request.cookies.get(self.cookies.idp, "").split(".")
        state = request.query_params.get("state") or ""
        if len(parts) != 4 or not state or not same(state, parts[0]) or not KEY.match(parts[3]):
            return None
        _, verifier, nonce, key = parts
        response = await self._finish(request, verifier, nonce, key)
        response.delete_cookie(self.cookies.idp, path=CALLBACK_PATH)  # the state is single-use
        return response

    async def _finish(self, request: Request, verifier: str, nonce: str, key: str) -> Response:
        from patchbay.auth.oidc import UpstreamError
        from patchbay.outbound import FetchError

        assert self.upstream is not None  # only a page with a provider claims its callbacks
        query, name = request.query_params, self.upstream.settings.display_name
        if query.get("error"):
            return error_page("Sign-in cancelled", f"{name} answered: {query.get('error')}.")
        code = query.get("code")
        if not code:
            return error_page("Sign-in failed", f"{name} sent no sign-in code. Open the link again.")
        try:
            user: UserView = await self.upstream.sign_in(code, verifier, nonce)
        except UpstreamError as exc:
            return error_page("Sign-in failed", str(exc), 403)
        except FetchError:
            return error_page("Sign-in unavailable", f"Cannot reach {name}.", 502)
        log.info("signed in through %s at %s: user=%s", name, self.page_of(key), user.username)
        self.audit("auth.sign_in", username=user.username, outcome="ok", via=name, page=self.prefix)
        # A SameSite=Strict session cookie is not sent on a redirect that the provider's cross-site navigation
        # started, so the way back is a link (and a refresh) on this origin's own page.
        target = escape(self.page_of(key))
        body = (
            f"<h1>Signed in</h1><p>Signed in as <strong>{escape(user.username)}</strong>.</p>"
            f'<p><a class="button" href="{target}">{escape(self.continue_label)}</a></p>'
        )
        response = _page("Signed in", body)
        response.headers["Refresh"] = f"0; url={target}"
        await self.open_session(response, user.id)
        return response

    def _cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=self.cookies.path,
            httponly=True,
            samesite=self.cookies.same_site,
            secure=self.secure_cookies,
        )
