"""Approvers who sign in through the organisation's OpenID provider (``[auth.upstream]``) on the approval page.

The round trip is the OAuth sign-in page's own (``patchbay.auth.oidc.UpstreamLogin``: authorization code with
PKCE, ``state`` and ``nonce``, the ID token checked against the provider's keys, roles from ``role_map``), and it
comes back to the one redirect URI the provider knows, ``/authorize/callback``. The approval page's sign-in is
remembered in its own short cookie (state, PKCE verifier, nonce, approval id) scoped to that callback, so the
callback it started is told apart from an OAuth one by the state, and a callback whose state this browser did not
start is not claimed (login CSRF, OpenID Connect Core §3.1.2.7). ``SameSite=Lax``: the provider sends the browser
back with a cross-site top-level GET, which a ``Strict`` cookie would not accompany.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from patchbay.auth.crypto import new_secret, same
from patchbay.auth.oidc import UpstreamError, UpstreamLogin
from patchbay.auth.pages import _page, error_page
from patchbay.outbound import FetchError

log = logging.getLogger("patchbay.gate")
IDP_COOKIE = "patchbay_approver_idp"
CALLBACK_PATH = "/authorize/callback"
IDP_COOKIE_SECONDS = 600
APPROVAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Opens the approver's session for a signed-in user id on the response (the approval page's cookie).
StartSession = Callable[[Response, int], Awaitable[None]]


@dataclass
class ApproverIdP:
    upstream: UpstreamLogin
    start_session: StartSession
    secure_cookies: bool = False

    @property
    def display_name(self) -> str:
        return self.upstream.settings.display_name

    async def start(self, approval_id: str) -> Response:
        """Send the browser to the provider; the callback comes back to this approval."""
        if not APPROVAL_ID.match(approval_id):
            return error_page("No such approval", "There is no approval request at this address.", 404)
        state, verifier, nonce = new_secret(), new_secret(), new_secret()[:32]
        try:
            location = await self.upstream.authorization_url(state, verifier, nonce)
        except (FetchError, KeyError):
            return error_page("Sign-in unavailable", f"Cannot reach {self.display_name}'s sign-in.", 502)
        response = RedirectResponse(location, 302, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            IDP_COOKIE,
            ".".join((state, verifier, nonce, approval_id)),
            max_age=IDP_COOKIE_SECONDS,
            path=CALLBACK_PATH,
            httponly=True,
            samesite="lax",
            secure=self.secure_cookies,
        )
        return response

    async def claim(self, request: Request) -> Response | None:
        """The answer to a provider callback this browser started on an approval page; None for any other."""
        parts = request.cookies.get(IDP_COOKIE, "").split(".")
        state = request.query_params.get("state") or ""
        if len(parts) != 4 or not state or not same(state, parts[0]):
            return None
        _, verifier, nonce, approval_id = parts
        response = await self._finish(request, verifier, nonce, approval_id)
        response.delete_cookie(IDP_COOKIE, path=CALLBACK_PATH)  # the state is single-use
        return response

    async def _finish(self, request: Request, verifier: str, nonce: str, approval_id: str) -> Response:
        query = request.query_params
        if query.get("error"):
            return error_page("Sign-in cancelled", f"{self.display_name} answered: {query.get('error')}.")
        code = query.get("code")
        if not code:
            return error_page("Sign-in failed", f"{self.display_name} sent no sign-in code. Open the link again.")
        try:
            user: Any = await self.upstream.sign_in(code, verifier, nonce)
        except UpstreamError as exc:
            return error_page("Sign-in failed", str(exc), 403)
        except FetchError:
            return error_page("Sign-in unavailable", f"Cannot reach {self.display_name}.", 502)
        log.info("approver signed in through %s: user=%s approval=%s", self.display_name, user.username, approval_id)
        # The approver's session cookie is SameSite=Strict: a browser does not send it on a redirect that a
        # cross-site navigation (the provider's) started, so the way back is a link on this origin's own page.
        target = f"/approvals/{approval_id}"
        body = (
            f"<h1>Signed in</h1><p>Signed in as <strong>{escape(user.username)}</strong>.</p>"
            f'<p><a class="button" href="{escape(target)}">Continue to the approval</a></p>'
        )
        response = _page("Signed in", body)
        response.headers["Refresh"] = f"0; url={target}"
        await self.start_session(response, user.id)
        return response
