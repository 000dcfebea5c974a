"""What every auth endpoint shares: the derived configuration, the store's repositories, the clock and the token
cache. Built once in ``create_app``; endpoints are dataclasses given a ``Core``. The features that fetch from
other hosts (client metadata documents, an upstream or external IdP) are given their own guarded fetcher."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Engine

from patchbay.auth.clients import Clients
from patchbay.auth.epoch import RevocationEpoch, epoch_for
from patchbay.auth.grants import Grants, Lifetimes
from patchbay.auth.keys import ApiKeys
from patchbay.auth.principal import Principal
from patchbay.auth.users import Users
from patchbay.settings import AuthSettings, Settings

T = TypeVar("T")
# Seconds a verified token is trusted without asking the store again, while the revocation generation stays the
# same (a revocation anywhere changes it: see patchbay.auth.epoch). Bounds what else may change unannounced.
CACHE_SECONDS = 10.0
CACHE_SIZE = 10_000


@dataclass(frozen=True)
class AuthConfig:
    mode: str
    issuer: str
    """Byte-identical in every metadata document and in the ``iss`` authorization response parameter."""
    resource: str
    """The exact MCP URL: the RFC 9728 ``resource`` and every token's audience."""
    prm_url: str
    scopes_supported: tuple[str, ...]
    default_scopes: tuple[str, ...]
    required_scopes: tuple[str, ...]
    lifetimes: Lifetimes
    secure_cookies: bool
    settings: AuthSettings

    @classmethod
    def from_settings(cls, settings: Settings, tool_scopes: tuple[str, ...] = ()) -> AuthConfig:
        auth = settings.auth
        issuer = settings.public_url
        supported = tuple(dict.fromkeys([*auth.scopes_supported, *tool_scopes]))
        return cls(
            mode=auth.mode,
            issuer=issuer,
            resource=settings.mcp_url,
            prm_url=f"{issuer}/.well-known/oauth-protected-resource/mcp",
            scopes_supported=supported,
            default_scopes=tuple(auth.default_scopes),
            required_scopes=tuple(auth.required_scopes),
            lifetimes=Lifetimes(auth.access_token_seconds, auth.refresh_token_seconds, auth.code_seconds),
            secure_cookies=issuer.startswith("https://"),
            settings=auth,
        )

    def resource_matches(self, value: str) -> bool:
        """RFC 8707 ``resource``: the exact MCP URL, tolerating a trailing slash, case in scheme and host, and
        the bare origin (OpenAI's examples use it)."""
        candidate = value.strip().rstrip("/")
        scheme, sep, rest = candidate.partition("://")
        host, slash, path = rest.partition("/")
        normal = f"{scheme.lower()}{sep}{host.lower()}{slash}{path}"
        return normal in (self.resource, self.issuer)


class TokenCache:
    """Recently verified ``Authorization`` headers, as sent, → principal, each trusted until its own deadline and
    only while the store's revocation generation is the one the cache was filled under."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self.size = size
        self.entries: dict[bytes, tuple[Principal, float]] = {}
        self.generation: int | None = None

    def get(self, key: bytes, now: float, generation: int | None) -> Principal | None:
        """The cached principal; None on a miss. A new ``generation`` (something was revoked) empties the cache;
        ``None`` (the generation could not be read) trusts nothing."""
        if generation is None:
            return None
        if generation != self.generation:
            self.entries.clear()
            self.generation = generation
            return None
        hit = self.entries.get(key)
        if hit is None:
            return None
        if hit[1] <= now:
            del self.entries[key]
            return None
        return hit[0]

    def put(self, key: bytes, principal: Principal, until: float, generation: int | None) -> None:
        """Remember a principal verified after reading ``generation``; dropped if a revocation came since."""
        if generation is None or generation != self.generation:
            return
        if len(self.entries) >= self.size:
            self.entries.clear()  # crude but bounded; a full cache only costs store lookups
        self.entries[key] = (principal, until)

    def clear(self) -> None:
        self.entries.clear()


@dataclass
class Core:
    config: AuthConfig
    engine: Engine
    clock: Callable[[], float] = time.time
    cache: TokenCache = field(default_factory=TokenCache)
    epoch: RevocationEpoch | None = None
    users: Users = field(init=False)
    clients: Clients = field(init=False)
    grants: Grants = field(init=False)
    keys: ApiKeys = field(init=False)
    # Records an audit event: audit(method, **fields) (patchbay.gate.audit.AuditRecorder.event; a no-op when the
    # trail is off). Fields name who and what, never a password, token or secret.
    audit: Callable[..., None] = field(default=lambda method, **fields: None)

    def __post_init__(self) -> None:
        auth = self.config.settings
        self.users = Users(self.engine, self.now, auth.login_attempts, auth.lockout_seconds)
        self.clients = Clients(self.engine, self.now)
        self.grants = Grants(self.engine, self.now, self.config.lifetimes)
        self.keys = ApiKeys(self.engine, self.now)
        if self.epoch is None:
            self.epoch = epoch_for(self.engine)

    def known_generation(self) -> int | None:
        """The generation without waiting, when the store shows no commit since it was read; else None."""
        assert self.epoch is not None
        return self.epoch.unchanged()

    async def generation(self) -> int | None:
        """The store's revocation generation now (see ``patchbay.auth.epoch``)."""
        assert self.epoch is not None
        return await self.epoch.current()

    def close(self) -> None:
        if self.epoch is not None:
            self.epoch.close()
        self.engine.dispose()

    def now(self) -> float:
        # Indirect, so tests can move time by replacing ``clock``.
        return self.clock()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking store call in a worker thread."""
        return await anyio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))
