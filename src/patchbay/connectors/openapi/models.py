"""The OpenAPI connector's model of an API, whatever the spec's version: what intake produces, tools consume.

Intake (``spec.py``, ``refs.py``, ``schemas.py``, ``paths.py``, ``parse.py``, ``parameters.py``, ``content.py``,
``swagger2.py``) reads an OpenAPI 3.0 / 3.1 / 3.2 or Swagger 2.0 document and produces one :class:`ApiSpec`:
operations with their parameters, body and success response, every schema already JSON Schema 2020-12 (OpenAPI's
``nullable``, boolean ``exclusiveMinimum`` and the like rewritten), every reference ``{"$ref": "#/$defs/<key>"}``
into the shared :attr:`ApiSpec.defs`. Recursive schemas stay references, never expanded. An operation that cannot
be converted is left out and listed in :attr:`ApiSpec.skipped` with its reason; it never fails the whole spec.

Tools (``tools.py``, ``naming.py``, ``inputs.py``, ``search.py``) turn operations into MCP tools: each gets a
:class:`Plan`, the map from its flat argument names to where each value goes in the HTTP request, and calls
(``request.py``, ``responses.py``, ``caller.py``) build the request from a plan and the arguments.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Location = Literal["path", "query", "header", "cookie"]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class Parameter:
    """One path, query, header or cookie parameter (OpenAPI 3 Parameter Object, Swagger 2.0 converted)."""

    name: str
    location: Location
    schema: dict[str, Any]
    required: bool = False
    description: str = ""
    # Serialisation (OpenAPI 3 §4.8.12.4): defaults already applied by intake (form/explode for query and cookie,
    # simple/no explode for path and header).
    style: str = "simple"
    explode: bool = False
    allow_reserved: bool = False
    # A parameter described by ``content`` instead of ``schema``: its media type (the value is serialised as such).
    content_type: str | None = None
    deprecated: bool = False
    # OpenAPI 3.1 §4.8.12.2 allowEmptyValue (query only): an empty value may be sent. False by default, so a query
    # string argument must not be empty.
    allow_empty: bool = False


@dataclass(frozen=True, slots=True)
class Encoding:
    """How one property of a form or multipart body is sent (OpenAPI 3 Encoding Object)."""

    content_type: str | None = None
    style: str = "form"
    explode: bool = True
    allow_reserved: bool = False
    # Whether the property is sent in its ``style`` (RFC 6570-like name/value pairs) rather than as content of its
    # ``contentType``. Always for application/x-www-form-urlencoded; for multipart/form-data only from OpenAPI 3.1
    # on, when the spec writes ``style``, ``explode`` or ``allowReserved`` (3.1.1 §4.8.15.1: "the presence of at
    # least one ... is equivalent to using schema with in: query"; 3.0.3 ignores them for multipart).
    styled: bool = True


@dataclass(frozen=True, slots=True)
class Body:
    """The request body in the media type Patchbay will send (JSON preferred, then form, multipart, text, binary)."""

    media_type: str
    schema: dict[str, Any]
    required: bool = False
    description: str = ""
    encoding: dict[str, Encoding] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Success:
    """The response a successful call is expected to give: the first 2xx (or ``default``) described."""

    status: str  # "200", "2XX", "default"
    media_type: str | None  # None: no content (204)
    schema: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class SecurityScheme:
    """One entry of ``components.securitySchemes`` (or Swagger 2.0 ``securityDefinitions``)."""

    key: str
    type: Literal["apiKey", "http", "oauth2", "openIdConnect", "mutualTLS"]
    # apiKey: the parameter's name and where it goes.
    name: str = ""
    location: Literal["header", "query", "cookie", ""] = ""
    # http: "basic", "bearer", or another RFC 7235 scheme (lower case).
    scheme: str = ""
    # oauth2 clientCredentials / authorizationCode token URL and the scopes it lists; openIdConnect discovery URL.
    token_url: str = ""
    authorization_url: str = ""
    openid_url: str = ""
    scopes: tuple[str, ...] = ()


# One security requirement: scheme key -> scopes. An operation is satisfied by any one requirement of its list;
# an empty requirement ({}) means anonymous access is allowed.
Requirement = dict[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Operation:
    """One operation (path + method), with path-level parameters merged in and references resolved."""

    method: str  # upper case: GET, POST, ...
    path: str  # as in the spec: /tickets/{id}
    operation_id: str | None
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    deprecated: bool = False
    parameters: tuple[Parameter, ...] = ()
    body: Body | None = None
    success: Success | None = None
    # None: the spec's top-level ``security`` applies (already substituted by intake when it exists); () : none.
    security: tuple[Requirement, ...] = ()
    # Operation- or path-level ``servers`` overriding the spec's (absolute or relative URLs, variables substituted).
    servers: tuple[str, ...] = ()
    # A header parameter named like an idempotency key (``Idempotency-Key``): POSTs carrying it may be retried.
    idempotency_header: str | None = None
    # Vendor extensions of the operation (``x-…`` keys), for overrides such as ``x-mcp`` / ``x-patchbay``.
    extensions: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``"GET /tickets/{id}"``: unique within a spec, stable, what logs and the skipped list name."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True)
class Skipped:
    """An operation intake could not convert (``key`` as :attr:`Operation.key`), and why, in one sentence."""

    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """A whole API, parsed once per configuration and shared by every session."""

    version: str  # the document's "openapi" or "swagger" value: "3.1.0", "2.0", ...
    title: str
    description: str
    servers: tuple[str, ...]  # absolute or relative URLs, server variables substituted by their defaults
    operations: tuple[Operation, ...]
    defs: dict[str, dict[str, Any]]  # "#/$defs/<key>" targets, shared by every operation's schemas
    schemes: dict[str, SecurityScheme]
    skipped: tuple[Skipped, ...] = ()
    source: str = ""  # the file or URL it was read from (for messages)


@dataclass(frozen=True, slots=True)
class ArgTarget:
    """Where one flat tool argument goes: a parameter, one property of an object body, or the whole body."""

    location: Literal["path", "query", "header", "cookie", "body", "body_property"]
    name: str  # the parameter's or body property's name as the API spells it; "" for the whole body


@dataclass(frozen=True, slots=True)
class Plan:
    """One operation as a tool: its flat arguments' targets. Built once at open(), used by every call."""

    operation: Operation
    args: dict[str, ArgTarget]  # tool argument name -> target
    tool_name: str  # the connector-local tool name (before the catalog's prefix)
