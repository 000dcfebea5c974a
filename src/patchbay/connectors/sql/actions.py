"""Declared actions: parameterised statements an operator publishes as tools. The only way an sql connector writes.

Each action is checked when the connector starts (one statement that parses, bind parameters exactly the declared
ones) and each call's arguments are validated against the declared types before anything runs. Values reach the
database only as bound parameters, never as SQL text.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from patchbay.connectors.sql import guard
from patchbay.connectors.sql.options import ActionSpec, ParamSpec
from patchbay.connectors.sql.schemas import INT64_MAX, INT64_MIN
from patchbay.errors import ToolError

DESTRUCTIVE_KINDS = frozenset({"delete", "drop", "truncate"})
_JSON_TYPES = {
    "string": "string",
    "integer": "integer",
    "number": "number",
    "boolean": "boolean",
    "date": "string",
    "datetime": "string",
}
_FORMATS = {"date": "date", "datetime": "date-time"}


@dataclass(frozen=True, slots=True)
class Action:
    spec: ActionSpec
    kind: str
    read_only: bool
    destructive: bool
    statement: sa.TextClause


def prepare(spec: ActionSpec, dialect: str) -> Action:
    """Check ``spec`` against the database's dialect.

    Raises:
        ValueError: the statement does not parse, is not exactly one statement, or its bind parameters differ
            from the declared ``params``.
    """
    try:
        tree = guard.parse_one(spec.sql, dialect)
    except guard.Refused as exc:
        raise ValueError(f"sql: {exc}") from None
    statement = sa.text(spec.sql)
    bound = set(statement._bindparams)
    declared = set(spec.params)
    if bound != declared:
        missing = ", ".join(sorted(bound - declared)) or "none"
        unused = ", ".join(sorted(declared - bound)) or "none"
        raise ValueError(
            f"the statement's bind parameters ({', '.join(sorted(bound)) or 'none'}) must match 'params' exactly: "
            f"used but not declared: {missing}; declared but not used: {unused}"
        )
    kind = guard.statement_kind(tree)
    read_only = guard.violation(tree) is None
    destructive = spec.destructive if spec.destructive is not None else kind in DESTRUCTIVE_KINDS
    return Action(spec, kind, read_only, False if read_only else destructive, statement)


def input_schema(spec: ActionSpec) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for name, param in spec.params.items():
        schema: dict[str, Any] = {"type": _JSON_TYPES[param.type]}
        if param.type in _FORMATS:
            schema["format"] = _FORMATS[param.type]
        if param.description:
            schema["description"] = param.description
        if param.enum is not None:
            schema["enum"] = list(param.enum)
        if param.max_length is not None:
            schema["maxLength"] = param.max_length
        if param.minimum is not None:
            schema["minimum"] = param.minimum
        if param.maximum is not None:
            schema["maximum"] = param.maximum
        if not param.required:
            schema["type"] = [schema["type"], "null"]
        properties[name] = schema
    required = [n for n, p in spec.params.items() if p.required]
    return {"type": "object", "properties": properties, "required": required, "additionalProperties": False}


def bind(spec: ActionSpec, arguments: dict[str, Any]) -> dict[str, Any]:
    """The statement's parameters from a call's ``arguments``, converted to their declared types.

    Raises:
        ToolError: an unknown, missing or invalid argument, naming it and what is allowed.
    """
    unknown = sorted(set(arguments) - set(spec.params))
    if unknown:
        takes = ", ".join(spec.params) or "no parameters"
        raise ToolError(f"Invalid arguments: unknown parameter(s) {', '.join(unknown)}; {spec.name} takes {takes}")
    values: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = arguments.get(name)
        if value is None:
            if param.required:
                raise ToolError(f"Invalid arguments: '{name}' is required ({_expected(param)})")
            values[name] = None
            continue
        values[name] = _convert(name, param, value)
    return values


def _convert(name: str, param: ParamSpec, value: Any) -> Any:
    converted = _typed(name, param, value)
    if param.enum is not None and converted not in param.enum:
        allowed = ", ".join(repr(v) for v in param.enum)
        raise ToolError(f"Invalid arguments: '{name}' must be one of {allowed}; got {value!r}")
    if param.max_length is not None and isinstance(converted, str) and len(converted) > param.max_length:
        raise ToolError(f"Invalid arguments: '{name}' is longer than {param.max_length} characters")
    if isinstance(converted, int) and not isinstance(converted, bool) and not INT64_MIN <= converted <= INT64_MAX:
        raise ToolError(f"Invalid arguments: '{name}' must be from {INT64_MIN} to {INT64_MAX}; got {value!r}"[:300])
    if isinstance(converted, int | float) and not isinstance(converted, bool):
        if param.minimum is not None and converted < param.minimum:
            raise ToolError(f"Invalid arguments: '{name}' must be at least {param.minimum:g}; got {converted}")
        if param.maximum is not None and converted > param.maximum:
            raise ToolError(f"Invalid arguments: '{name}' must be at most {param.maximum:g}; got {converted}")
    return converted


def _typed(name: str, param: ParamSpec, value: Any) -> Any:
    bad = ToolError(f"Invalid arguments: '{name}' must be {_expected(param)}; got {value!r}"[:300])
    kind = param.type
    if kind == "string":
        if not isinstance(value, str):
            raise bad
        return value
    if kind == "boolean":
        if not isinstance(value, bool):
            raise bad
        return value
    if kind == "integer":
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad
        return value
    if kind == "number":
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise bad
        return value
    if not isinstance(value, str):
        raise bad
    try:
        if kind == "date":
            return dt.date.fromisoformat(value)
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise bad from None


def _expected(param: ParamSpec) -> str:
    return {
        "string": "a string",
        "integer": "an integer",
        "number": "a number",
        "boolean": "true or false",
        "date": "a date as YYYY-MM-DD",
        "datetime": "a date and time in ISO 8601, e.g. 2025-06-01T14:30:00Z",
    }[param.type]
