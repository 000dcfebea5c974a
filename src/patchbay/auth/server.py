"""``AuthServer``: builds the authorization server, the resource-server checks and the per-tool policy for one
app from the settings, and lists their routes. Nothing here runs at import time."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anyio
from sqlalchemy import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.access import ToolAccessPolicy
from patchbay.auth.authorize import Authorization
from patchbay.auth.bearer import Authenticator
from patchbay.auth.cimd import MetadataDocuments
from patchbay.auth.clients import Client
from patchbay.auth.core import AuthConfig, Core
from patchbay.auth.crypto import digest
from patchbay.auth.errors import OAuthError
from patchbay.auth.introspect import Introspection
from patchbay.auth.metadata import Discovery, authorization_server, cors_preflight, protected_resource
from patchbay.auth.redirects import check_redirect_uri
from patchbay.auth.register import Limiter, Registration
from patchbay.auth.revoke import Revocation
from patchbay.auth.token import TokenEndpoint
from patchbay.auth.users import dummy_hash
from patchbay.catalog import Catalog
from patchbay.errors import ConfigError
from patchbay.settings import OutboundSettings, Settings
from patchbay.store import create_engine, upgrade

if TYPE_CHECKING:
    import httpx

    from patchbay.outbound import Fetched, Fetcher

log = logging.getLogger("patchbay.auth")


class AuthServer:
    """Everything sign-in needs for one app. ``mode`` none never builds one."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        *,
        engine: Engine | None = None,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        auth = settings.auth
        self.mode = auth.mode
        config = AuthConfig.from_settings(settings, catalog.tool_scopes)
        outbound = settings.outbound
        self.core = Core(config, engine or create_engine(settings.store_url), clock=clock)
        self.transport = transport
        oauth = self.mode == "oauth"
        documents = None
        if oauth and auth.client_metadata_documents:
            documents = MetadataDocuments(_FetcherOnFirstUse(outbound, auth.allow_private_network, transport))
        self.upstream: Any = None
        self.external: Any = None
        if oauth and auth.upstream is not None:
            from patchbay.auth.oidc import UpstreamLogin
            from patchbay.outbound import fetcher_for

            self._require_secret(auth.upstream.client_secret_env, "auth.upstream.client_secret_env")
            private = auth.upstream.allow_private_network
            upstream_fetcher = fetcher_for(outbound, allow_private_network=private, transport=transport)
            self.upstream = UpstreamLogin(self.core, auth.upstream, fetcher=upstream_fetcher)
        if self.mode == "external":
            from patchbay.auth.external import ExternalVerifier
            from patchbay.outbound import fetcher_for

            assert auth.external is not None
            self._require_secret(
                auth.external.introspection_client_secret_env, "auth.external.introspection_client_secret_env"
            )
            private = auth.external.allow_private_network
            external_fetcher = fetcher_for(outbound, allow_private_network=private, transport=transport)
            self.external = ExternalVerifier(self.core, auth.external, fetcher=external_fetcher)
        self.authorization = Authorization(
            self.core,
            server_name=settings.server.name,
            documents=documents,
            upstream_name=auth.upstream.display_name if auth.upstream is not None else None,
            upstream_origin=_origin(auth.upstream.issuer) if auth.upstream is not None else None,
        )
        self.authenticator = Authenticator(
            self.core,
            own_tokens=oauth,
            api_keys=self.mode in ("api_key", "oauth"),
            external=self.external.verify if self.external is not None else None,
            has_public_tools=lambda: catalog.has_public_tools,
        )
        advertise = self.mode in ("oauth", "external")
        self.policy = ToolAccessPolicy(config.prm_url if advertise else None, config.default_scopes, advertise)
        self.discovery = Discovery(None, None)
        self._configured_clients = self._config_clients()
        # The registration throttle a fleet shares (patchbay.fleet.limits); None: one per process.
        self.registrations: Limiter | None = None

    def _config_clients(self) -> list[Client]:
        """``[[auth.clients]]`` as client records; a missing secret variable is a config error."""
        clients = []
        for index, entry in enumerate(self.settings.auth.clients):
            key = f"auth.clients[{index}].client_secret_env"
            shown = f"auth.clients[{entry.client_id}]: client_secret_env"
            secret = self._require_secret(entry.client_secret_env, key, shown)
            secret_hash = digest(secret) if secret is not None else None
            self._check_redirects(index, entry.redirect_uris)
            method = entry.token_endpoint_auth_method or ("client_secret_basic" if secret_hash else "none")
            clients.append(
                Client(
                    client_id=entry.client_id,
                    kind="config",
                    name=entry.name,
                    redirect_uris=tuple(entry.redirect_uris),
                    auth_method=method,
                    secret_hash=secret_hash,
                    scopes=frozenset(entry.scopes) if entry.scopes is not None else None,
                )
            )
        return clients

    def _require_secret(self, variable: str | None, key: str, shown: str | None = None) -> str | None:
        """The secret held by the environment variable the setting ``key`` names (None when it names none); an
        unset or empty one is a config error, not a sign-in that fails later. ``shown`` names the key in the
        message when its index says less than a name (``auth.clients[chatgpt]``)."""
        if not variable:
            return None
        secret = os.environ.get(variable)
        if not secret:
            raise ConfigError(
                f"{self.settings.source}: {shown or key} names {variable}, which is not set in the environment",
                file=self.settings.source,
                key=key,
            )
        return secret

    def _check_redirects(self, index: int, uris: list[str]) -> None:
        """A configured client's redirect URIs obey the rule registered ones do (they reach the same headers)."""
        for number, uri in enumerate(uris):
            try:
                check_redirect_uri(uri)
            except OAuthError as exc:
                raise ConfigError(
                    f"{self.settings.source}: auth.clients[{index}].redirect_uris[{number}]: {exc.description}. "
                    "Allowed: https URLs with a host name, http only to 127.0.0.1, [::1] or localhost, or a "
                    "private-use scheme (com.example.app:/callback); no user@, spaces, quotes or #fragment",
                    file=self.settings.source,
                    key=f"auth.clients[{index}].redirect_uris[{number}]",
                ) from None

    async def start(self) -> None:
        """Migrate the store, record configured clients and publish the discovery documents (after the catalog
        is built, so the scopes tools declare are listed)."""
        core = self.core
        await core.run(upgrade, core.engine)
        core.config = AuthConfig.from_settings(self.settings, self.catalog.tool_scopes)
        for client in self._configured_clients:
            await core.run(core.clients.save, client)
        if self.mode == "oauth":
            await core.run(core.clients.prune_unused, core.config.settings.unused_client_days * 86_400)
            await anyio.to_thread.run_sync(dummy_hash)  # the sign-in page's timing equaliser, before it serves
            self.discovery = Discovery(
                protected_resource(core.config, [core.config.issuer], self.settings.server.name),
                authorization_server(
                    core.config,
                    registration=core.config.settings.registration,
                    cimd=self.authorization.documents is not None,
                ),
            )
        elif self.mode == "external":
            assert self.external is not None
            self.discovery = Discovery(
                protected_resource(core.config, [self.external.issuer], self.settings.server.name), None
            )

    def close(self) -> None:
        self.core.close()

    def routes(self) -> list[BaseRoute]:
        if self.mode not in ("oauth", "external"):
            return []
        discovery = self.discovery_proxy
        well_known = [
            Route(path, discovery.protected_resource, methods=["GET", "HEAD"])
            for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp")
        ]
        if self.mode == "external":
            return [*well_known, *_preflights([r.path for r in well_known])]
        server_paths = (
            "/.well-known/oauth-authorization-server",
            "/.well-known/oauth-authorization-server/mcp",
            "/.well-known/openid-configuration",
            "/.well-known/openid-configuration/mcp",
            "/mcp/.well-known/openid-configuration",
            "/mcp/.well-known/oauth-authorization-server",
        )
        well_known += [Route(p, discovery.authorization_server, methods=["GET", "HEAD"]) for p in server_paths]
        core, authz = self.core, self.authorization
        endpoints = [
            Route("/authorize", authz.start, methods=["GET"]),
            Route("/authorize/login", authz.login, methods=["POST"]),
            Route("/authorize/consent", authz.consent, methods=["POST"]),
            Route("/token", TokenEndpoint(core, authz).handle, methods=["POST"]),
            Route("/revoke", Revocation(core, authz).handle, methods=["POST"]),
            Route("/introspect", Introspection(core, authz).handle, methods=["POST"]),
        ]
        if self.settings.auth.registration:
            endpoints.append(Route("/register", Registration(core, self.registrations).handle, methods=["POST"]))
        if self.upstream is not None:
            endpoints += self.upstream.routes(authz)
        cors_paths = [r.path for r in well_known] + ["/token", "/revoke", "/introspect", "/register"]
        return [*well_known, *endpoints, *_preflights(cors_paths)]

    @property
    def discovery_proxy(self) -> _LateDiscovery:
        return _LateDiscovery(self)


class _LateDiscovery:
    """Routes are built before ``start`` computes the documents; this reads them when a request comes."""

    def __init__(self, server: AuthServer) -> None:
        self.server = server

    async def protected_resource(self, request: Request) -> Response:
        return await self.server.discovery.protected_resource(request)

    async def authorization_server(self, request: Request) -> Response:
        return await self.server.discovery.authorization_server(request)


class _FetcherOnFirstUse:
    """The fetcher ``[outbound]`` describes, built on the first fetch: most servers never see a client
    metadata document URL, and the HTTP client stack (httpx) would otherwise stay loaded for nothing."""

    def __init__(
        self, settings: OutboundSettings, allow_private_network: bool, transport: httpx.AsyncBaseTransport | None
    ) -> None:
        self.settings = settings
        self.allow_private_network = allow_private_network
        self.transport = transport
        self.fetcher: Fetcher | None = None

    async def request(self, method: str, url: str) -> Fetched:
        """Raises FetchError (or Refused) as ``Fetcher.request``."""
        if self.fetcher is None:
            from patchbay.outbound import fetcher_for

            private = self.allow_private_network
            self.fetcher = fetcher_for(self.settings, allow_private_network=private, transport=self.transport)
        return await self.fetcher.request(method, url)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _preflights(paths: list[str]) -> list[BaseRoute]:
    async def preflight(request: Request) -> Response:
        return cors_preflight()

    return [Route(p, preflight, methods=["OPTIONS"]) for p in paths]
