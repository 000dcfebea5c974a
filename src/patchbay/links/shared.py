"""Credentials shared by every caller: static headers, and an OAuth client-credentials token (RFC 6749 §4.4).

Both answer identity ``""``: one upstream session serves everyone, and nothing about the caller is sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from patchbay.links.credentials import SHARED, LinkUnavailable
from patchbay.links.oauth import OAuthClient, ServerMetadata, origin
from patchbay.links.store import Registration, Tokens

# A token this close to its expiry is renewed before use: the call must not reach the upstream with a token that
# expires on the way.
EARLY_SECONDS = 60.0


def fresh(tokens: Tokens | None, now: float) -> bool:
    return tokens is not None and (tokens.expires_at is None or tokens.expires_at - EARLY_SECONDS > now)


def bearer(tokens: Tokens) -> str:
    return f"{tokens.token_type} {tokens.access_token}"


class StaticHeaders:
    """``auth = "headers"``: the configured headers, read once at start."""

    def __init__(self, headers: dict[str, str]) -> None:
        self._headers = dict(headers)

    async def headers_for(self, principal: Any) -> tuple[str, dict[str, str]]:
        return SHARED, dict(self._headers)

    def invalidate(self, identity: str) -> None:
        return None  # nothing to renew: the operator's headers are what they are


class ClientCredentials:
    """``auth = "client_credentials"``: one token for the connector, cached until shortly before it expires."""

    def __init__(
        self,
        oauth: OAuthClient,
        client: Registration,
        *,
        token_url: str | None,
        issuer: str | None,
        scopes: list[str],
        audience: str | None,
        resource: str | None,
        headers: dict[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.oauth = oauth
        self.client = client
        self.token_url = token_url
        self.issuer = issuer
        self.scopes = scopes
        self.audience = audience
        self.resource = resource
        self.headers = headers
        self.clock = clock
        self._tokens: Tokens | None = None
        self._server: ServerMetadata | None = None
        self._lock = asyncio.Lock()

    async def headers_for(self, principal: Any) -> tuple[str, dict[str, str]]:
        """Raises LinkUnavailable: no token could be had (the message says why)."""
        tokens = self._tokens
        if tokens is None or not fresh(tokens, self.clock()):
            async with self._lock:  # one token request at a time, whatever the number of waiting calls
                tokens = self._tokens
                if tokens is None or not fresh(tokens, self.clock()):
                    tokens = self._tokens = await self._fetch()
        return SHARED, {**self.headers, "Authorization": bearer(tokens)}

    def invalidate(self, identity: str) -> None:
        self._tokens = None

    async def _fetch(self) -> Tokens:
        server = await self._server_metadata()
        data = {"grant_type": "client_credentials"}
        if self.scopes:
            data["scope"] = " ".join(self.scopes)
        if self.audience:
            data["audience"] = self.audience
        if self.resource:
            data["resource"] = self.resource  # RFC 8707 §2
        tokens, error = await self.oauth.token(server, data, self.client)
        if tokens is None:
            raise LinkUnavailable(f"{server.issuer} refused Patchbay's client credentials ({error})")
        return tokens

    async def _server_metadata(self) -> ServerMetadata:
        if self._server is None:
            if self.token_url is not None:
                methods = ("client_secret_basic", "client_secret_post")
                self._server = ServerMetadata(origin(self.token_url), None, self.token_url, auth_methods=methods)
            else:
                discovered = await self.oauth.discover(issuer=self.issuer)
                self._server = discovered.server
                if self.resource is None:
                    self.resource = discovered.resource
        return self._server
