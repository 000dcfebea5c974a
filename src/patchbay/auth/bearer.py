"""Resource-server checks on ``/mcp`` (OAuth 2.1 §5.2, RFC 6750, RFC 9728 §5.1, MCP 2025-11-25 authorization).

Every request's ``Authorization: Bearer`` token is turned into a :class:`Principal` or refused with a 401 and a
``WWW-Authenticate`` challenge pointing at the protected-resource metadata; a token without the server-wide
required scopes gets 403 ``insufficient_scope``. Tokens are never accepted from the query string.

Hot path: a token seen in the last few seconds is answered from an in-memory cache keyed by the SHA-256 of the
header as sent, so a call costs one hash, one check of the store's revocation generation (a comparison of mapped
memory for a SQLite store) and one dict lookup; the token is parsed and looked up only on a miss. Any revocation,
by any process, changes the generation and so empties the cache before the next request is answered
(``patchbay.auth.epoch``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from patchbay.auth.core import CACHE_SECONDS, Core
from patchbay.auth.crypto import ACCESS_PREFIX, KEY_PREFIX
from patchbay.auth.principal import Principal, Rejection

# Methods an anonymous caller may use when the server has public ("noauth") tools: enough to discover the tools
# and call them. A protected tool called anonymously answers with a tool-level challenge (ChatGPT's linking UI).
ANONYMOUS_METHODS = frozenset({"initialize", "ping", "server/discover", "tools/list", "tools/call"})

ExternalVerify = Callable[[str], Awaitable[Principal | None]]


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class Authenticator:
    """Verifies our own access tokens, API keys and (``external`` mode) an IdP's tokens."""

    def __init__(
        self,
        core: Core,
        *,
        own_tokens: bool,
        api_keys: bool,
        external: ExternalVerify | None = None,
        has_public_tools: Callable[[], bool] = lambda: False,
    ) -> None:
        self.core = core
        self.own_tokens = own_tokens
        self.api_keys = api_keys
        self.external = external
        self.has_public_tools = has_public_tools
        config = core.config
        self.required = config.required_scopes
        # api_key mode has no authorization server to point at: a plain Bearer challenge.
        self.oauth = config.mode in ("oauth", "external")
        self.challenge_scope = " ".join(config.default_scopes)

    def challenge(self, error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
        parts = []
        if self.oauth:
            parts.append(f'resource_metadata="{self.core.config.prm_url}"')
            wanted = scope if scope is not None else self.challenge_scope
            if wanted:
                parts.append(f'scope="{_quote(wanted)}"')
        else:
            parts.append('realm="patchbay"')
        if error:
            parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quote(description)}"')
        return "Bearer " + ", ".join(parts)

    def missing(self) -> Rejection:
        return Rejection(401, self.challenge(), "Authentication required: send Authorization: Bearer <token>")

    async def authenticate(self, authorization: bytes | None) -> Principal | Rejection | None:
        """The caller's principal; None when no credentials were sent; a Rejection for bad or weak ones."""
        if authorization is None:
            return None
        core = self.core
        now = core.clock()
        # The cache is keyed by the header as sent: a repeat caller costs one dict lookup, nothing parsed or hashed
        # (a SHA-256 here cost ~2.5 µs per request in context, a fifth of sign-in's cost; docs/performance.md).
        # Only verified headers are kept, in this process's memory, for at most CACHE_SECONDS; nothing is written.
        # Read the generation before verifying: a revocation that lands while we verify makes it stale, so the
        # principal below is not cached (TokenCache.put).
        key = authorization
        generation = core.known_generation()
        if generation is None:
            generation = await core.generation()
        principal = core.cache.get(key, now, generation)
        if principal is None:
            scheme, _, raw = authorization.decode("latin-1").strip().partition(" ")
            token = raw.strip()
            if scheme.lower() != "bearer" or not token:
                return self._invalid("Use the Bearer scheme: Authorization: Bearer <token>")
            principal = await self.verify(token)
            if principal is None:
                return self._invalid("The access token is invalid, expired, revoked or was issued for another server")
            until = now + CACHE_SECONDS
            if principal.expires_at is not None:
                until = min(until, principal.expires_at)
            core.cache.put(key, principal, until, generation)
        if self.required and not principal.has_scopes(self.required):
            needed = " ".join(dict.fromkeys([*self.required, *principal.scopes]))
            description = f"This server needs the scopes: {' '.join(self.required)}"
            return Rejection(403, self.challenge("insufficient_scope", description, needed), description)
        return principal

    def anonymous_allowed(self, method: str) -> bool:
        return method in ANONYMOUS_METHODS and self.has_public_tools()

    def _invalid(self, description: str) -> Rejection:
        return Rejection(401, self.challenge("invalid_token", description), description)

    async def verify(self, token: str) -> Principal | None:
        core = self.core
        if token.startswith(ACCESS_PREFIX) and self.own_tokens:
            info = await core.run(core.grants.access, token)
            # RFC 8707 / MCP: the token must have been issued for this server (audience = our MCP URL).
            if info is None or info.resource != core.config.resource:
                return None
            return Principal(
                subject=f"user:{info.username}",
                kind="user",
                scopes=frozenset(info.scope.split()),
                roles=info.roles,
                username=info.username,
                client_id=info.client_id,
                expires_at=info.expires_at,
                client_name=info.client_name,
            )
        if token.startswith(KEY_PREFIX) and self.api_keys:
            return await core.run(core.keys.lookup, token)
        if self.external is not None:
            return await self.external(token)
        return None
