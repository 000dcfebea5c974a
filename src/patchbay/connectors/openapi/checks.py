"""Checking a tool's arguments against its input schema, fast for the common shapes, precise when they are wrong.

The ``jsonschema`` validator is exact but spends 30-150 µs on a typical call. Most argument schemas use a small
subset of JSON Schema (types, enums, bounds, patterns, arrays, ``oneOf`` of those), so each property's schema is
compiled once into a plain Python predicate where it uses only that subset; properties using anything else
(``$ref``, ``allOf``, ``uniqueItems`` …) get their own ``jsonschema`` validator. The predicates only ever *accept*:
when one says no, ``jsonschema`` checks the whole call again and its errors make the message, so the fast path
can make a call quicker but never change what is accepted.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jsonschema  # type: ignore[import-untyped]

Check = Callable[[Any], bool]
# Keywords that never constrain a value (JSON Schema 2020-12 annotations, and OpenAPI's harmless leftovers). The
# content keywords only annotate too (2020-12 Validation §8.1): a base64 argument is decoded, and refused if it is
# not base64, when the request is built.
_ANNOTATIONS = frozenset(
    {
        "description",
        "title",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "$comment",
        "contentEncoding",
        "contentMediaType",
        "contentSchema",
    }
)
_TYPES: dict[str, Check] = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}
_BOUNDS: dict[str, Callable[[Any, Any], bool]] = {
    "minimum": lambda v, b: v >= b,
    "maximum": lambda v, b: v <= b,
    "exclusiveMinimum": lambda v, b: v > b,
    "exclusiveMaximum": lambda v, b: v < b,
}
_LENGTHS: dict[str, Callable[[int, Any], bool]] = {
    "minLength": lambda n, b: n >= b,
    "maxLength": lambda n, b: n <= b,
    "minItems": lambda n, b: n >= b,
    "maxItems": lambda n, b: n <= b,
}


_OBJECT_KEYS = ("properties", "required", "additionalProperties")
# The top level of an input schema as build_inputs writes it; anything else there leaves every call to jsonschema.
_TOP_KEYS = frozenset({"type", "properties", "required", "additionalProperties", "$defs", "dependentRequired"})


class Unsupported(Exception):
    """A schema uses a keyword the fast path does not implement."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def compile_check(schema: Any) -> Check:
    """A predicate true only for values valid against ``schema``.

    Raises:
        Unsupported: ``schema`` uses a keyword outside the subset.
    """
    if schema is True or schema == {}:
        return lambda value: True
    if not isinstance(schema, dict):
        raise Unsupported(repr(schema))
    checks: list[Check] = []
    for key, bound in schema.items():
        if key not in _ANNOTATIONS and key not in _OBJECT_KEYS:
            checks.append(_keyword(key, bound))
    if any(key in schema for key in _OBJECT_KEYS):
        checks.append(_object(schema))
    return lambda value: all(check(value) for check in checks)


def _keyword(key: str, bound: Any) -> Check:
    if key == "type":
        kinds = [bound] if isinstance(bound, str) else bound
        if not isinstance(kinds, list) or any(kind not in _TYPES for kind in kinds):
            raise Unsupported(f"type {bound!r}")
        tests = [_TYPES[kind] for kind in kinds]
        return lambda value: any(test(value) for test in tests)
    if key == "enum" and isinstance(bound, list) and all(isinstance(v, str) for v in bound):
        allowed = frozenset(bound)
        return lambda value: isinstance(value, str) and value in allowed
    if key in _BOUNDS and _is_number(bound):
        compare = _BOUNDS[key]
        return lambda value: not _is_number(value) or compare(value, bound)
    if key in ("minLength", "maxLength") and isinstance(bound, int):
        measure = _LENGTHS[key]
        # JSON Schema counts characters (code points), as len() does.
        return lambda value: not isinstance(value, str) or measure(len(value), bound)
    if key in ("minItems", "maxItems") and isinstance(bound, int):
        measure = _LENGTHS[key]
        return lambda value: not isinstance(value, list) or measure(len(value), bound)
    if key == "pattern" and isinstance(bound, str):
        try:
            pattern = re.compile(bound)
        except re.error as exc:
            raise Unsupported(bound) from exc
        return lambda value: not isinstance(value, str) or pattern.search(value) is not None
    if key == "items":
        item = compile_check(bound)
        return lambda value: not isinstance(value, list) or all(item(v) for v in value)
    if key in ("oneOf", "anyOf") and isinstance(bound, list):
        branches = [compile_check(branch) for branch in bound]
        if key == "anyOf":
            return lambda value: any(branch(value) for branch in branches)
        return lambda value: sum(1 for branch in branches if branch(value)) == 1
    raise Unsupported(key)


def _object(schema: dict[str, Any]) -> Check:
    properties = {name: compile_check(sub) for name, sub in (schema.get("properties") or {}).items()}
    required = tuple(schema.get("required") or ())
    extra = schema.get("additionalProperties", True)
    extra_check = compile_check(extra) if extra is not False else None

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        if any(name not in value for name in required):
            return False
        for name, item in value.items():
            test = properties.get(name, extra_check)
            if test is None or not test(item):
                return False
        return True

    return check


class ArgumentCheck:
    """A tool's input schema and its checks, compiled on the first call (most tools of a big API never run)."""

    __slots__ = ("_fast", "_validator", "schema")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator: Any = None
        self._fast: Check | None = None

    def _compile(self) -> Check:
        self._validator = jsonschema.Draft202012Validator(self.schema)
        defs = self.schema.get("$defs")
        properties: dict[str, Check] = {}
        for name, sub in (self.schema.get("properties") or {}).items():
            try:
                properties[name] = compile_check(sub)
            except Unsupported:
                exact = jsonschema.Draft202012Validator({**sub, "$defs": defs} if defs else sub)
                properties[name] = exact.is_valid
        if set(self.schema) - _TOP_KEYS or self.schema.get("type") != "object":
            return lambda value: False
        return _fast_object(self.schema, properties)

    def problem(self, arguments: Any) -> str | None:
        """None when ``arguments`` fit the schema, else what is wrong (up to three problems), naming the arguments."""
        if self._fast is None:
            self._fast = self._compile()
        if isinstance(arguments, dict) and self._fast(arguments):
            return None
        errors = sorted(
            self._validator.iter_errors(arguments), key=lambda e: (list(map(str, e.absolute_path)), e.validator)
        )
        if not errors:
            return None
        found = list(dict.fromkeys(describe_error(error, arguments, self.schema) for error in errors))
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return "; ".join(found[:3]) + more


def _fast_object(shape: dict[str, Any], properties: dict[str, Check]) -> Check:
    required = tuple(shape.get("required") or ())
    closed = shape.get("additionalProperties", True) is False
    if not closed and "additionalProperties" in shape and shape["additionalProperties"] is not True:
        return lambda value: False  # an unusual top level: jsonschema decides every call
    together = shape.get("dependentRequired") or {}
    if not isinstance(together, dict) or not all(isinstance(names, list) for names in together.values()):
        return lambda value: False
    depends = tuple((name, tuple(names)) for name, names in together.items())

    def check(value: dict[str, Any]) -> bool:
        if any(name not in value for name in required):
            return False
        if any(name in value and any(other not in value for other in others) for name, others in depends):
            return False
        for name, item in value.items():
            test = properties.get(name)
            if test is None:
                if closed:
                    return False
            elif not test(item):
                return False
        return True

    return check


def describe_error(error: Any, arguments: Any, schema: dict[str, Any]) -> str:
    """One ``jsonschema`` error as a sentence naming the argument (``argument 'labels[0]': …``)."""
    path = list(error.absolute_path)
    known = ", ".join(schema.get("properties") or ()) or "none"
    if not path and error.validator == "required" and isinstance(arguments, dict):
        missing = [name for name in error.validator_value if name not in arguments]
        return f"missing required argument {', '.join(repr(n) for n in missing)}; this tool takes: {known}"
    if not path and error.validator == "additionalProperties" and isinstance(arguments, dict):
        unknown = sorted(set(arguments) - set(schema.get("properties") or ()))
        return f"unknown argument {', '.join(repr(n) for n in unknown)}; this tool takes: {known}"
    if not path:
        return f"the arguments must be an object: {_cut(error.message)}"
    where = str(path[0]) + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path[1:])
    return f"argument {where!r}: {_cut(error.message)}"


def _cut(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
