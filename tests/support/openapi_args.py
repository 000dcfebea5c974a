"""Tool arguments generated from an openapi tool's input schema with hypothesis-jsonschema, for the request
round-trip and mock-server tests.

hypothesis-jsonschema cannot generate from a recursive schema, so ``#/$defs/`` references are inlined first, to a
bounded depth; deeper, the recursion is cut with ``false`` (an optional property or array item that never occurs),
so every generated value is still valid against the original schema.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import unquote

import hypothesis_jsonschema._from_schema as jsonschema_strategies
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from hypothesis.internal.conjecture import utils as conjecture
from hypothesis_jsonschema import from_schema

INLINE_DEPTH = 3
# Canonical base64 (RFC 4648 §3.5: the pad bits are zero), so that strict decoders (prism's) accept it too.
BASE64 = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$"
_DONE = object()


class _StepwiseMany:
    """``many(...).more()`` / ``.reject()``, which hypothesis-jsonschema 0.23.1 (the newest) calls to draw an
    object's properties, over the ``with many(...) as elements: for _ in elements`` form newer Hypothesis has
    instead. Without it every object schema fails with "'many' object has no attribute 'more'"."""

    def __init__(self, data: Any, min_size: int, max_size: float, average_size: float) -> None:
        self._many = conjecture.many(data, min_size=min_size, max_size=max_size, average_size=average_size)
        self._many.__enter__()
        self._steps = iter(self._many)

    def more(self) -> bool:
        if next(self._steps, _DONE) is _DONE:
            self._many.__exit__(None)
            return False
        return True

    def reject(self) -> None:
        self._many.reject()


if not hasattr(conjecture.many, "more"):
    jsonschema_strategies.cu = SimpleNamespace(many=_StepwiseMany)  # type: ignore[attr-defined]


def inlined(schema: Any, defs: dict[str, Any], depth: int = 0) -> Any:
    """``schema`` with its ``#/$defs/`` references replaced by their targets, recursion cut at INLINE_DEPTH."""
    if isinstance(schema, list):
        return [inlined(item, defs, depth) for item in schema]
    if not isinstance(schema, dict):
        return schema
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        if depth >= INLINE_DEPTH:
            return False
        key = unquote(ref.removeprefix("#/$defs/")).replace("~1", "/").replace("~0", "~")
        rest = {name: value for name, value in schema.items() if name != "$ref"}
        resolved = inlined(defs[key], defs, depth + 1)
        return {"allOf": [resolved, inlined(rest, defs, depth)]} if rest else resolved
    out = {name: inlined(value, defs, depth) for name, value in schema.items() if name != "$defs"}
    if out.get("contentEncoding") == "base64" and "pattern" not in out:
        # contentEncoding only annotates (JSON Schema 2020-12 §8.3), so hypothesis-jsonschema ignores it; the
        # request decodes the value, so generate what the schema says: base64 text (RFC 4648 §4, padded).
        out["pattern"] = BASE64
    return out


def generation_schema(input_schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema without references, ready for hypothesis-jsonschema."""
    out: dict[str, Any] = inlined(input_schema, input_schema.get("$defs", {}))
    if "dependentRequired" in out:
        # hypothesis-jsonschema 0.23 knows draft 7's "dependencies" (whose array form means the same) but not
        # 2019-09's dependentRequired, and would generate arguments the tool refuses.
        out["dependencies"] = out.pop("dependentRequired")
    return out


def bounded(max_examples: int) -> Any:
    """Hypothesis settings for a fixed, reproducible number of examples per operation."""
    return settings(
        max_examples=max_examples,
        database=None,
        derandomize=True,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def examples(input_schema: dict[str, Any], count: int) -> list[dict[str, Any]]:
    """Up to ``count`` argument objects valid against ``input_schema`` (none when it is unsatisfiable)."""
    found: list[dict[str, Any]] = []

    @bounded(count)
    @given(from_schema(generation_schema(input_schema)))
    def collect(arguments: dict[str, Any]) -> None:
        found.append(arguments)

    try:
        collect()
    except Unsatisfiable:
        return []
    return found
