"""Credentials to the API, per operation, as its ``security`` requirements say (OpenAPI 3.1 §4.8.30).

An operation is satisfied by any one of its requirements; each requirement names schemes that must all be
satisfied, and an empty requirement (``{}``) allows anonymous calls. A scheme is satisfied by the credential
``security.<scheme key>`` configures, else by ``auth`` when its type fits the scheme (an ``api_key`` for an apiKey
scheme, ``basic`` for HTTP Basic, ``bearer`` or an OAuth type for HTTP Bearer, oauth2 and openIdConnect,
``headers`` for any). An operation without requirements (``security: []``) gets nothing, unless the spec states
no requirement anywhere: such a spec is silent about auth rather than public, so ``auth`` goes with every call.
OAuth tokens (client credentials, linked accounts) come from :mod:`patchbay.links`, cached and renewed there.

Secrets are read once, at open; they never reach a log or a message. The caller's own token to Patchbay has no
way in here: what is sent comes from config, from tokens Patchbay obtained itself, or from a linked account.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from patchbay.connectors.openapi.models import ApiSpec, Operation, Requirement, SecurityScheme
from patchbay.connectors.openapi.options import ApiAuth, OpenApiOptions
from patchbay.connectors.openapi.request import HttpRequest
from patchbay.errors import ConfigError
from patchbay.links import AuthOptions, Credentials, Value, credentials_for, resolve_value

if TYPE_CHECKING:
    from patchbay.connectors.base import ConnectorEnv

OAUTH = ("client_credentials", "user_oauth")
_FITS: dict[str, tuple[str, ...]] = {
    "apiKey": ("api_key", "headers"),
    "http:basic": ("basic", "headers"),
    "http:bearer": ("bearer", *OAUTH, "headers"),
    "http": ("headers",),
    "oauth2": ("bearer", *OAUTH, "headers"),
    "openIdConnect": ("bearer", *OAUTH, "headers"),
    "mutualTLS": (),
}


def fits(auth: ApiAuth, scheme: SecurityScheme) -> bool:
    """Whether a credential of ``auth``'s type can satisfy ``scheme``."""
    kind = f"http:{scheme.scheme}" if scheme.type == "http" and scheme.scheme in ("basic", "bearer") else scheme.type
    return auth.type in _FITS.get(kind, ())


@dataclass(slots=True)
class Credential:
    """One configured credential with its secrets read: where its values go, or its OAuth source."""

    auth: ApiAuth
    key: str  # "auth" or "security.<scheme>", for messages
    headers: dict[str, str] = field(default_factory=dict)
    api_key: str = ""
    linked: Credentials | None = None

    def placed(self, scheme: SecurityScheme | None) -> Placed:
        """What this credential adds to a request for ``scheme`` (None: an operation without requirements).

        Raises:
            ConfigError: an api_key with nowhere to go (no ``name``/``in`` and no apiKey scheme to take them from).
        """
        auth = self.auth
        if auth.type != "api_key":
            return Placed(dict(self.headers), (), (), self.linked)
        name = auth.name or (scheme.name if scheme is not None and scheme.type == "apiKey" else "")
        where = auth.location or (scheme.location if scheme is not None and scheme.type == "apiKey" else "")
        if not name or not where:
            raise ConfigError(
                f'{self.key}: an api_key needs name and in ("header", "query" or "cookie"): the spec declares no '
                "apiKey scheme to take them from",
                key=self.key,
            )
        if where == "query":
            return Placed({}, (f"{quote(name, safe='')}={quote(self.api_key, safe='')}",), (), None)
        if where == "cookie":
            return Placed({}, (), (f"{name}={quote(self.api_key, safe='')}",), None)
        return Placed({name: self.api_key}, (), (), None)


@dataclass(frozen=True, slots=True)
class Placed:
    headers: dict[str, str]
    query: tuple[str, ...]
    cookies: tuple[str, ...]
    linked: Credentials | None


class OperationAuth:
    """What one operation's calls carry: static headers, query and cookie pieces, and OAuth sources to ask."""

    __slots__ = ("cookies", "headers", "linked", "query", "satisfied")

    def __init__(self, placed: Iterable[Placed] = (), *, satisfied: bool = True) -> None:
        self.headers: dict[str, str] = {}
        query: list[str] = []
        cookies: list[str] = []
        linked: list[Credentials] = []
        for one in placed:
            self.headers.update(one.headers)
            query += one.query
            cookies += one.cookies
            if one.linked is not None and one.linked not in linked:
                linked.append(one.linked)
        self.query = "&".join(query)
        self.cookies = "; ".join(cookies)
        self.linked = tuple(linked)
        self.satisfied = satisfied

    @property
    def oauth(self) -> bool:
        return bool(self.linked)

    async def apply(self, request: HttpRequest, principal: Any) -> list[tuple[Credentials, str]]:
        """Add the credentials to ``request``; the OAuth sources asked and the identity each answered for.

        Raises:
            LinkRequired: a linked account is needed and the caller has none (offer its link).
            LinkUnavailable: a token could not be obtained.
        """
        headers = request.headers
        if self.headers:
            headers.update(self.headers)
        used: list[tuple[Credentials, str]] = []
        for source in self.linked:
            identity, extra = await source.headers_for(principal)
            headers.update(extra)
            used.append((source, identity))
        if self.query:
            request.target += ("&" if "?" in request.target else "?") + self.query
        if self.cookies:
            present = headers.get("Cookie")
            headers["Cookie"] = f"{present}; {self.cookies}" if present else self.cookies
        return used


@dataclass(slots=True)
class ApiCredentials:
    """Every operation's :class:`OperationAuth`, the operations no credential fits, and the secret values (so
    messages can be scrubbed of them should an API echo one)."""

    by_operation: dict[str, OperationAuth]
    lacking: list[str]
    secrets: tuple[str, ...]

    def for_operation(self, operation: Operation) -> OperationAuth:
        return self.by_operation.get(operation.key) or NO_AUTH


NO_AUTH = OperationAuth()


def build_credentials(
    name: str, spec: ApiSpec, options: OpenApiOptions, env: ConnectorEnv, *, base_url: str
) -> ApiCredentials:
    """Read the configured secrets and decide, per operation, which credentials its calls carry.

    Raises:
        ConfigError: a secret is missing, ``security`` names a scheme the spec does not have or a credential that
            does not fit it, or two credentials link accounts (one ``user_oauth`` per connector).
    """
    configured: dict[str, Credential] = {}
    linked_kinds = [key for key, a in [("auth", options.auth), *options.security.items()] if a.type == "user_oauth"]
    if len(linked_kinds) > 1:
        raise ConfigError('only one credential of a connector can be "user_oauth"', key="security")
    for key, auth in options.security.items():
        scheme = spec.schemes.get(key)
        where = f"security.{key}"
        if scheme is None:
            known = ", ".join(sorted(spec.schemes)) or "none"
            raise ConfigError(f"{where}: the spec has no security scheme {key!r} (it has: {known})", key=where)
        if auth.type != "none" and not fits(auth, scheme):
            raise ConfigError(
                f'{where}: type "{auth.type}" cannot satisfy the spec\'s {_describe(scheme)} scheme {key!r}', key=where
            )
        configured[key] = _credential(name, auth, where, spec, env, base_url, scheme)
    default = (
        _credential(name, options.auth, "auth", spec, env, base_url, None) if options.auth.type != "none" else None
    )
    by_operation: dict[str, OperationAuth] = {}
    lacking: list[str] = []
    chosen: dict[tuple[tuple[tuple[str, tuple[str, ...]], ...], ...], OperationAuth] = {}
    if any(operation.security for operation in spec.operations):
        chosen[()] = NO_AUTH  # the spec states requirements: one without any is public (``security: []``)
    for operation in spec.operations:
        shape = tuple(tuple(sorted(r.items())) for r in operation.security)
        if shape not in chosen:
            chosen[shape] = _choose(operation.security, spec, configured, default)
        by_operation[operation.key] = chosen[shape]
        if not chosen[shape].satisfied:
            lacking.append(operation.key)
    secrets = [value for c in [*configured.values(), default] if c is not None for value in _secrets_of(c)]
    return ApiCredentials(by_operation, lacking, tuple(s for s in secrets if len(s) >= 4))


def _choose(
    requirements: tuple[Requirement, ...],
    spec: ApiSpec,
    configured: dict[str, Credential],
    default: Credential | None,
) -> OperationAuth:
    """The first requirement every scheme of which has a credential; anonymous when one allows it."""
    if not requirements:
        return OperationAuth([default.placed(None)]) if default is not None else NO_AUTH
    anonymous = False
    for requirement in requirements:
        if not requirement:
            anonymous = True
            continue
        placed = []
        for key in requirement:
            scheme = spec.schemes.get(key)
            credential = configured.get(key)
            if credential is None and scheme is not None and default is not None and fits(default.auth, scheme):
                credential = default
            if scheme is None or credential is None or credential.auth.type == "none":
                break
            placed.append(credential.placed(scheme))
        else:
            return OperationAuth(placed)
    return NO_AUTH if anonymous else OperationAuth(satisfied=False)


def _credential(
    name: str,
    auth: ApiAuth,
    key: str,
    spec: ApiSpec,
    env: ConnectorEnv,
    base_url: str,
    scheme: SecurityScheme | None,
) -> Credential:
    """Raises ConfigError: a secret it names is missing."""
    credential = Credential(auth, key)
    if auth.type == "bearer":
        credential.headers["Authorization"] = f"Bearer {_secret(auth, 'token', key, env)}"
    elif auth.type == "basic":
        assert auth.username is not None
        user = _read(auth.username, f"{key}.username", env)
        password = _secret(auth, "password", key, env) if auth.secret("password") is not None else ""
        pair = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")  # RFC 7617 §2
        credential.headers["Authorization"] = f"Basic {pair}"
    elif auth.type == "api_key":
        credential.api_key = _secret(auth, "value", key, env)
    elif auth.type == "headers":
        credential.headers = {h: _read(v, f"{key}.headers.{h}", env) for h, v in auth.headers.items()}
    elif auth.type in OAUTH:
        token_url = auth.token_url or _token_url(spec, scheme, auth)
        link_options = AuthOptions(
            auth=auth.type,
            client_id=auth.client_id,
            client_secret_env=auth.client_secret_env,
            client_secret_file=auth.client_secret_file,
            token_url=token_url,
            authorization_server=auth.authorization_server,
            scopes=list(auth.scopes or []),
            audience=auth.audience,
            resource=auth.resource,
        )
        credential.linked = credentials_for(name, link_options, env, upstream_url=base_url)
    return credential


def _token_url(spec: ApiSpec, scheme: SecurityScheme | None, auth: ApiAuth) -> str | None:
    """client_credentials without ``token_url``: the spec's own oauth2 token URL (else discovery, RFC 9728)."""
    if auth.type != "client_credentials":
        return None
    candidates = [scheme] if scheme is not None else [s for s in spec.schemes.values() if fits(auth, s)]
    return next((s.token_url for s in candidates if s is not None and s.token_url.startswith("http")), None)


def _secret(auth: ApiAuth, field_name: str, key: str, env: ConnectorEnv) -> str:
    value = auth.secret(field_name)
    assert value is not None
    suffix = field_name if getattr(auth, field_name) is not None else f"{field_name}_env"
    return _read(value, f"{key}.{suffix}", env)


def _read(value: Value, where: str, env: ConnectorEnv) -> str:
    return resolve_value(value, base_dir=env.base_dir, where=where)


def _secrets_of(credential: Credential) -> list[str]:
    values = [credential.api_key, *credential.headers.values()]
    for value in credential.headers.values():
        scheme, _, rest = value.partition(" ")
        if scheme in ("Bearer", "Basic") and rest:
            values.append(rest)
    return [v for v in values if v]


def _describe(scheme: SecurityScheme) -> str:
    if scheme.type == "http":
        return f"HTTP {scheme.scheme or 'auth'}"
    if scheme.type == "apiKey":
        return f"API key ({scheme.location} {scheme.name})"
    return scheme.type
