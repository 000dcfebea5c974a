"""What converting one document's operations shares, whatever its version (OpenAPI 3.x or Swagger 2.0).

The :class:`Context` of a document (its documents, the schema converter, the top-level security, memos), the
error an operation that cannot be converted raises, and the small readers both versions use alike.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from patchbay.connectors.openapi.models import Parameter, Requirement, Success
from patchbay.connectors.openapi.refs import Documents
from patchbay.connectors.openapi.schemas import SchemaConverter

T = TypeVar("T")


class OperationError(ValueError):
    """An operation that cannot be converted; the message is the reason shown in the skipped list."""


@dataclass(slots=True)
class Context:
    """What every operation of one document shares: its documents, the schema converter and memos."""

    documents: Documents
    schemas: SchemaConverter
    security: tuple[Requirement, ...] | None  # the top-level requirements (None: none declared)
    # Converted once by the $ref'd object's URI, with the def keys its schemas reference.
    parameters: dict[str, tuple[list[Parameter], frozenset[str]]] = field(default_factory=dict)
    successes: dict[str, tuple[Success | None, frozenset[str]]] = field(default_factory=dict)

    def converted_once(
        self, memo: dict[str, tuple[T, frozenset[str]]], node: Any, base: str, convert: Callable[[Any, str], T]
    ) -> T:
        """``convert(node, base)`` of the object ``node``'s ``$ref`` names, once per URI: an object referenced by a
        hundred operations is converted once, and each still counts the schemas it references as its own.

        Raises:
            RefError: the reference does not resolve.
        """
        located = self.documents.follow(node, base)
        cached = memo.get(located.uri)
        if cached is None:
            with self.schemas.collect() as refs:
                converted = convert(located.node, located.base)
            cached = memo[located.uri] = (converted, frozenset(refs))
        self.schemas.note(cached[1])
        return cached[0]


def text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def extensions(node: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in node.items() if isinstance(key, str) and key.startswith("x-")}


def is_ref(node: Any) -> bool:
    """Whether ``node`` is a Reference Object (whose ``$ref`` replaces the whole object)."""
    return isinstance(node, dict) and isinstance(node.get("$ref"), str)


def requirements(value: Any, where: str) -> tuple[Requirement, ...]:
    """A Security Requirement list (OpenAPI 3.1 §4.8.30). Raises OperationError when it is malformed."""
    if not isinstance(value, list):
        raise OperationError(f"{where} must be a list of security requirements")
    out: list[Requirement] = []
    for item in value:
        if not isinstance(item, dict):
            raise OperationError(f"{where} must be a list of objects")
        out.append({str(k): tuple(str(s) for s in v) if isinstance(v, list) else () for k, v in item.items()})
    return tuple(out)
