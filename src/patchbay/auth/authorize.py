"""The authorization endpoint and its pages (RFC 6749 §4.1.1-4.1.2, OAuth 2.1 §4.1, RFC 7636, RFC 8707, RFC 9207).

``GET /authorize`` validates the request, remembers it, and shows the sign-in page (or, for a browser already
signed in, the consent page, or nothing when consent was given before). ``POST /authorize/login`` and
``POST /authorize/consent`` carry the request handle and a CSRF token bound to a cookie of the browser that
opened the request. Errors about the client or its redirect URI are shown as a page and never redirected
(RFC 6749 §4.1.2.1); every other error goes back to the client with ``state`` and ``iss``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from patchbay.auth.cimd import MetadataDocuments, is_metadata_url
from patchbay.auth.clients import Client, is_loopback_host
from patchbay.auth.core import Core
from patchbay.auth.crypto import CHALLENGE, digest, new_secret, same
from patchbay.auth.errors import OAuthError
from patchbay.auth.grants import Pending
from patchbay.auth.pages import PageContext, consent_page, error_page, login_page
from patchbay.auth.users import UserView

SESSION_COOKIE = "patchbay_session"
SESSION_SECONDS = 8 * 3600
CSRF_COOKIE = "patchbay_csrf_"
LOGIN_MESSAGES = {
    "invalid": "Wrong username or password.",
    "locked": "Too many failed attempts: this account is locked for a while. Try again later.",
    "disabled": "This account is disabled. Ask your administrator.",
}


def redirect(uri: str, params: dict[str, str | None]) -> Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return RedirectResponse(f"{uri}{'&' if '?' in uri else '?'}{query}", 302, headers={"Cache-Control": "no-store"})


@dataclass
class Authorization:
    core: Core
    server_name: str
    documents: MetadataDocuments | None = None
    upstream_name: str | None = None
    upstream_origin: str | None = None
    local_login: bool = True

    # -- clients ------------------------------------------------------------------------------------------------

    async def find_client(self, client_id: str) -> Client | None:
        """A registered client, or one described by a client ID metadata document (fetched, then recorded).

        Raises:
            OAuthError: invalid_client when a metadata document cannot be fetched or is invalid.
        """
        core = self.core
        known = await core.run(core.clients.get, client_id)
        if known is not None and known.kind != "cimd":
            return known
        if self.documents is None or not is_metadata_url(client_id):
            return known
        fresh = await self.documents.resolve(client_id)
        if known is not None and known.revoked:
            return known
        if known is None or (known.redirect_uris, known.name) != (fresh.redirect_uris, fresh.name):
            return await core.run(core.clients.save, fresh)
        return known

    # -- GET /authorize -----------------------------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        query = request.query_params
        client_id = query.get("client_id")
        if not client_id:
            return error_page("Cannot sign in", "The request names no client_id. Start again from your app.")
        try:
            client = await self.find_client(client_id)
        except OAuthError as exc:
            return error_page("Unknown application", exc.description)
        if client is None or client.revoked:
            return error_page("Unknown application", "This application is not registered here (or was removed).")
        redirect_uri = query.get("redirect_uri")
        if redirect_uri is None and len(client.redirect_uris) == 1:
            redirect_uri = client.redirect_uris[0]
        if redirect_uri is None or not client.redirect_allowed(redirect_uri):
            return error_page("Cannot sign in", "redirect_uri is missing or is not registered for this application.")
        state = query.get("state")
        try:
            pending = self._validate(query, client, redirect_uri, state)
        except OAuthError as exc:
            return self._fail(redirect_uri, exc.error, exc.description, state)
        csrf = new_secret()
        handle = await self.core.run(
            self.core.grants.open_request,
            Pending(
                client_id=client.client_id,
                redirect_uri=redirect_uri,
                state=state,
                code_challenge=pending.code_challenge,
                scope=pending.scope,
                resource=pending.resource,
                csrf_hash=digest(csrf),
            ),
        )
        stored = await self.core.run(self.core.grants.request, handle)
        assert stored is not None
        ctx = self._context(client, stored, handle, csrf)
        user = await self.core.run(self.core.users.browser_session_user, request.cookies.get(SESSION_COOKIE))
        response = await self.signed_in(ctx, client, stored, user) if user is not None else self.login_form(ctx)
        self._set_cookie(response, CSRF_COOKIE + digest(handle)[:16], csrf, 600)
        return response

    def _validate(self, query: Any, client: Client, redirect_uri: str, state: str | None) -> Pending:
        if query.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code is supported")
        challenge = query.get("code_challenge")
        if query.get("code_challenge_method") != "S256" or not challenge or not CHALLENGE.match(challenge):
            raise OAuthError("invalid_request", "PKCE is required: send code_challenge with code_challenge_method=S256")
        resources = query.getlist("resource")
        if any(not self.core.config.resource_matches(r) for r in resources):
            raise OAuthError("invalid_target", f"resource must be this server's MCP URL, {self.core.config.resource}")
        return Pending(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_challenge=challenge,
            scope=self.grantable(query.get("scope"), client),
            resource=self.core.config.resource,
        )

    def grantable(self, requested: str | None, client: Client) -> str:
        """The scopes to grant: those asked for that exist and the client may have; the defaults when none is
        left (ChatGPT reconnects without ``scope``; unknown scopes such as ``openid`` are dropped)."""
        config = self.core.config
        allowed = set(config.scopes_supported) if client.scopes is None else set(client.scopes)
        asked = list(dict.fromkeys((requested or "").split()))
        granted = [s for s in asked if s in allowed or s == "offline_access"]
        if not [s for s in granted if s != "offline_access"]:
            defaults = [s for s in config.default_scopes if s in allowed]
            granted = [*defaults, *granted]
        return " ".join(granted)

    # -- sign-in, consent, code ---------------------------------------------------------------------------------

    def login_form(self, ctx: PageContext, error: str | None = None, status: int = 200) -> Response:
        upstream = self.upstream_name
        response: Response = login_page(
            ctx, error=error, upstream=upstream, upstream_origin=self.upstream_origin, status=status
        )
        return response

    async def signed_in(self, ctx: PageContext, client: Client, pending: Pending, user: UserView) -> Response:
        core = self.core
        await core.run(core.grants.sign_in, ctx.handle, user.id)
        if await core.run(core.grants.consented, user.id, client.client_id, pending.scope):
            return await self.issue(ctx.handle, pending, user.id)
        loopback_only = client.kind == "cimd" and all(_is_loopback_uri(u) for u in client.redirect_uris)
        return consent_page(
            ctx, user=user.display_name or user.username, scopes=pending.scope.split(), loopback_only=loopback_only
        )

    async def issue(self, handle: str, pending: Pending, user_id: int) -> Response:
        core = self.core
        code = await core.run(core.grants.issue_code, pending, user_id)
        await core.run(core.grants.close_request, handle)
        # RFC 9207: iss lets the client tell which authorization server answered (mix-up attacks).
        return redirect(pending.redirect_uri, {"code": code, "state": pending.state, "iss": core.config.issuer})

    def _fail(self, redirect_uri: str, error: str, description: str, state: str | None) -> Response:
        params = {"error": error, "error_description": description, "state": state, "iss": self.core.config.issuer}
        return redirect(redirect_uri, params)

    async def resume(self, request: Request) -> tuple[str, Pending, Client, str] | Response:
        """The pending request a form refers to, checked against the browser's CSRF cookie; or an error page."""
        form = await request.form()
        handle, csrf = str(form.get("request", "")), str(form.get("csrf", ""))
        pending = await self.core.run(self.core.grants.request, handle) if handle else None
        if pending is None:
            return error_page("Sign-in expired", "This sign-in request has expired. Start again from your app.")
        cookie = request.cookies.get(CSRF_COOKIE + digest(handle)[:16], "")
        if not csrf or not same(digest(csrf), pending.csrf_hash) or not same(cookie, csrf):
            return error_page("Form expired", "This form was not opened in this browser. Start again.", 403)
        client = await self.core.run(self.core.clients.get, pending.client_id)
        if client is None or client.revoked:
            return error_page("Unknown application", "This application was removed.")
        return handle, pending, client, csrf

    async def login(self, request: Request) -> Response:
        resumed = await self.resume(request)
        if isinstance(resumed, Response):
            return resumed
        handle, pending, client, csrf = resumed
        ctx = self._context(client, pending, handle, csrf)
        if not self.local_login:
            return self.login_form(ctx, "Sign in with your organisation's account.", 400)
        form = await request.form()
        core = self.core
        outcome, user = await core.run(core.users.verify, str(form.get("username", "")), str(form.get("password", "")))
        if outcome != "ok" or user is None:
            return self.login_form(ctx, LOGIN_MESSAGES[outcome], 401)
        response = await self.signed_in(ctx, client, pending, user)
        await self.start_browser_session(response, user.id)
        return response

    async def start_browser_session(self, response: Response, user_id: int) -> None:
        cookie = await self.core.run(self.core.users.open_browser_session, user_id, SESSION_SECONDS)
        self._set_cookie(response, SESSION_COOKIE, cookie, SESSION_SECONDS)

    async def consent(self, request: Request) -> Response:
        resumed = await self.resume(request)
        if isinstance(resumed, Response):
            return resumed
        handle, pending, client, _ = resumed
        if pending.user_id is None:
            return error_page("Not signed in", "Sign in first. Start again from your app.", 403)
        form = await request.form()
        core = self.core
        if form.get("decision") != "allow":
            await core.run(core.grants.close_request, handle)
            return self._fail(pending.redirect_uri, "access_denied", "the user denied access", pending.state)
        await core.run(core.grants.remember_consent, pending.user_id, client.client_id, pending.scope)
        return await self.issue(handle, pending, pending.user_id)

    def _context(self, client: Client, pending: Pending, handle: str, csrf: str) -> PageContext:
        return PageContext(client.name, pending.redirect_uri, handle, csrf, self.server_name)

    def _set_cookie(self, response: Response, name: str, value: str, max_age: int) -> None:
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path="/authorize",
            httponly=True,
            samesite="lax",
            secure=self.core.config.secure_cookies,
        )


def _is_loopback_uri(uri: str) -> bool:
    from urllib.parse import urlsplit

    return is_loopback_host(urlsplit(uri).hostname or "")
