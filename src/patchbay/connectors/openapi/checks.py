"""Checking a value against a JSON Schema: fast when it fits, precise when it does not.

``jsonschema-rs`` (compiled Rust) decides whether a value is valid in about a microsecond; the ``jsonschema``
reference validator takes 30-1,300 µs for the same answer. So every schema is compiled once into a jsonschema-rs
validator that only ever *accepts*: when it says no, ``jsonschema`` checks the value again, and its errors make the
message (or, should it find none, the value is accepted). The accepting validator is configured to accept exactly
what ``jsonschema.Draft202012Validator`` accepts:

- ``format`` is an annotation (2020-12 Validation §7.2.1; ``jsonschema`` asserts none by default), and so are
  ``contentEncoding``/``contentMediaType`` (§8.1): a base64 argument is decoded, and refused if it is not base64,
  when the request is built.
- ``pattern`` is matched with Python's ``re.search``, as ``jsonschema`` does: ECMA-262 classes differ from
  Python's (``\\s`` takes U+FEFF, ``\\D`` takes Arabic-Indic digits), so the Rust engine would accept strings
  ``jsonschema`` refuses.
- ``multipleOf`` with a fractional divisor is the float division ``jsonschema`` does (0.07 is not a multiple of
  0.01 there), not jsonschema-rs's exact arithmetic.
- ``patternProperties`` keys would be ECMA-262 regexes: a schema using it is left to ``jsonschema`` alone.
- No reference is fetched (``offline``); a schema jsonschema-rs cannot compile is left to ``jsonschema`` alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import jsonschema_rs

Check = Callable[[Any], bool]
_LEFT_TO_JSONSCHEMA = frozenset({"patternProperties"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


class _Pattern:
    """``pattern`` as ``jsonschema`` reads it: Python's ``re.search``, compiled once."""

    def __init__(self, parent: dict[str, Any], value: Any, path: list[str | int]) -> None:
        self.regex = re.compile(value)

    def validate(self, instance: Any) -> None:
        if isinstance(instance, str) and self.regex.search(instance) is None:
            raise ValueError("does not match the pattern")


class _MultipleOf:
    """``multipleOf`` as ``jsonschema`` computes it: float division for a float divisor, else the remainder."""

    def __init__(self, parent: dict[str, Any], value: Any, path: list[str | int]) -> None:
        self.by = value

    def validate(self, instance: Any) -> None:
        if not _is_number(instance):
            return
        if isinstance(self.by, float):
            quotient = instance / self.by
            try:
                failed = int(quotient) != quotient
            except OverflowError:
                failed = (Fraction(instance) / Fraction(self.by)).denominator != 1
        else:
            failed = bool(instance % self.by)
        if failed:
            raise ValueError("not a multiple")


def _uses(schema: Any, keywords: frozenset[str]) -> bool:
    if isinstance(schema, dict):
        return any(key in keywords for key in schema) or any(_uses(v, keywords) for v in schema.values())
    if isinstance(schema, list):
        return any(_uses(item, keywords) for item in schema)
    return False


def compile_accept(schema: dict[str, Any] | bool) -> Check | None:
    """A predicate true only for values ``jsonschema.Draft202012Validator(schema)`` accepts (false may still be
    valid: ask ``jsonschema``), or None when ``schema`` is left to ``jsonschema`` alone. Values are what a JSON
    parser makes (jsonschema-rs would take a tuple for an array, jsonschema would not)."""
    if _uses(schema, _LEFT_TO_JSONSCHEMA):
        return None
    try:
        validator = jsonschema_rs.Draft202012Validator(
            schema,
            validate_formats=False,
            offline=True,
            keywords={"pattern": _Pattern, "multipleOf": _MultipleOf},
        )
    except Exception:  # any schema it cannot compile (a bad regex, an unknown $ref ...) is jsonschema's
        return None
    is_valid = validator.is_valid

    def accept(value: Any) -> bool:
        try:
            return is_valid(value)
        except ValueError:  # a value it cannot take (a lone surrogate in a string): jsonschema decides
            return False

    return accept


class ArgumentCheck:
    """A tool's input schema and its checks, compiled on the first call (most tools of a big API never run)."""

    __slots__ = ("_accept", "_compiled", "_validator", "schema")

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._compiled = False
        self._accept: Check | None = None
        self._validator: Any = None

    def problem(self, arguments: Any) -> str | None:
        """None when ``arguments`` fit the schema, else what is wrong (up to three problems), naming the arguments."""
        if not self._compiled:
            self._accept = compile_accept(self.schema)
            self._compiled = True
        if self._accept is not None and self._accept(arguments):
            return None
        if self._validator is None:
            self._validator = jsonschema.Draft202012Validator(self.schema)
        errors = sorted(
            self._validator.iter_errors(arguments), key=lambda e: (list(map(str, e.absolute_path)), e.validator)
        )
        if not errors:
            return None
        found = list(dict.fromkeys(describe_error(error, arguments, self.schema) for error in errors))
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        return "; ".join(found[:3]) + more


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
