"""Federated sign-in: people sign in at the organisation's OpenID provider (Okta, Entra ID, Google, Keycloak)
and Patchbay issues its own tokens afterwards, so the IdP needs no dynamic registration and its tokens never
reach an MCP client (nor an MCP client's token the IdP).

OpenID Connect Core §3.1 authorization code flow with PKCE (RFC 7636), ``state`` and ``nonce``. The ID token is
checked against the provider's JWKS (signature, ``iss``, ``aud`` = our client id, ``exp``, ``nonce``); its claims,
completed from the UserInfo endpoint, map to a local user record and Patchbay roles (``role_map``).
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import jwt
from jwt import PyJWKSet
from jwt.exceptions import InvalidTokenError, PyJWKError, PyJWKSetError
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.authorize import CSRF_COOKIE, Authorization
from patchbay.auth.core import Core
from patchbay.auth.crypto import digest, new_secret, s256, same
from patchbay.auth.external import issuer_metadata
from patchbay.auth.pages import DISABLED, PageContext, error_page
from patchbay.outbound import Fetcher, FetchError
from patchbay.settings import UpstreamOIDCSettings

UPSTREAM_COOKIE = "patchbay_upstream"
LEEWAY = 60


class UpstreamError(Exception):
    """Sign-in at the upstream provider failed; the message is shown to the person."""


class UpstreamLogin:
    def __init__(self, core: Core, settings: UpstreamOIDCSettings, *, fetcher: Fetcher) -> None:
        self.core = core
        self.settings = settings
        self.fetcher = fetcher
        self.redirect_uri = f"{core.config.issuer}/authorize/callback"
        self._metadata: dict[str, Any] | None = None
        self._keys: PyJWKSet | None = None
        self._keys_at = 0.0
        # Callback handlers of other sign-ins through this provider: each answers the callback it started, else None.
        self.claimants: list[Callable[[Request], Awaitable[Response | None]]] = []

    def routes(self, authorization: Authorization) -> list[BaseRoute]:
        self.authorization = authorization
        return [
            Route("/authorize/upstream", self.start, methods=["POST"]),
            Route("/authorize/callback", self.callback, methods=["GET"]),
        ]

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            self._metadata = await issuer_metadata(self.fetcher, self.settings.issuer)
        return self._metadata

    async def start(self, request: Request) -> Response:
        resumed = await self.authorization.resume(request)
        if isinstance(resumed, Response):
            return resumed
        handle = resumed[0]
        state, verifier, nonce = new_secret(), new_secret(), new_secret()[:32]
        try:
            location = await self.authorization_url(state, verifier, nonce)
        except (FetchError, KeyError):
            return error_page("Sign-in unavailable", f"Cannot reach {self.settings.display_name}'s sign-in.", 502)
        await self.core.run(self.core.grants.start_upstream, handle, state, verifier, nonce)
        response = RedirectResponse(location, 302, headers={"Cache-Control": "no-store"})
        response.set_cookie(
            UPSTREAM_COOKIE,
            handle,
            max_age=600,
            path="/authorize",
            httponly=True,
            samesite="lax",
            secure=self.core.config.secure_cookies,
        )
        return response

    async def authorization_url(self, state: str, verifier: str, nonce: str) -> str:
        """Where to send the browser: the provider's authorization endpoint with this sign-in's state, nonce and
        PKCE challenge (OpenID Connect Core §3.1.2.1).

        Raises:
            FetchError, KeyError: the provider's metadata cannot be fetched or names no authorization endpoint.
        """
        endpoint = (await self.metadata())["authorization_endpoint"]
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.settings.scopes),
                "state": state,
                "nonce": nonce,
                "code_challenge": s256(verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{endpoint}?{query}"

    async def sign_in(self, code: str, verifier: str, nonce: str) -> Any:
        """The local user record (``UserView``, roles from ``role_map``) for the person the provider signed in.

        Raises:
            UpstreamError: the provider's answer is not valid or the person may not sign in here.
            FetchError: the provider cannot be reached.
        """
        return await self._user(await self._claims(code, verifier, nonce))

    async def callback(self, request: Request) -> Response:
        query = request.query_params
        # The provider knows one redirect URI, this one: a sign-in started elsewhere (the approval page) claims
        # its own callbacks first, by the state it set in its own cookie.
        for claimant in self.claimants:
            claimed = await claimant(request)
            if claimed is not None:
                return claimed
        if query.get("error"):
            return error_page("Sign-in cancelled", f"{self.settings.display_name} answered: {query.get('error')}.")
        state, code = query.get("state"), query.get("code")
        found = await self.core.run(self.core.grants.upstream_request, state) if state else None
        handle = request.cookies.get(UPSTREAM_COOKIE, "")
        if found is None or not code or not handle or not same(digest(handle), found[0]):
            return error_page("Sign-in expired", "This sign-in is unknown or expired. Start again from your app.")
        _, pending, verifier, nonce = found
        csrf = request.cookies.get(CSRF_COOKIE + digest(handle)[:16], "")
        if not csrf or not same(digest(csrf), pending.csrf_hash):
            return error_page("Form expired", "This sign-in was not started in this browser. Start again.", 403)
        try:
            user = await self.sign_in(code, verifier, nonce)
        except UpstreamError as exc:
            return error_page("Sign-in failed", str(exc), 403)
        except FetchError:
            return error_page("Sign-in unavailable", f"Cannot reach {self.settings.display_name}.", 502)
        authz = self.authorization
        client = await self.core.run(self.core.clients.get, pending.client_id)
        if client is None or client.revoked:
            return error_page("Unknown application", "This application was removed.")
        ctx = PageContext(client.name, pending.redirect_uri, handle, csrf, authz.server_name)
        response = await authz.signed_in(ctx, client, pending, user)
        await authz.start_browser_session(response, user.id)
        response.delete_cookie(UPSTREAM_COOKIE, path="/authorize")
        return response

    async def _claims(self, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        metadata = await self.metadata()
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri,
            "code_verifier": verifier,
            "client_id": self.settings.client_id,
        }
        headers = {}
        secret = os.environ.get(self.settings.client_secret_env, "") if self.settings.client_secret_env else ""
        if secret:
            basic = base64.b64encode(f"{self.settings.client_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        fetched = await self.fetcher.request("POST", metadata["token_endpoint"], data=data, headers=headers)
        body = fetched.json() if fetched.status == 200 else {}
        id_token = body.get("id_token") if isinstance(body, dict) else None
        if not isinstance(id_token, str):
            raise UpstreamError(f"{self.settings.display_name} did not complete the sign-in (no ID token).")
        claims = await self._verify(id_token, metadata)
        if not same(str(claims.get("nonce", "")), nonce):
            raise UpstreamError("The sign-in response does not belong to this request (nonce).")
        access_token, endpoint = body.get("access_token"), metadata.get("userinfo_endpoint")
        if isinstance(access_token, str) and isinstance(endpoint, str):
            # OpenID Connect Core §5.4: with the code flow, claims asked for by scope (email, groups) may be
            # served only by UserInfo, not put in the ID token. The ID token's own claims win.
            claims = {**await self._userinfo(endpoint, access_token, claims["sub"]), **claims}
        return claims

    async def _userinfo(self, endpoint: str, access_token: str, subject: str) -> dict[str, Any]:
        fetched = await self.fetcher.request("GET", endpoint, headers={"Authorization": f"Bearer {access_token}"})
        info = fetched.json() if fetched.status == 200 else None
        # OpenID Connect Core §5.3.2: the UserInfo sub must equal the ID token's, else the response is not used.
        if not isinstance(info, dict) or info.get("sub") != subject:
            raise UpstreamError(f"{self.settings.display_name} did not confirm who signed in (UserInfo).")
        return info

    async def _verify(self, id_token: str, metadata: dict[str, Any]) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(id_token).get("kid")
        except InvalidTokenError:
            raise UpstreamError("The ID token is malformed.") from None
        if self._keys is None or (
            not any(k.key_id == kid for k in self._keys.keys) and time.monotonic() - self._keys_at > 60
        ):
            try:
                document = await self.fetcher.get_json(metadata["jwks_uri"])
                self._keys = PyJWKSet.from_dict(document if isinstance(document, dict) else {})
            except (PyJWKError, PyJWKSetError, KeyError):
                raise UpstreamError("The provider's signing keys are not usable.") from None
            self._keys_at = time.monotonic()
        for key in self._keys.keys:
            if kid is not None and key.key_id != kid:
                continue
            try:
                claims: dict[str, Any] = jwt.decode(
                    id_token,
                    key=key,
                    algorithms=["RS256", "ES256", "PS256", "EdDSA"],
                    audience=self.settings.client_id,
                    issuer=self.settings.issuer,
                    leeway=LEEWAY,
                    options={"require": ["exp", "iss", "aud", "sub"]},
                )
            except InvalidTokenError:
                continue
            return claims
        raise UpstreamError("The ID token's signature, issuer, audience or expiry is not valid.")

    async def _user(self, claims: dict[str, Any]) -> Any:
        settings = self.settings
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        if settings.allowed_domains:
            domain = (email or "").rpartition("@")[2].lower()
            if not email or domain not in {d.lower() for d in settings.allowed_domains}:
                raise UpstreamError("Your account's e-mail domain is not allowed to sign in here.")
        username = claims.get(settings.username_claim) or claims["sub"]
        raw = claims.get(settings.roles_claim) or []
        values = [raw] if isinstance(raw, str) else [v for v in raw if isinstance(v, str)]
        roles = set(settings.default_roles)
        for value in values:
            roles.update(settings.role_map.get(value, []))
        name = claims.get("name") if isinstance(claims.get("name"), str) else str(username)
        subject = f"{settings.issuer} {claims['sub']}"
        user = await self.core.run(self.core.users.upsert_federated, subject, str(username), email, name, roles)
        # An administrator's `patchbay users disable` holds for people who sign in upstream too.
        if user.disabled:
            raise UpstreamError(DISABLED)
        return user
