"""The server's one credential store: what every connector's credentials share (store, vault, outbound fetcher,
the link pages' addresses), built lazily so a server without upstream credentials opens nothing and imports no
HTTP client (``patchbay.outbound`` loads httpx; it is imported when a connector first needs the fetcher).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import anyio.to_thread

from patchbay.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from patchbay.links.store import LinkStore
    from patchbay.links.user_oauth import UserOAuth
    from patchbay.outbound import Fetcher
    from patchbay.settings import Settings
    from patchbay.vault import Vault

log = logging.getLogger("patchbay.links")
LINK_PATH = "/links/to/"
CALLBACK_PATH = "/links/callback"
CLIENT_DOCUMENT_PATH = "/links/client-metadata.json"


def links_wanted(settings: Settings) -> bool:
    """Whether some enabled connector links accounts (then the link pages are served)."""
    return any(c.enabled and _links_accounts(c.options) for c in settings.connectors)


def _links_accounts(options: Mapping[str, Any]) -> bool:
    """``auth = "user_oauth"`` (the mcp connector's form), ``auth = { type = "user_oauth" }`` or a per-scheme
    ``security.<scheme>`` table of that type (the openapi connector's forms)."""

    def linking(auth: Any) -> bool:
        return auth == "user_oauth" or (isinstance(auth, Mapping) and auth.get("type") == "user_oauth")

    security = options.get("security")
    schemes = security.values() if isinstance(security, Mapping) else ()
    return linking(options.get("auth")) or any(linking(auth) for auth in schemes)


class LinkHub:
    def __init__(
        self,
        settings: Settings,
        *,
        fetcher: Fetcher | None = None,
        engine: Engine | None = None,
        vault: Vault | None = None,
    ) -> None:
        self.settings = settings
        self.source = settings.source
        self.public_url = settings.public_url
        self._fetcher = fetcher
        self._engine = engine
        self._vault = vault
        self._store: LinkStore | None = None
        self._owns_engine = engine is None
        self._migrated = False
        self.user_oauth: dict[str, UserOAuth] = {}
        # Records an audit event: audit(method, **fields) (AuditRecorder.event); a no-op until the app sets it.
        self.audit: Callable[..., None] = lambda method, **fields: None
        # The store's revocation generation (patchbay.auth.core.Core: known_generation, generation), set when
        # sign-in is on; removing a linked account raises it (LinkStore.remove_accounts).
        self.epoch: Any = None

    @property
    def fetcher(self) -> Fetcher:
        """The SSRF-guarded fetcher every upstream credential request goes through, made on first use."""
        if self._fetcher is None:
            from patchbay.outbound import fetcher_for

            self._fetcher = fetcher_for(self.settings.outbound)
        return self._fetcher

    @property
    def vault(self) -> Vault:
        """Raises ConfigError: no usable key (see patchbay.vault)."""
        if self._vault is None:
            from patchbay.vault import Vault

            self._vault = Vault.from_settings(self.settings)
        return self._vault

    @property
    def store(self) -> LinkStore:
        if self._store is None:
            from patchbay.links.store import LinkStore
            from patchbay.store import create_engine

            if self._engine is None:
                self._engine = create_engine(self.settings.store_url)
            self._store = LinkStore(self._engine, self.vault)
        return self._store

    def link_url(self, connector: str) -> str:
        return f"{self.public_url}{LINK_PATH}{connector}"

    @property
    def redirect_uri(self) -> str:
        return f"{self.public_url}{CALLBACK_PATH}"

    @property
    def client_document_url(self) -> str:
        """Patchbay's client ID metadata document; usable as a client_id only on an https public URL."""
        return f"{self.public_url}{CLIENT_DOCUMENT_PATH}"

    def register(self, name: str, credentials: UserOAuth) -> None:
        """Raises ConfigError: account linking needs people to sign in to Patchbay."""
        if self.settings.auth.mode != "oauth":
            raise ConfigError(
                f'{self.source}: connectors[{name}].auth: "user_oauth" needs people signed in to Patchbay: set '
                f'[auth] mode = "oauth" (now "{self.settings.auth.mode}"), or use auth = "client_credentials" or '
                '"headers"',
                file=self.source,
                key="auth",
            )
        _ = self.vault  # a missing key is a start-up error, not a surprise at the first link
        self.user_oauth[name] = credentials

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a blocking store call in a worker thread, migrating the links tables on first use."""
        store = self.store
        if not self._migrated:
            from patchbay.store import upgrade

            # Every branch: the link pages sign people in from auth_users too.
            await anyio.to_thread.run_sync(upgrade, store.engine)
            self._migrated = True
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    async def generation(self) -> int | None:
        """The revocation generation now; None without one (or unreadable): cached links then live CACHE_SECONDS."""
        if self.epoch is None:
            return None
        known: int | None = self.epoch.known_generation()
        return known if known is not None else await self.epoch.generation()

    def share_engine(self, engine: Engine) -> None:
        """Use the authorization server's engine (one pool per database), unless the store is already open."""
        if self._store is None and self._engine is None:
            self._engine, self._owns_engine = engine, False

    def close(self) -> None:
        if self._engine is not None and self._owns_engine:
            self._engine.dispose()
