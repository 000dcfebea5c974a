"""The effective configuration as the Configuration page shows it: every setting, every secret hidden.

Secrets hide in four shapes, and each is covered: ``SecretStr`` settings (``[server] secret``, ``[vault] keys``);
a key whose name says secret (``password``, ``token``, ``api_key``, ``authorization`` ...); any literal value of a
``headers`` or ``env`` table (an upstream's ``Authorization`` header, a child process's variables), where only
``{env = "NAME"}`` / ``{file = "path"}`` references are shown; and the password part of any URL
(``postgresql://reader:pw@db/crm``). Names of environment variables (``*_env``) and file paths are not secrets
and are shown; the values of those variables are never read here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, SecretStr, ValidationError

from patchbay.connectors.lifecycle import redact as redact_url_passwords
from patchbay.errors import ConfigError
from patchbay.settings import ConnectorSettings, Settings

HIDDEN = "(hidden)"
SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|auth(orization)?|cookie|credential|private[_-]?key|"
    r"^keys?$|dsn|signature)",
    re.IGNORECASE,
)
# Keys that name where a secret is, not the secret itself.
REFERENCE_KEY = re.compile(r"(_env|_file|_claim|_url|_uri|_server|_endpoint|_methods?|_seconds|_days|_bytes)$|^auth$")
# Tables whose every literal value may be a secret.
OPAQUE_TABLES = ("headers", "env")


@dataclass(frozen=True)
class Row:
    key: str
    value: str
    default: bool


@dataclass(frozen=True)
class Section:
    title: str
    rows: list[Row]


def hide(value: Any, key: str = "", opaque: bool = False) -> Any:
    """``value`` (a JSON-mode dump) with every secret replaced by ``(hidden)``."""
    if isinstance(value, dict):
        if opaque and set(value) <= {"env", "file"}:
            return value  # a reference to where the secret is: {env = "NAME"} or {file = "path"}
        inner = opaque or key in OPAQUE_TABLES
        return {k: hide(v, str(k), inner) for k, v in value.items()}
    if isinstance(value, list):
        return [hide(item, key, opaque) for item in value]
    if isinstance(value, str):
        if opaque or (SECRET_KEY.search(key) and not REFERENCE_KEY.search(key)):
            return HIDDEN if value else value
        return redact_url_passwords(value)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return orjson.dumps(value).decode()
    return orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()


def _rows(model: BaseModel) -> list[Row]:
    rows = []
    dumped = model.model_dump(mode="json")
    for name in type(model).model_fields:
        raw = getattr(model, name)
        secret = isinstance(raw, SecretStr) or (isinstance(raw, list) and any(isinstance(x, SecretStr) for x in raw))
        value = (HIDDEN if raw else raw) if secret else hide(dumped.get(name), name)
        rows.append(Row(name, _shown(value), name not in model.model_fields_set))
    return rows


def sections(settings: Settings) -> list[Section]:
    """One section per settings table, then one per rule list, then one per connector."""
    found = []
    for name, field in type(settings).model_fields.items():
        value = getattr(settings, name)
        if field.exclude or name == "connectors":
            continue
        if isinstance(value, BaseModel):
            found.append(Section(f"[{name}]", _rows(value)))
        elif isinstance(value, list) and value:
            rows = [
                Row(f"{name}[{i}]", _shown(hide(item.model_dump(mode="json"))), False) for i, item in enumerate(value)
            ]
            found.append(Section(f"[[{name}]]", rows))
    for index, entry in enumerate(settings.connectors):
        found.append(Section(f"connectors[{index}] {entry.name} ({entry.type})", connector_rows(entry)))
    return found


def connector_rows(entry: ConnectorSettings) -> list[Row]:
    """A connector's common keys and its type's options (with their defaults, when the type is installed)."""
    from patchbay.connectors.registry import load_type

    rows = _rows(entry)  # the common keys; the type's own keys are extras, not fields
    try:
        kind = load_type(entry.type, where=entry.name)
        options: dict[str, Any] = kind.Options.model_validate(entry.options).model_dump(mode="json")
    except (ConfigError, ValidationError):
        options = dict(entry.options)  # shown as configured; the server says elsewhere why it is wrong
    for key, value in options.items():
        rows.append(Row(key, _shown(hide(value, key)), key not in entry.options))
    return rows
