"""The ``type = "sql"`` config keys, and where the database URL (and its secret) comes from.

Credentials never live in ``patchbay.toml``: ``url`` may reference environment variables as ``${NAME}``,
``url_file`` reads the URL from a file (a mounted secret), and ``password_env`` / ``password_file`` supply only the
password, which then needs no URL-quoting. The resolved URL is only ever shown masked (:func:`masked`).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from patchbay.connectors.base import ConnectorOptions
from patchbay.errors import ConfigError

ParamType = Literal["string", "integer", "number", "boolean", "date", "datetime"]
RESERVED_TOOLS = frozenset({"list_tables", "describe_table", "query", "fetch_record"})
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_NAME = r"^[a-z][a-z0-9_]{0,63}$"


class ParamSpec(BaseModel):
    """One declared action parameter; ``params = { id = "integer" }`` is short for ``{ type = "integer" }``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: ParamType
    description: str | None = None
    required: bool = True
    enum: list[str | int | float] | None = None
    max_length: int | None = Field(None, ge=1)
    minimum: float | None = None
    maximum: float | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> ParamSpec:
        if self.max_length is not None and self.type != "string":
            raise ValueError(f"max_length applies to string parameters, not {self.type}")
        if (self.minimum is not None or self.maximum is not None) and self.type not in ("integer", "number"):
            raise ValueError(f"minimum/maximum apply to integer and number parameters, not {self.type}")
        if self.enum is not None and not self.enum:
            raise ValueError("enum must list at least one value")
        return self


class ActionSpec(BaseModel):
    """A ``[[connectors.actions]]`` table: a parameterised statement published as its own tool."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=_NAME)
    description: str = Field(min_length=1)
    sql: str = Field(min_length=1)
    title: str | None = None
    params: dict[str, ParamSpec] = {}
    destructive: bool | None = None
    """Default: true when the statement is a DELETE, DROP or TRUNCATE."""
    idempotent: bool = False

    @field_validator("params", mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: {"type": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for key in value:
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", key):
                raise ValueError(f"parameter name '{key}' is not allowed: use letters, digits and _")
        return value

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value in RESERVED_TOOLS:
            raise ValueError(f"'{value}' is a built-in tool of the sql connector; pick another action name")
        return value


class SqlOptions(ConnectorOptions):
    url: str | None = None
    """SQLAlchemy URL, e.g. ``postgresql+psycopg://reader@db/crm``; ``${NAME}`` is replaced from the environment."""
    url_file: str | None = None
    """A file holding the URL (e.g. /run/secrets/crm_url); relative to the config file."""
    password_env: str | None = None
    """An environment variable holding the password (set into the URL; no quoting needed)."""
    password_file: str | None = None
    """A file holding the password; relative to the config file."""
    schemas: list[str] = []
    """Schemas to expose; default: the connection's default schema."""
    include_tables: list[str] = []
    """Glob patterns (``orders``, ``sales.*``, ``crm_*``): only matching tables are visible. Default: all."""
    exclude_tables: list[str] = []
    """Glob patterns of tables never visible, even when included."""
    max_rows: int = Field(500, ge=1, le=100_000)
    """The most rows one call returns."""
    page_size: int = Field(100, ge=1, le=100_000)
    """Rows per page when the caller gives no limit."""
    statement_timeout_ms: int = Field(5000, ge=10, le=600_000)
    max_value_chars: int = Field(2000, ge=16)
    """Longer text values are cut to this many characters, with a note in the result."""
    pool_size: int = Field(5, ge=1, le=100)
    sample_data: bool = False
    """Create the sample CRM (customers, orders, tickets) when the SQLite file does not exist yet: the demo."""
    actions: list[ActionSpec] = []

    @model_validator(mode="after")
    def _sources(self) -> SqlOptions:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of 'url' (may use ${ENV_VAR}) or 'url_file' (a file holding the URL)")
        if self.password_env is not None and self.password_file is not None:
            raise ValueError("give at most one of 'password_env' and 'password_file'")
        if self.page_size > self.max_rows:
            raise ValueError(f"page_size ({self.page_size}) must not exceed max_rows ({self.max_rows})")
        names = [a.name for a in self.actions]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"two actions are named '{name}'; action names must be unique")
        return self


def resolve_url(options: SqlOptions, base_dir: Path, environ: Mapping[str, str] | None = None) -> URL:
    """The database URL with its secrets filled in; relative SQLite paths made absolute against ``base_dir``.

    Raises:
        ConfigError: a referenced variable or file is missing, or the result is not a SQLAlchemy URL. The
            message never contains the URL's password.
    """
    env = os.environ if environ is None else environ
    if options.url is not None:
        raw = _ENV_REF.sub(lambda m: _env(env, m.group(1), "url"), options.url)
    else:
        raw = _read_secret(base_dir, options.url_file or "", "url_file")
    try:
        url = make_url(raw)
    except ArgumentError:
        # The raw text may hold a password: say what is wrong without echoing it.
        raise ConfigError(
            "url: not a SQLAlchemy URL (expected e.g. sqlite:///crm.db or postgresql+psycopg://user@host/db)"
        ) from None
    if options.password_env is not None:
        url = url.set(password=_env(env, options.password_env, "password_env"))
    elif options.password_file is not None:
        url = url.set(password=_read_secret(base_dir, options.password_file, "password_file"))
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
        if not path.is_absolute():
            url = url.set(database=str((base_dir / path).resolve()))
    return url


def masked(url: URL) -> str:
    """``url`` for messages and logs: the password replaced by ``***``."""
    return url.render_as_string(hide_password=True)


def _env(env: Mapping[str, str], name: str, key: str) -> str:
    value = env.get(name)
    if value is None:
        raise ConfigError(f"{key}: environment variable {name} is not set")
    return value


def _read_secret(base_dir: Path, name: str, key: str) -> str:
    path = (base_dir / name).resolve()
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
