"""``auth = "user_oauth"``: each person links their own account at the upstream, once.

Patchbay is an OAuth 2.1 client of the upstream's authorization server: it finds the server from the upstream's
protected-resource metadata (RFC 9728), identifies itself by its client ID metadata document when the server
supports them and the public URL is https, else by a configured client id, else by dynamic registration
(RFC 7591); it sends PKCE S256 (RFC 7636) and the resource indicator (RFC 8707), binds ``state`` to the person who
started, checks ``iss`` on the way back (RFC 9207), and keeps the tokens sealed. Access tokens are renewed with
the refresh token shortly before they expire and when the upstream answers 401; a rotated refresh token
replaces the old one (OAuth 2.1 §4.3.1).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from patchbay.auth.crypto import s256
from patchbay.links.credentials import LinkRequired, LinkUnavailable, subject_of
from patchbay.links.oauth import Discovered, OAuthClient
from patchbay.links.shared import bearer, fresh
from patchbay.links.store import Account, Pending, Registration, Tokens
from patchbay.vault import VaultError

if TYPE_CHECKING:
    from patchbay.links.hub import LinkHub

PENDING_SECONDS = 600.0
# Opened tokens are kept in memory this long, so a call does not read the store. With sign-in on, they are also
# trusted only while the store's revocation generation is the one they were read under: a link removed anywhere
# (patchbay links revoke, another replica) raises it (LinkStore.remove_accounts), so it stops being used on the
# next call. Without a readable generation, a removed link stops being used within this time.
CACHE_SECONDS = 15.0


@dataclass(frozen=True, slots=True)
class _Cached:
    tokens: Tokens | None
    until: float
    stale: bool = False
    generation: int | None = None


class UserOAuth:
    def __init__(
        self,
        name: str,
        hub: LinkHub,
        oauth: OAuthClient,
        *,
        client: Registration | None,
        issuer: str | None,
        scopes: list[str],
        resource: str | None,
        headers: dict[str, str],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = name
        self.hub = hub
        self.oauth = oauth
        self.client = client
        self.issuer = issuer
        self.scopes = scopes
        self.resource = resource
        self.headers = headers
        self.clock = clock
        self._discovered: Discovered | None = None
        self._cache: dict[str, _Cached] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Told the subject of each account linked here (the mcp connector lists its upstream once one exists).
        self.on_linked: Callable[[str], None] = lambda subject: None

    # -- at call time -----------------------------------------------------------------------------------------------

    async def headers_for(self, principal: Any) -> tuple[str, dict[str, str]]:
        """Raises LinkRequired (no usable link: offer the URL) or LinkUnavailable (not a person, AS down)."""
        subject = subject_of(principal)
        if subject is None:
            raise LinkUnavailable(
                f"{self.name} works with each person's own account: sign in to Patchbay as a person (an API key "
                "or an anonymous call cannot link one)"
            )
        tokens = await self._usable(subject)
        return subject, {**self.headers, "Authorization": bearer(tokens)}

    def invalidate(self, identity: str) -> None:
        cached = self._cache.get(identity)
        if cached is not None:
            self._cache[identity] = _Cached(cached.tokens, cached.until, True, cached.generation)

    def forget(self, subject: str) -> None:
        self._cache.pop(subject, None)

    async def _usable(self, subject: str) -> Tokens:
        now = self.clock()
        # Read before the store: a removal landing while we read makes what we read stale (patchbay.auth.bearer).
        generation = await self.hub.generation()
        cached = self._cache.get(subject)
        usable = cached is not None and cached.until > now and not cached.stale and cached.generation == generation
        if usable and cached is not None and cached.tokens is not None and fresh(cached.tokens, now):
            return cached.tokens
        async with self._locks.setdefault(subject, asyncio.Lock()):  # one refresh per person at a time
            stale = cached is not None and cached.stale
            try:
                account: Account | None = await self.hub.run(self.hub.store.account, self.name, subject)
            except VaultError as exc:
                raise LinkUnavailable(f"the stored link to {self.name} cannot be opened ({exc})") from None
            if account is None:
                self._cache[subject] = _Cached(None, self.clock() + CACHE_SECONDS, generation=generation)
                raise self._required("link your account")
            tokens = account.tokens
            # Another call may have refreshed while this one waited: a stored token newer than the stale one wins.
            renewed = cached is not None and cached.tokens is not None and tokens != cached.tokens
            if (stale and not renewed) or not fresh(tokens, self.clock()):
                tokens = await self._refresh(subject, account.issuer, tokens)
            self._cache[subject] = _Cached(tokens, self.clock() + CACHE_SECONDS, generation=generation)
            return tokens

    async def _refresh(self, subject: str, issuer: str, tokens: Tokens) -> Tokens:
        if tokens.refresh_token is None:
            raise self._required("your link expired: link your account again")
        discovered = await self.discovered()
        client = await self._client(discovered)
        data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token, "resource": discovered.resource}
        renewed, error = await self.oauth.token(discovered.server, data, client)
        if renewed is None:
            # invalid_grant: the refresh token was revoked or expired upstream; only a new link helps.
            await self.hub.run(self.hub.store.remove_accounts, subject, self.name)
            self.hub.audit("links.expired", connector=self.name, subject=subject, outcome=error.split(":")[0])
            raise self._required("your link expired: link your account again")
        if renewed.refresh_token is None:  # RFC 6749 §6: the server may keep the old refresh token valid
            renewed = Tokens(
                renewed.access_token,
                tokens.refresh_token,
                renewed.expires_at,
                renewed.scopes or tokens.scopes,
                renewed.token_type,
            )
        await self.hub.run(self.hub.store.save_account, self.name, subject, issuer, renewed)
        return renewed

    def _required(self, what: str) -> LinkRequired:
        url = self.hub.link_url(self.name)
        return LinkRequired(url, f"To use {self.name}, {what} at {url}, then try again.")

    # -- the link flow ----------------------------------------------------------------------------------------------

    async def discovered(self) -> Discovered:
        """Raises LinkUnavailable."""
        if self._discovered is None:
            discovered = await self.oauth.discover(issuer=self.issuer)
            if self.resource is not None:
                discovered = Discovered(self.resource, discovered.server, discovered.scopes)
            self._discovered = discovered
        return self._discovered

    async def begin(self, subject: str) -> str:
        """The upstream authorization URL to send ``subject`` to; the state is stored, bound to them.

        Raises:
            LinkUnavailable: the upstream's authorization server cannot be found or refuses Patchbay.
        """
        discovered = await self.discovered()
        server = discovered.server
        if server.authorization_endpoint is None:
            raise LinkUnavailable(f"{server.issuer} has no authorization endpoint")
        client = await self._client(discovered)
        state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
        pending = Pending(self.name, subject, server.issuer, verifier)
        await self.hub.run(self.hub.store.add_pending, state, pending, PENDING_SECONDS)
        scopes = self.scopes or list(discovered.scopes)
        query = {
            "response_type": "code",
            "client_id": client.client_id,
            "redirect_uri": self.hub.redirect_uri,
            "state": state,
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
            "resource": discovered.resource,
        }
        if scopes:
            query["scope"] = " ".join(scopes)
        separator = "&" if "?" in server.authorization_endpoint else "?"
        return f"{server.authorization_endpoint}{separator}{urlencode(query)}"

    async def complete(self, pending: Pending, code: str, iss: str | None) -> None:
        """Exchange ``code`` and store the person's tokens.

        Raises:
            LinkUnavailable: the answer came from another server, or the token endpoint refused the code.
        """
        discovered = await self.discovered()
        server = discovered.server
        if (iss is not None and iss != server.issuer) or pending.issuer != server.issuer:
            raise LinkUnavailable("the answer came from another authorization server than the one asked (RFC 9207)")
        client = await self._client(discovered)
        data = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.hub.redirect_uri,
            "code_verifier": pending.verifier,
            "resource": discovered.resource,
        }
        tokens, error = await self.oauth.token(server, data, client)
        if tokens is None:
            raise LinkUnavailable(f"{server.issuer} did not accept the authorization ({error})")
        generation = await self.hub.generation()
        await self.hub.run(self.hub.store.save_account, self.name, pending.subject, server.issuer, tokens)
        self._cache[pending.subject] = _Cached(tokens, self.clock() + CACHE_SECONDS, generation=generation)
        self.on_linked(pending.subject)

    async def _client(self, discovered: Discovered) -> Registration:
        if self.client is not None:
            return self.client
        server = discovered.server
        if server.cimd and self.hub.public_url.startswith("https://"):
            return Registration(self.hub.client_document_url, None, "cimd")
        store = self.hub.store
        known: Registration | None = await self.hub.run(store.registration, self.name, server.issuer)
        if known is not None:
            return known
        name = f"{self.hub.settings.server.name} (Patchbay)"
        registered = await self.oauth.register(server, self.hub.redirect_uri, name)
        await self.hub.run(store.save_registration, self.name, server.issuer, registered)
        return registered
