"""Tool-schema portability rules: the intersection of what OpenAI's and Anthropic's tool APIs accept (K1, K2, N3).

Pure functions over JSON Schema dicts, so they are tested directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

__all__ = ["input_schema_problems", "output_schema_problems"]

Rules = Literal["openai", "anthropic"]
_COMPOSITION = ("oneOf", "anyOf", "allOf")
_PROPERTY_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")  # Anthropic input_schema property names


def _walk(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            if key in ("enum", "const", "default", "examples"):
                continue
            yield from _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{path}/{index}")


def _root_problems(schema: Any, what: str) -> list[str]:
    if not isinstance(schema, dict):
        return [f"{what} is not an object"]
    problems = []
    if schema.get("type") != "object":
        problems.append(f'{what} root has type {schema.get("type")!r}, not "object"')
    problems.extend(f"{what} root uses {key}" for key in _COMPOSITION if key in schema)
    return problems


def input_schema_problems(schema: Any, rules: Rules) -> tuple[list[str], list[str]]:
    """(errors, warnings) for an inputSchema under one vendor's rules."""
    errors = _root_problems(schema, "inputSchema")
    warnings: list[str] = []
    if errors:
        return errors, warnings
    for path, node in _walk(schema):
        if path.endswith(("/properties", "/$defs", "/definitions")):
            continue
        is_array = node.get("type") == "array" or (isinstance(node.get("type"), list) and "array" in node["type"])
        if is_array and "items" not in node and "prefixItems" not in node:
            errors.append(f"inputSchema {path}: array without items")
        if rules == "anthropic" and "$ref" in node:
            warnings.append(f"inputSchema {path}: $ref (Anthropic's tool API rejects references; inline them)")
        properties = node.get("properties") if rules == "anthropic" else None
        for name in properties if isinstance(properties, dict) else ():
            if not _PROPERTY_NAME.match(name):
                errors.append(f"inputSchema {path}: property name {name!r} is outside [A-Za-z0-9_.-]{{1,64}}")
    return errors, warnings


def output_schema_problems(schema: Any) -> list[str]:
    """Errors for an outputSchema: clients drop the whole tool list when its root is not an object (K1)."""
    return _root_problems(schema, "outputSchema")
