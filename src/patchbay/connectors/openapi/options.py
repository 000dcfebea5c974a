"""The ``[[connectors]] type = "openapi"`` keys (docs/openapi.md), checked once at start-up."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from patchbay.links.options import SecretRef, Value

_ENV = r"^[A-Za-z_][A-Za-z0-9_]*$"
_HEADER = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")  # RFC 9110 §5.1 field-name
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
HTTP_METHODS = ("GET", "PUT", "POST", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE")


def _valid_header_names(value: dict[str, Value]) -> dict[str, Value]:
    for name in value:
        if not _HEADER.match(name):
            raise ValueError(f"{name!r} is not a valid header name (RFC 9110 §5.1)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Selection(_Strict):
    """Which operations a rule matches; an operation matches when it matches any listed value of any key."""

    tags: list[str] = []
    """OpenAPI tags (exact, case-sensitive)."""
    operations: list[str] = []
    """operationIds, or ``"METHOD /path"`` for operations without one (globs allowed: ``"*ticket*"``)."""
    paths: list[str] = []
    """Globs on the path as the spec writes it: ``"/tickets/*"``, ``"/admin/**"``."""
    methods: list[str] = []
    """HTTP methods: ``["GET", "POST"]``."""

    @field_validator("methods")
    @classmethod
    def _methods(cls, value: list[str]) -> list[str]:
        upper = [method.upper() for method in value]
        unknown = [method for method in upper if method not in HTTP_METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP methods {unknown}; use {', '.join(HTTP_METHODS)}")
        return upper

    def empty(self) -> bool:
        return not (self.tags or self.operations or self.paths or self.methods)


class OperationOverride(_Strict):
    """What a client sees of one operation (keyed by operationId or ``"METHOD /path"``), replacing the derived."""

    name: str | None = None
    """The tool name (before the connector prefix)."""
    title: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=10_000)
    annotations: dict[str, bool] | None = None
    """Any of readOnlyHint, destructiveHint, idempotentHint, openWorldHint."""
    timeout: float | None = Field(None, gt=0, le=3600)
    """Seconds this operation may take (default: the connector's ``timeout``)."""
    fields: list[str] | None = None
    """Project the JSON response to these dotted paths (``["id", "owner.login", "items.title"]``)."""
    max_response_bytes: int | None = Field(None, ge=1024, le=50_000_000)
    enabled: bool = True

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _TOOL_NAME.match(value):
            raise ValueError("must be 1-64 characters of letters, digits, _ and -")
        return value

    @model_validator(mode="after")
    def _known_hints(self) -> OperationOverride:
        unknown = set(self.annotations or ()) - set(HINTS)
        if unknown:
            raise ValueError(f"unknown annotations {sorted(unknown)}; use {', '.join(HINTS)}")
        return self


AuthType = Literal["none", "bearer", "basic", "api_key", "headers", "client_credentials", "user_oauth"]


class ApiAuth(_Strict):
    """How Patchbay authenticates to the API (never with the caller's token). ``auth = "user_oauth"`` is short for
    ``auth = { type = "user_oauth" }``."""

    type: AuthType = "none"
    # bearer
    token: Value | None = None
    token_env: str | None = Field(None, pattern=_ENV)
    # basic
    username: Value | None = None
    password: Value | None = None
    password_env: str | None = Field(None, pattern=_ENV)
    # api_key: where it goes defaults to the spec's apiKey scheme
    value: Value | None = None
    value_env: str | None = Field(None, pattern=_ENV)
    name: str | None = None
    location: Literal["header", "query", "cookie"] | None = Field(None, alias="in")
    # headers
    headers: dict[str, Value] = {}
    # client_credentials / user_oauth (as in patchbay.links.AuthOptions)
    client_id: str | None = None
    client_secret_env: str | None = Field(None, pattern=_ENV)
    client_secret_file: str | None = None
    token_url: str | None = Field(None, pattern=r"^https?://")
    authorization_server: str | None = Field(None, pattern=r"^https?://")
    scopes: list[str] | None = None
    audience: str | None = None
    resource: str | None = Field(None, pattern=r"^https?://")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        return {"type": data} if isinstance(data, str) else data

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, Value]) -> dict[str, Value]:
        return _valid_header_names(value)

    @model_validator(mode="after")
    def _complete(self) -> ApiAuth:
        need = {
            "bearer": ("token", "token_env"),
            "basic": ("username",),
            "api_key": ("value", "value_env"),
            "headers": ("headers",),
            "client_credentials": ("client_id",),
        }.get(self.type, ())
        if need and not any(getattr(self, key) for key in need):
            raise ValueError(f'type = "{self.type}" needs {" or ".join(need)}')
        if self.token is not None and self.token_env is not None:
            raise ValueError("give token or token_env, not both")
        if self.value is not None and self.value_env is not None:
            raise ValueError("give value or value_env, not both")
        if self.password is not None and self.password_env is not None:
            raise ValueError("give password or password_env, not both")
        return self

    def secret(self, key: str) -> Value | None:
        """``token``/``password``/``value``, or its ``*_env`` form, as a configured value."""
        direct = getattr(self, key)
        if direct is not None:
            return direct  # type: ignore[no-any-return]
        env = getattr(self, f"{key}_env")
        return SecretRef(env=env) if env else None


class OpenApiOptions(_Strict):
    """A REST API described by an OpenAPI (or Swagger 2.0) document, published as tools."""

    spec: str = Field(min_length=1)
    """The document: a file (relative to the config file) or an http(s) URL; JSON or YAML."""
    spec_headers: dict[str, Value] = {}
    """Headers for fetching ``spec`` and its external references only (never sent to the API)."""
    external_refs: list[str] = []
    """URL prefixes external ``$ref``s may be fetched from besides the spec's own origin (files beside a file spec
    are always allowed, never outside its folder)."""
    max_spec_bytes: int = Field(64 * 1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    """Largest document (and each external one) read."""
    base_url: str | None = Field(None, pattern=r"^https?://[^/?#\s]+")
    """Where requests go; default: the spec's first server (relative ones resolved against the spec's URL)."""
    include: Selection = Selection()
    """Operations to publish (empty: all)."""
    exclude: Selection = Selection()
    """Operations to leave out; wins over ``include``."""
    operations: dict[str, OperationOverride] = {}
    """operationId or ``"METHOD /path"`` -> name, title, description, annotations, timeout, fields."""
    mode: Literal["tools", "search", "auto"] = "auto"
    """tools: one tool per operation · search: search/describe/call tools · auto: search above ``token_budget``."""
    token_budget: int = Field(20_000, ge=100, le=10_000_000)
    """``mode = "auto"``: the estimated tools/list size (tokens) above which search mode is used."""
    open_world: bool = True
    """openWorldHint of every tool: false for an internal API that reaches nothing outside the organisation."""
    auth: ApiAuth = ApiAuth()
    """How Patchbay authenticates to the API, applied where the operation's security scheme says."""
    security: dict[str, ApiAuth] = {}
    """Per security scheme of the spec (its key in securitySchemes): the credential for that scheme, when the spec
    uses several."""
    headers: dict[str, Value] = {}
    """Extra headers sent with every API request (not secrets' place: use ``auth``)."""
    timeout: float = Field(30.0, gt=0, le=3600)
    """Seconds one API request may take."""
    retries: int = Field(2, ge=0, le=10)
    """Retries of idempotent requests (and POSTs with an idempotency key) on 429, 502, 503, 504 or a lost
    connection, with jittered backoff honouring Retry-After."""
    max_response_bytes: int = Field(100_000, ge=1024, le=50_000_000)
    """Largest response body given to the client (about 25,000 tokens); more is cut with a note."""
    max_in_flight: int = Field(32, ge=1, le=10_000)
    """API requests running at once; more wait their turn."""
    output_schema: bool = True
    """Publish outputSchema from the spec's 2xx JSON response where it is an object."""
    strict_output: bool = False
    """A response that does not match the outputSchema is an error (default: returned and logged)."""

    @field_validator("spec_headers", "headers")
    @classmethod
    def _header_names(cls, value: dict[str, Value]) -> dict[str, Value]:
        return _valid_header_names(value)

    @field_validator("external_refs")
    @classmethod
    def _prefixes(cls, value: list[str]) -> list[str]:
        for prefix in value:
            if not re.match(r"^https?://[^/?#\s]+/", prefix):
                raise ValueError(f"{prefix!r} must be an http(s) URL prefix ending in a path, e.g. https://host/specs/")
        return value
