"""The link pages: where a person signed in to Patchbay links their account at a connector's upstream.

``GET /links/to/{connector}`` signs the person in as the OAuth pages do (local accounts and, with
``[auth.upstream]``, the organisation's provider: ``patchbay.auth.page_signin``, shared with the approval page)
and shows one "Link" button; its POST (CSRF token bound to the session and the
connector) sends them to the upstream's authorization server. ``GET /links/callback`` takes the answer, checks
that the person who comes back is the one who left (``state`` is bound to them), stores the tokens sealed and
says so. ``GET /links/client-metadata.json`` is Patchbay's client ID metadata document for upstream servers that
accept them. The session cookie is ``SameSite=Lax`` (the callback is a top-level navigation from the upstream),
HttpOnly, scoped to ``/links`` and ``Secure`` on an https public URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.page_signin import PageCookies, PageSignIn, page_token
from patchbay.auth.pages import _page, error_page
from patchbay.links.credentials import LinkError
from patchbay.links.hub import CALLBACK_PATH, CLIENT_DOCUMENT_PATH, LINK_PATH, LinkHub
from patchbay.links.store import Pending

log = logging.getLogger("patchbay.links")
# SameSite=Lax: the upstream's answer (/links/callback) is a cross-site top-level navigation that must carry it.
COOKIES = PageCookies("patchbay_linker", "/links", "lax")
SESSION_SECONDS = 900
NO_SUCH = ("No such connection", "No connector here links accounts under this name.")


def link_token(session_cookie: str, connector: str) -> str:
    """The Link form's CSRF token: bound to the person's session and to this connector."""
    return page_token(session_cookie, "patchbay-link", connector)


@dataclass
class LinkPages:
    hub: LinkHub
    signin: PageSignIn
    server_name: str

    def routes(self) -> list[BaseRoute]:
        return [
            Route(CALLBACK_PATH, self.callback, methods=["GET"]),
            Route(CLIENT_DOCUMENT_PATH, self.client_document, methods=["GET"]),
            Route(LINK_PATH + "{connector}", self.show, methods=["GET"]),
            Route(LINK_PATH + "{connector}/start", self.start, methods=["POST"]),
            *self.signin.routes(),
        ]

    def prompt(self, name: str) -> str:
        """The sign-in page's heading and introduction."""
        return (
            f"<h1>Sign in to link {escape(name)}</h1><p>Sign in to {escape(self.server_name)} first, so the link "
            "is made for your account.</p>"
        )

    # -- GET /links/to/{connector} ------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        name = request.path_params["connector"]
        if name not in self.hub.user_oauth:
            return error_page(*NO_SUCH, 404)
        signed_in = await self.signin.user(request)
        if signed_in is None:
            return self.signin.page(name)
        user, cookie = signed_in
        body = (
            f"<h1>Link your {escape(name)} account</h1><p>Signed in to {escape(self.server_name)} as "
            f"<strong>{escape(user.username)}</strong>.</p><p>You will be sent to the sign-in of the system behind "
            f"<code>{escape(name)}</code>. After you agree there, {escape(self.server_name)} calls it for you alone, "
            "with your own account.</p>"
            f'<form method="post" action="{LINK_PATH}{escape(name)}/start">'
            f'<input type="hidden" name="csrf" value="{escape(link_token(cookie, name))}">'
            '<button type="submit" autofocus>Link account</button></form>'
            '<p class="note">You can remove the link at any time; your administrator can too.</p>'
        )
        return _page(f"Link {name} · {self.server_name}", body)

    # -- POST /links/to/{connector}/start -----------------------------------------------------------------------

    async def start(self, request: Request) -> Response:
        name = request.path_params["connector"]
        credentials = self.hub.user_oauth.get(name)
        if credentials is None:
            return error_page(*NO_SUCH, 404)
        signed = await self.signin.signed_form(request, name, link_token)
        if isinstance(signed, Response):
            return signed
        user = signed[0]
        try:
            target = await credentials.begin(f"user:{user.username}")
        except LinkError as exc:
            return error_page("Cannot link now", str(exc), 502)
        return RedirectResponse(target, 303, headers={"Cache-Control": "no-store"})

    # -- GET /links/callback --------------------------------------------------------------------------------------

    async def callback(self, request: Request) -> Response:
        query = request.query_params
        state = query.get("state")
        if not state:
            return error_page("Link failed", "The answer carries no state; start again from the link page.", 400)
        pending: Pending | None = await self.hub.run(self.hub.store.take_pending, state)
        if pending is None:
            return error_page("Link expired", "This link attempt is unknown or expired; start again.", 400)
        signed_in = await self.signin.user(request)
        user = signed_in[0] if signed_in is not None else None
        if user is None or f"user:{user.username}" != pending.subject:
            # The state was issued to another person (or this browser is signed out): never store the tokens.
            return error_page("Link refused", "This link was started by another account; start again yourself.", 403)
        credentials = self.hub.user_oauth.get(pending.connector)
        if credentials is None:
            return error_page(*NO_SUCH, 404)
        if query.get("error"):
            reason = (query.get("error_description") or query["error"])[:300]
            return error_page("Link not made", f"The sign-in at {pending.connector} ended: {reason}", 400)
        code = query.get("code")
        if not code:
            return error_page("Link failed", "The answer carries no authorization code; start again.", 400)
        try:
            await credentials.complete(pending, code, query.get("iss"))
        except LinkError as exc:
            self.hub.audit("links.link", connector=pending.connector, subject=pending.subject, outcome="error")
            return error_page("Link failed", str(exc), 502)
        log.info("links: %s linked an account for %s", pending.subject, pending.connector)
        self.hub.audit("links.link", connector=pending.connector, subject=pending.subject, outcome="ok")
        body = (
            f'<h1>Linked</h1><p role="status">Your {escape(pending.connector)} account is linked to '
            f"<strong>{escape(user.username)}</strong> on {escape(self.server_name)}.</p>"
            "<p>Go back to your assistant and try again.</p>"
        )
        return _page(f"Linked · {self.server_name}", body)

    # -- GET /links/client-metadata.json --------------------------------------------------------------------------

    async def client_document(self, request: Request) -> Response:
        # draft-ietf-oauth-client-id-metadata-document: client_id is this document's own URL.
        document: dict[str, Any] = {
            "client_id": self.hub.client_document_url,
            "client_name": f"{self.server_name} (Patchbay)",
            "redirect_uris": [self.hub.redirect_uri],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }
        return JSONResponse(document, headers={"Cache-Control": "public, max-age=3600"})


def build(hub: LinkHub, auth: Any, audit: Any) -> LinkPages:
    """The link pages of an app; ``auth`` is its AuthServer (account linking needs sign-in on)."""
    hub.share_engine(auth.core.engine)
    hub.epoch = auth.core  # a link removed anywhere stops being used on the next call (remove_accounts)
    if audit is not None:
        hub.audit = audit.event
    settings = hub.settings
    signin = PageSignIn(
        auth.core.users,
        auth.authorization.throttle,
        hub.run,
        COOKIES,
        LINK_PATH,
        prompt=lambda name: pages.prompt(name),
        known=lambda name: name in hub.user_oauth,
        server_name=settings.server.name,
        session_seconds=SESSION_SECONDS,
        continue_label="Continue to the link page",
        missing=NO_SUCH,
        max_form_bytes=settings.auth.max_form_bytes,
        secure_cookies=settings.public_url.startswith("https://"),
        audit=lambda method, **fields: hub.audit(method, **fields),
    )
    pages = LinkPages(hub, signin, settings.server.name)
    signin.offer_provider_of(auth)
    return pages
