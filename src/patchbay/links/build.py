"""Building a connector's :class:`~patchbay.links.Credentials` from its options (``credentials_for``)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from patchbay.errors import ConfigError
from patchbay.links.credentials import Credentials, NoCredentials
from patchbay.links.oauth import OAuthClient
from patchbay.links.options import AuthOptions, SecretRef, resolve_value
from patchbay.links.shared import ClientCredentials, StaticHeaders
from patchbay.links.store import Registration

if TYPE_CHECKING:
    from patchbay.connectors.base import ConnectorEnv
    from patchbay.links.hub import LinkHub


def build_credentials(name: str, options: AuthOptions, env: ConnectorEnv, upstream_url: str | None) -> Credentials:
    """Raises ConfigError: as :func:`patchbay.links.credentials_for`."""
    hub: LinkHub | None = getattr(env, "links", None)
    source = hub.source if hub is not None else "<config>"
    where = f"{source}: connectors[{name}]"
    headers = {
        header: resolve_value(value, base_dir=env.base_dir, where=f"{where}.headers.{header}")
        for header, value in options.headers.items()
    }
    if options.auth == "none":
        return NoCredentials(headers)
    if options.auth == "headers":
        return StaticHeaders(headers)
    if hub is None:
        raise ConfigError(f"{where}.auth: {options.auth!r} needs the server's credential store", key="auth")
    base = upstream_url or options.token_url
    if base is None:
        raise ConfigError(f"{where}.token_url: needed when the connector has no url to discover it from", key="auth")
    oauth = OAuthClient(hub.fetcher, base)
    client = _configured_client(options, env, where)
    if options.auth == "client_credentials":
        assert client is not None
        return ClientCredentials(
            oauth,
            client,
            token_url=options.token_url,
            issuer=options.authorization_server,
            scopes=list(options.scopes),
            audience=options.audience,
            resource=options.resource,
            headers=headers,
        )
    if upstream_url is None:
        raise ConfigError(f'{where}.auth: "user_oauth" needs the upstream url to discover its sign-in', key="auth")
    from patchbay.links.user_oauth import UserOAuth

    credentials = UserOAuth(
        name,
        hub,
        oauth,
        client=client,
        issuer=options.authorization_server,
        scopes=list(options.scopes),
        resource=options.resource,
        headers=headers,
    )
    hub.register(name, credentials)
    return credentials


def _configured_client(options: AuthOptions, env: ConnectorEnv, where: str) -> Registration | None:
    if options.client_id is None:
        return None
    secret: str | None = None
    if options.client_secret_env is not None:
        secret = resolve_value(
            SecretRef(env=options.client_secret_env),
            base_dir=env.base_dir,
            where=f"{where}.client_secret_env",
            env=os.environ,
        )
    elif options.client_secret_file is not None:
        secret = resolve_value(
            SecretRef(file=options.client_secret_file), base_dir=env.base_dir, where=f"{where}.client_secret_file"
        )
    return Registration(options.client_id, secret, "configured")
