"""The upstream-auth keys of a connector's ``[[connectors]]`` table, shared by every connector that calls out.

A connector embeds them by subclassing :class:`AuthOptions` (``class Options(AuthOptions): url: str …``), so the
keys sit in the connector's own table::

    [[connectors]]
    name = "jira"
    type = "mcp"
    url = "https://mcp.example-vendor.com/mcp"
    auth = "user_oauth"

Values that are secrets come from an environment variable (``{env = "VAR"}``) or a file (``{file = "path"}``,
relative to the config folder); :func:`resolve_value` reads them at start and names the key when one is missing.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from patchbay.errors import ConfigError

AuthMode = Literal["none", "headers", "client_credentials", "user_oauth"]
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.1 field-name (token)
_SCOPE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")  # RFC 6749 §3.3 scope-token
# Headers that only Patchbay decides: a configured value would be ignored or break the transport.
_RESERVED = {"host", "content-length", "transfer-encoding", "connection", "mcp-session-id", "mcp-protocol-version"}


class SecretRef(BaseModel):
    """``{env = "VAR"}`` or ``{file = "path"}``: a value kept out of the config file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    file: str | None = None

    @model_validator(mode="after")
    def _one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError('give exactly one of env = "VARIABLE" or file = "path"')
        return self


Value = str | SecretRef


class AuthOptions(BaseModel):
    """How Patchbay authenticates to the system behind a connector (docs/links.md). Never the caller's token."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    auth: AuthMode = "none"
    """none · headers (static headers) · client_credentials (OAuth, one token for everyone) · user_oauth (each
    person links their own account)."""
    headers: dict[str, Value] = {}
    """Header name → value, {env = "VAR"} or {file = "path"}; sent with every upstream request (auth = "headers",
    or besides the token with the OAuth modes)."""
    client_id: str | None = None
    """OAuth client id at the upstream's authorization server; for user_oauth, unset means Patchbay identifies
    itself by its client metadata document or registers dynamically."""
    client_secret_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    """Environment variable holding the client secret."""
    client_secret_file: str | None = None
    """A file holding the client secret instead (relative to the config folder)."""
    token_url: str | None = None
    """The token endpoint; default: discovered from the upstream's protected-resource metadata (RFC 9728)."""
    authorization_server: str | None = None
    """The issuer to use; default: the first one the upstream's protected-resource metadata names."""
    scopes: list[str] = []
    """Scopes to ask for; default: those the upstream's protected-resource metadata lists (user_oauth), none
    (client_credentials)."""
    audience: str | None = None
    """client_credentials: an `audience` parameter for token endpoints that want one (Auth0 and others)."""
    resource: str | None = None
    """RFC 8707 resource indicator; default: the upstream's resource identifier from its metadata, else its URL."""

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, Value]) -> dict[str, Value]:
        for name in value:
            if not _HEADER.match(name):
                raise ValueError(f"{name!r} is not a valid header name (RFC 9110 §5.1)")
            if name.lower() in _RESERVED:
                raise ValueError(f"{name!r} is set by Patchbay itself and cannot be configured")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        for scope in value:
            if not _SCOPE.match(scope):
                raise ValueError(f'{scope!r} is not a valid scope (RFC 6749 §3.3: printable ASCII, no space, " or \\)')
        return value

    @field_validator("token_url", "authorization_server", "resource")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/?#\s]+", value):
            raise ValueError("must be an absolute http(s) URL")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AuthOptions:
        if self.client_secret_env and self.client_secret_file:
            raise ValueError("give client_secret_env or client_secret_file, not both")
        if self.auth == "headers" and not self.headers:
            raise ValueError('auth = "headers" needs a headers table, e.g. headers = {Authorization = {env = "VAR"}}')
        if self.auth == "client_credentials" and not self.client_id:
            raise ValueError('auth = "client_credentials" needs client_id (and client_secret_env or _file)')
        if self.auth == "none" and (self.client_id or self.token_url):
            raise ValueError('client_id and token_url need auth = "client_credentials" or "user_oauth"')
        return self


def resolve_value(value: Value, *, base_dir: Path, where: str, env: Mapping[str, str] | None = None) -> str:
    """The text of a configured value: itself, an environment variable's, or a file's (trailing newline dropped).

    ``where`` names the file and key for messages (``"patchbay.toml: connectors[jira].headers.Authorization"``);
    the value itself never appears in a message.

    Raises:
        ConfigError: the variable is unset or empty, or the file cannot be read.
    """
    if isinstance(value, str):
        return value
    environ = os.environ if env is None else env
    if value.env is not None:
        text = environ.get(value.env)
        if not text:
            raise ConfigError(f"{where}: environment variable {value.env} is not set (or empty)", key=where)
        return text
    path = base_dir / (value.file or "")
    try:
        text = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise ConfigError(f"{where}: cannot read secret file {path}: {reason}", key=where) from None
    if not text:
        raise ConfigError(f"{where}: secret file {path} is empty", key=where)
    return text
