"""``external`` mode: Patchbay is only a resource server for an existing authorization server.

JWT access tokens are verified against the IdP's JWKS (signature, ``iss``, ``aud`` = our MCP URL, ``exp``/``nbf``
with ``clock_skew_seconds`` leeway); other tokens, or all tokens when no JWKS is known, go to RFC 7662
introspection. Endpoints come from the settings or from the issuer's metadata document (RFC 8414, then OpenID
Connect Discovery): one that is not configured is looked up there. Every fetch goes through the SSRF guard.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from typing import Any

import jwt
from jwt import PyJWKSet
from jwt.exceptions import InvalidTokenError, PyJWKError, PyJWKSetError

from patchbay.auth.core import Core
from patchbay.auth.principal import Principal
from patchbay.outbound import Fetcher, FetchError
from patchbay.settings import ExternalIdPSettings

log = logging.getLogger("patchbay.auth")
JWKS_REFRESH_SECONDS = 60.0


def discovery_urls(issuer: str) -> list[str]:
    """RFC 8414 §3.1 (path-inserted) then OpenID Connect Discovery (path-appended)."""
    scheme, _, rest = issuer.partition("://")
    host, slash, path = rest.partition("/")
    suffix = f"/{path}" if slash and path else ""
    return [
        f"{scheme}://{host}/.well-known/oauth-authorization-server{suffix}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
    ]


async def issuer_metadata(fetcher: Fetcher, issuer: str) -> dict[str, Any]:
    """The issuer's metadata document, whose ``issuer`` must equal ``issuer`` exactly.

    Raises:
        FetchError: no document found, or one naming another issuer.
    """
    problems = []
    for url in discovery_urls(issuer):
        try:
            document = await fetcher.get_json(url)
        except FetchError as exc:
            problems.append(str(exc))
            continue
        if isinstance(document, dict) and document.get("issuer") == issuer:
            return document
        problems.append(f"{url} names another issuer")
    raise FetchError(f"no metadata for issuer {issuer}: {'; '.join(problems)}")


class ExternalVerifier:
    def __init__(self, core: Core, settings: ExternalIdPSettings, *, fetcher: Fetcher) -> None:
        self.core = core
        self.settings = settings
        self.issuer = settings.issuer
        self.audience = settings.audience or core.config.resource
        self.fetcher = fetcher
        self.jwks_uri = settings.jwks_uri
        self.introspection = settings.introspection_endpoint
        # Both configured: the metadata document has nothing left to say.
        self._discovered = bool(self.jwks_uri and self.introspection)
        self._retry_at = 0.0
        self._keys: PyJWKSet | None = None
        self._keys_at = 0.0

    async def _discover(self) -> None:
        """Look up the endpoints the settings leave out in the issuer's metadata document.

        With neither configured, tokens cannot be checked without the document: its failure is the caller's. With
        one configured, that one keeps working while the document cannot be read, which is tried again at most
        once a minute.

        Raises:
            FetchError: no endpoint is configured and the document cannot be read.
        """
        if self._discovered:
            return
        configured = self.jwks_uri is not None or self.introspection is not None
        now = time.monotonic()
        if configured and now < self._retry_at:
            return
        try:
            document = await issuer_metadata(self.fetcher, self.issuer)
        except FetchError as exc:
            if not configured:
                raise
            self._retry_at = now + JWKS_REFRESH_SECONDS
            log.warning("using only the configured endpoints of %s for now: %s", self.issuer, exc)
            return
        self.jwks_uri = self.jwks_uri or _first_string(document, "jwks_uri")
        self.introspection = self.introspection or _first_string(document, "introspection_endpoint")
        self._discovered = True

    async def verify(self, token: str) -> Principal | None:
        try:
            await self._discover()
            if token.count(".") == 2 and self.jwks_uri:
                return await self._verify_jwt(token)
            if self.introspection:
                return await self._introspect(token)
        except FetchError as exc:
            log.warning("cannot verify a token with %s: %s", self.issuer, exc)
        return None

    async def _jwks(self, kid: str | None) -> PyJWKSet:
        now = time.monotonic()
        known = self._keys is not None and (kid is None or any(k.key_id == kid for k in self._keys.keys))
        if self._keys is not None and (known or now - self._keys_at < JWKS_REFRESH_SECONDS):
            return self._keys
        assert self.jwks_uri is not None
        document = await self.fetcher.get_json(self.jwks_uri)
        if not isinstance(document, dict):
            raise FetchError(f"the JWKS at {self.jwks_uri} is not usable: not a JSON object")
        try:
            self._keys = PyJWKSet.from_dict(document)
        except (PyJWKError, PyJWKSetError) as exc:
            raise FetchError(f"the JWKS at {self.jwks_uri} is not usable: {exc}") from None
        self._keys_at = now
        return self._keys

    async def _verify_jwt(self, token: str) -> Principal | None:
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            return None
        keys = await self._jwks(header.get("kid"))
        candidates = [k for k in keys.keys if header.get("kid") in (None, k.key_id)]
        for key in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key=key,
                    algorithms=self.settings.algorithms,
                    audience=self.audience,
                    issuer=self.issuer,
                    leeway=self.settings.clock_skew_seconds,
                    options={"require": ["exp", "iss", "aud"]},
                )
            except InvalidTokenError:
                continue
            return self._principal(claims)
        return None

    async def _introspect(self, token: str) -> Principal | None:
        assert self.introspection is not None
        headers = {}
        data = {"token": token}
        client_id = self.settings.introspection_client_id
        if client_id:
            secret_env = self.settings.introspection_client_secret_env
            secret = os.environ.get(secret_env, "") if secret_env else ""
            basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
            headers["Authorization"] = f"Basic {basic}"
        fetched = await self.fetcher.request("POST", self.introspection, data=data, headers=headers)
        if fetched.status != 200:
            raise FetchError(f"introspection answered {fetched.status}")
        claims = fetched.json()
        if not isinstance(claims, dict) or claims.get("active") is not True:
            return None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.audience not in audiences:
            return None
        if claims.get("iss", self.issuer) != self.issuer:
            return None
        exp = claims.get("exp")
        if isinstance(exp, (int, float)) and exp + self.settings.clock_skew_seconds <= time.time():
            return None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal | None:
        """The caller the claims describe; None when they name nobody (neither ``sub`` nor ``client_id``): two
        such callers could not be told apart. A malformed scope or role claim grants nothing."""
        subject = _first_string(claims, "sub", "client_id")
        if subject is None:
            return None
        scope = claims.get(self.settings.scopes_claim)
        if scope is None:
            scope = claims.get("scp")
        scopes = scope.split() if isinstance(scope, str) else _strings(scope)
        roles = claims.get(self.settings.roles_claim)
        roles = [roles] if isinstance(roles, str) else _strings(roles)
        exp = claims.get("exp")
        return Principal(
            subject=subject,
            kind="external",
            scopes=frozenset(scopes),
            roles=frozenset(roles),
            username=_first_string(claims, "preferred_username", "email", "username"),
            client_id=_first_string(claims, "client_id", "azp"),
            expires_at=float(exp) if isinstance(exp, (int, float)) else None,
            claims={
                k: v for k, v in claims.items() if isinstance(v, (str, int, float, bool)) and len(json.dumps(v)) < 200
            },
        )


def _strings(value: Any) -> list[str]:
    """The strings of a claim that should be a list of them; anything else grants nothing."""
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _first_string(claims: dict[str, Any], *names: str) -> str | None:
    """The first of ``names`` whose claim is a non-empty string."""
    for name in names:
        value = claims.get(name)
        if isinstance(value, str) and value:
            return value
    return None
