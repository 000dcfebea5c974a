"""Upstream credentials, shared by every connector that calls another system (MCP upstreams, REST APIs).

A connector's ``[[connectors]]`` table says how Patchbay authenticates upstream (:class:`AuthOptions`): not at all,
static headers from environment variables or secret files, OAuth client credentials, or ``user_oauth``, where
each person links their own account once and Patchbay keeps their tokens sealed at rest (``patchbay.vault``).
:func:`credentials_for` builds a connector's :class:`Credentials`; at call time ``headers_for(principal)`` gives
the headers for that caller. The caller's token to Patchbay is never passed on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from patchbay.links.credentials import (
    SHARED,
    Credentials,
    LinkError,
    LinkRequired,
    LinkUnavailable,
    NoCredentials,
)
from patchbay.links.options import AuthOptions, SecretRef, Value, resolve_value

if TYPE_CHECKING:
    from patchbay.connectors.base import ConnectorEnv

__all__ = [
    "SHARED",
    "AuthOptions",
    "Credentials",
    "LinkError",
    "LinkRequired",
    "LinkUnavailable",
    "NoCredentials",
    "SecretRef",
    "Value",
    "credentials_for",
    "resolve_value",
]


def credentials_for(
    connector_name: str, options: AuthOptions, env: ConnectorEnv, *, upstream_url: str | None = None
) -> Credentials:
    """The credentials ``options`` describe for connector ``connector_name``.

    ``upstream_url`` is the system's URL as the operator configured it (an MCP server's endpoint, a REST API's
    base): OAuth metadata is discovered from it (RFC 9728) and it is the default resource indicator (RFC 8707).
    Secrets named by the options are read here, at start.

    Raises:
        ConfigError: a secret variable or file is missing, or ``user_oauth`` without what it needs (sign-in on,
            an upstream URL), naming the connector's key.
    """
    from patchbay.links.build import build_credentials

    return build_credentials(connector_name, options, env, upstream_url)
