"""The authorization endpoint and its pages (RFC 6749 §4.1.1-4.1.2, OAuth 2.1 §4.1, RFC 7636, RFC 8707, RFC 9207).

``GET /authorize`` validates the request, remembers it, and shows the sign-in page (or, for a browser already
signed in, the consent page, or nothing when consent was given before). ``POST /authorize/login`` and
``POST /authorize/consent`` carry the request handle and a CSRF token bound to a cookie of the browser that
opened the request. Errors about the client or its redirect URI are shown as a page and never redirected
(RFC 6749 §4.1.2.1). Other errors go back to the client with ``state`` and ``iss`` only when the client is
configured by the operator (``[[auth.clients]]``); for a dynamically registered or URL-identified client, which
anyone can create with any redirect URI, they are shown as a page too, so ``/authorize`` is never an open
redirect before someone has signed in (RFC 9700 §4.11.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from patchbay.auth.body import Form, read_form
from patchbay.auth.cimd import MetadataDocuments, is_metadata_url
from patchbay.auth.clients import Client
from patchbay.auth.core import Core
from patchbay.auth.crypto import CHALLENGE, digest, new_secret, same
from patchbay.auth.errors import OAuthError
from patchbay.auth.grants import Pending
from patchbay.auth.lockout import AddressThrottle, Throttle
from patchbay.auth.pages import DISABLED, REFUSED, PageContext, consent_page, error_page, login_page
from patchbay.auth.redirects import is_loopback_host
from patchbay.auth.users import DEVICE_SECONDS, Attempt, UserView

log = logging.getLogger("patchbay.auth")
SESSION_COOKIE = "patchbay_session"
SESSION_SECONDS = 8 * 3600
CSRF_COOKIE = "patchbay_csrf_"
DEVICE_COOKIE = "patchbay_device"


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
    throttle: Throttle = field(init=False)  # the fleet's SharedThrottle on a fleet

    def __post_init__(self) -> None:
        auth = self.core.config.settings
        self.throttle = AddressThrottle(auth.login_attempts_per_address, auth.lockout_seconds)

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
            if client.kind == "config":
                return self._fail(redirect_uri, exc.error, exc.description, state)
            # RFC 9700 §4.11.2: redirect before authentication only to a URI the server trusts.
            return error_page(
                "Cannot sign in",
                f"{client.name} sent a request this server cannot accept: "
                f"{exc.description} ({exc.error}). Start again from your app.",
            )
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

    async def resume(self, request: Request) -> tuple[str, Pending, Client, str, Form] | Response:
        """The pending request a form refers to, checked against the browser's CSRF cookie, and the form; or an
        error page (a JSON error for a body that is too large or not a form)."""
        try:
            form = await read_form(request, self.core.config.settings.max_form_bytes, max_fields=10)
        except OAuthError as exc:
            return exc.response()
        handle, csrf = form.get("request") or "", form.get("csrf") or ""
        pending = await self.core.run(self.core.grants.request, handle) if handle else None
        if pending is None:
            return error_page("Sign-in expired", "This sign-in request has expired. Start again from your app.")
        cookie = request.cookies.get(CSRF_COOKIE + digest(handle)[:16], "")
        if not csrf or not same(digest(csrf), pending.csrf_hash) or not same(cookie, csrf):
            return error_page("Form expired", "This form was not opened in this browser. Start again.", 403)
        client = await self.core.run(self.core.clients.get, pending.client_id)
        if client is None or client.revoked:
            return error_page("Unknown application", "This application was removed.")
        return handle, pending, client, csrf, form

    async def login(self, request: Request) -> Response:
        resumed = await self.resume(request)
        if isinstance(resumed, Response):
            return resumed
        handle, pending, client, csrf, form = resumed
        ctx = self._context(client, pending, handle, csrf)
        if not self.local_login:
            return self.login_form(ctx, "Sign in with your organisation's account.", 400)
        core = self.core
        address = request.client.host if request.client else "unknown"
        username = form.get("username") or ""
        attempt = await core.run(
            core.users.verify,
            username,
            form.get("password") or "",
            device=request.cookies.get(DEVICE_COOKIE),
            address_blocked=await self.throttle.blocked(address),
        )
        if attempt.outcome != "ok" or attempt.user is None:
            await self._log_refusal(attempt, username, address)
            core.audit("auth.sign_in", username=username.strip()[:100], outcome=attempt.outcome, address=address)
            return self.login_form(ctx, DISABLED if attempt.outcome == "disabled" else REFUSED, 401)
        core.audit(
            "auth.sign_in", username=attempt.user.username, outcome="ok", address=address, client_id=client.client_id
        )
        response = await self.signed_in(ctx, client, pending, attempt.user)
        await self.start_browser_session(response, attempt.user.id)
        if attempt.device is not None:
            self._set_cookie(response, DEVICE_COOKIE, attempt.device, DEVICE_SECONDS)
        return response

    async def _log_refusal(self, attempt: Attempt, username: str, address: str) -> None:
        """Failures and locks go to the log with the name tried and the address, never the password."""
        name = username.strip()[:100]
        if attempt.outcome != "throttled":  # a throttled address's tries do not prolong its throttle
            blocks = await self.throttle.failed(address)
            log.warning(
                "sign-in failed: user=%r known=%s address=%s outcome=%s", name, attempt.known, address, attempt.outcome
            )
            if blocks:
                log.warning(
                    "sign-in throttled: address=%s made %d failed sign-ins within %d s",
                    address,
                    self.throttle.limit,
                    self.throttle.window,
                )
        else:
            log.warning("sign-in refused: user=%r address=%s outcome=%s", name, address, attempt.outcome)
        if attempt.locked_now:
            log.warning(
                "account locked: user=%r for %d s after %d wrong passwords in a row (last from address=%s)",
                name,
                self.core.config.settings.lockout_seconds,
                self.core.config.settings.login_attempts,
                address,
            )

    async def start_browser_session(self, response: Response, user_id: int) -> None:
        cookie = await self.core.run(self.core.users.open_browser_session, user_id, SESSION_SECONDS)
        self._set_cookie(response, SESSION_COOKIE, cookie, SESSION_SECONDS)

    async def consent(self, request: Request) -> Response:
        resumed = await self.resume(request)
        if isinstance(resumed, Response):
            return resumed
        handle, pending, client, _, form = resumed
        if pending.user_id is None:
            return error_page("Not signed in", "Sign in first. Start again from your app.", 403)
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
