"""``patchbay.toml`` plus ``PATCHBAY_*`` environment overrides, validated into one typed settings object.

Environment overrides name a section and a key joined by a double underscore, e.g.
``PATCHBAY_SERVER__PORT=9000`` or ``PATCHBAY_SERVER__PUBLIC_URL=https://mcp.example.com``; values are parsed as
TOML values when they parse (numbers, booleans, arrays) and taken as strings otherwise.

Every error names the file (or variable), the key, the bad value and what is allowed; unknown keys are errors
with a "did you mean".
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from patchbay.errors import ConfigError

ENV_PREFIX = "PATCHBAY_"
CONNECTOR_COMMON = {"name", "type", "prefix", "enabled"}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServerSettings(_Section):
    name: str = "Patchbay"
    """Shown to clients as serverInfo.name."""
    title: str | None = None
    instructions: str | None = None
    """Guidance for the model using this server; keep the key facts in the first 512 characters (ChatGPT)."""
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    public_url: str | None = None
    """The URL users paste into ChatGPT or Claude, without /mcp; defaults to http://host:port."""
    allowed_hosts: list[str] = []
    """Extra Host header values to accept besides public_url's host and loopback; "*" turns the Host check off."""
    allowed_origins: list[str] = []
    """Extra browser origins (scheme://host[:port]) allowed to call /mcp."""
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    session_idle_seconds: float = Field(1800, gt=0)
    max_sessions: int = Field(10_000, ge=1)
    sse_keepalive_seconds: float = Field(15, gt=0)
    list_ttl_ms: int = Field(60_000, ge=0)
    shutdown_grace_seconds: float = Field(30, ge=0)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"

    @field_validator("public_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an absolute http(s) URL such as https://mcp.example.com")
        if parts.query or parts.fragment or parts.username:
            raise ValueError("must not carry a query, fragment or credentials")
        return value.rstrip("/")


class StoreSettings(_Section):
    url: str = "sqlite:///patchbay.db"
    """A SQLAlchemy URL. Relative SQLite paths are relative to the config file's folder."""


class AuthSettings(_Section):
    mode: Literal["none"] = "none"
    """Only "none" exists so far; sign-in modes come with the authorization server."""


class ConnectorSettings(BaseModel):
    """One ``[[connectors]]`` table; its type-specific keys are checked by the connector type's Options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    type: str
    prefix: str | None = None
    enabled: bool = True

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def tool_prefix(self) -> str:
        return f"{self.name}_" if self.prefix is None else self.prefix


class Settings(_Section):
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    auth: AuthSettings = AuthSettings()
    connectors: list[ConnectorSettings] = []
    source: str = Field("<defaults>", exclude=True)
    """Where these settings came from, for messages."""
    base_dir: Path = Field(default_factory=Path.cwd, exclude=True)

    @property
    def public_url(self) -> str:
        if self.server.public_url:
            return self.server.public_url
        host = self.server.host
        if host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding to it
            host = "127.0.0.1"
        return f"http://{host}:{self.server.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.public_url}/mcp"

    @property
    def store_url(self) -> str:
        url = self.store.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and ":memory:" not in url:
            return prefix + str((self.base_dir / url[len(prefix) :]).resolve())
        return url


def load(path: str | Path | None, env: Mapping[str, str] | None = None) -> Settings:
    """Read ``path`` (or only defaults when None), apply ``PATCHBAY_*`` overrides, and validate.

    Raises:
        ConfigError: with the file, the key, the bad value and what is allowed.
    """
    data: dict[str, Any] = {}
    source = "<defaults>"
    base_dir = Path.cwd()
    if path is not None:
        file = Path(path)
        source = str(file)
        base_dir = file.resolve().parent
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{file}: no such config file (create one with `patchbay init`)", file=source) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: not valid TOML: {exc}", file=source) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}", file=source) from None
    env_sources = _apply_env(data, os.environ if env is None else env)
    return from_dict(data, source=source, base_dir=base_dir, env_sources=env_sources)


def from_dict(
    data: dict[str, Any],
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env_sources: dict[str, str] | None = None,
) -> Settings:
    """Validate already-parsed config data. Raises ConfigError like :func:`load`."""
    _check_unknown(data, source, env_sources or {})
    try:
        settings = Settings.model_validate({**data, "source": source, "base_dir": base_dir or Path.cwd()})
    except ValidationError as exc:
        raise ConfigError(_explain(exc, data, source, env_sources or {}), file=source) from None
    names = [c.name for c in settings.connectors]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{source}: connectors: two connectors are named '{name}'; names must be unique",
                file=source,
                key="connectors.name",
            )
    return settings


def _apply_env(data: dict[str, Any], env: Mapping[str, str]) -> dict[str, str]:
    applied: dict[str, str] = {}
    for variable, raw in env.items():
        if not variable.startswith(ENV_PREFIX) or "__" not in variable:
            continue
        section, _, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        if section == "connectors":
            continue
        try:
            value: Any = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        target = data.setdefault(section, {})
        if isinstance(target, dict):
            target[key] = value
            applied[f"{section}.{key}"] = variable
    return applied


def _check_unknown(data: dict[str, Any], source: str, env_sources: dict[str, str]) -> None:
    sections: dict[str, type[BaseModel]] = {"server": ServerSettings, "store": StoreSettings, "auth": AuthSettings}
    for key, value in data.items():
        if key == "connectors":
            continue
        if key not in sections:
            variable = next((v for k, v in env_sources.items() if k.startswith(f"{key}.")), None)
            origin = f"environment variable {variable}" if variable else source
            raise ConfigError(_unknown(origin, key, [*sections, "connectors"], "top-level table"), file=source, key=key)
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{key}] must be a table, got {value!r}", file=source, key=key)
        fields = list(sections[key].model_fields)
        for sub in value:
            if sub not in fields:
                where = env_sources.get(f"{key}.{sub}")
                origin = f"environment variable {where}" if where else source
                raise ConfigError(
                    _unknown(origin, f"{key}.{sub}", fields, f"key in [{key}]"),
                    file=source,
                    key=f"{key}.{sub}",
                )


def _unknown(source: str, key: str, allowed: list[str], what: str) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, allowed, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"{source}: unknown {what} '{key}'.{hint} Allowed: {', '.join(allowed)}."


def _explain(exc: ValidationError, data: dict[str, Any], source: str, env_sources: dict[str, str]) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = error["loc"]
        key = _dotted(loc, data)
        origin = env_sources.get(key)
        where = f"environment variable {origin}" if origin else source
        value = _value_at(data, loc)
        shown = f" (got {value!r})" if value is not _NOTHING else ""
        lines.append(f"{where}: {key}: {error['msg']}{shown}")
    return "\n".join(lines)


_NOTHING = object()


def _dotted(loc: tuple[Any, ...], data: dict[str, Any]) -> str:
    parts: list[str] = []
    node: Any = data
    for part in loc:
        if isinstance(part, int) and isinstance(node, list) and part < len(node):
            name = node[part].get("name") if isinstance(node[part], dict) else None
            parts[-1] = f"{parts[-1]}[{name or part}]"
            node = node[part]
            continue
        parts.append(str(part))
        node = node.get(part) if isinstance(node, dict) else None
    return ".".join(parts)


def _value_at(data: Any, loc: tuple[Any, ...]) -> Any:
    node = data
    for part in loc:
        if (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and part < len(node)
        ):
            node = node[part]
        else:
            return _NOTHING
    return node
