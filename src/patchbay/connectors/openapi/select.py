"""Which operations become tools: ``include`` / ``exclude`` rules, per-operation overrides and spec extensions.

An operation is kept when ``include`` is empty or it matches include, and it matches no ``exclude`` (exclude wins),
and neither an override (``enabled = false``) nor the spec (``x-mcp: {hidden: true}``) drops it. A rule value that
matches no operation is probably a typo: it is logged with the closest names. An override naming no operation is a
config error, since what the operator meant to change would silently stay as it was.
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from patchbay.connectors.openapi.models import Operation
from patchbay.connectors.openapi.options import OpenApiOptions, OperationOverride, Selection
from patchbay.errors import ConfigError

log = logging.getLogger("patchbay.connectors.openapi")

# The operation extensions a spec may carry to shape its tools (Speakeasy's x-speakeasy-mcp is the same idea).
EXTENSIONS = ("x-patchbay", "x-mcp")


@dataclass(frozen=True, slots=True)
class Selected:
    """The operations kept, and for each (by key) its config override and the config key that names it."""

    operations: tuple[Operation, ...]
    overrides: dict[str, tuple[str, OperationOverride]]  # operation key -> (config key, override)


@lru_cache(maxsize=256)
def path_pattern(glob: str) -> re.Pattern[str]:
    """``*`` matches one path segment, ``**`` any number of them (none included), other characters themselves."""
    parts: list[str] = []
    for piece in re.split(r"(\*\*/?|\*)", glob):
        if piece.startswith("**"):
            parts.append("(?:.*/)?" if piece.endswith("/") else ".*")
        elif piece == "*":
            parts.append("[^/]*")
        else:
            parts.append(re.escape(piece))
    return re.compile("^" + "".join(parts) + "$")


def canonical_key(text: str) -> str:
    """``"get /tickets"`` → ``"GET /tickets"``: an operation key as config may spell it."""
    method, _, path = text.strip().partition(" ")
    return f"{method.upper()} {path.strip()}" if path else text


def _names_of(operation: Operation) -> tuple[str, ...]:
    if operation.operation_id:
        return (operation.operation_id, operation.key)
    return (operation.key,)


def _matches_operation(operation: Operation, glob: str) -> bool:
    return any(fnmatch.fnmatchcase(name, glob) for name in _names_of(operation)) or fnmatch.fnmatchcase(
        operation.key, canonical_key(glob)
    )


def _rule_hits(operation: Operation, key: str, value: str) -> bool:
    if key == "tags":
        return value in operation.tags
    if key == "operations":
        return _matches_operation(operation, value)
    if key == "paths":
        return path_pattern(value).match(operation.path) is not None
    return operation.method == value  # methods: upper-cased by Selection


def matches(operation: Operation, selection: Selection) -> bool:
    """Whether ``operation`` matches any value of any key of ``selection``."""
    rules = (
        ("tags", selection.tags),
        ("operations", selection.operations),
        ("paths", selection.paths),
        ("methods", selection.methods),
    )
    return any(_rule_hits(operation, key, value) for key, values in rules for value in values)


def extension(operation: Operation) -> dict[str, Any]:
    """The operation's ``x-patchbay`` (or else ``x-mcp``) object; empty when neither is an object."""
    for key in EXTENSIONS:
        value = operation.extensions.get(key)
        if isinstance(value, dict):
            return value
    return {}


def select(operations: Sequence[Operation], options: OpenApiOptions, *, label: str = "openapi") -> Selected:
    """The operations to publish, with their overrides; ``label`` names the connector in logged warnings.

    Raises:
        ConfigError: an ``operations`` override names no operation of the spec (key ``operations.<key>``).
    """
    overrides = _overrides(operations, options.operations)
    _warn_unmatched(operations, label, "include", options.include)
    _warn_unmatched(operations, label, "exclude", options.exclude)
    kept: list[Operation] = []
    for operation in operations:
        if not options.include.empty() and not matches(operation, options.include):
            continue
        if matches(operation, options.exclude):
            continue
        override = overrides.get(operation.key)
        if override is not None and not override[1].enabled:
            continue
        if override is None and extension(operation).get("hidden") is True:
            continue
        kept.append(operation)
    return Selected(tuple(kept), overrides)


def _overrides(
    operations: Sequence[Operation], configured: dict[str, OperationOverride]
) -> dict[str, tuple[str, OperationOverride]]:
    by_name: dict[str, Operation] = {}
    for operation in operations:
        by_name[operation.key] = operation
        if operation.operation_id:
            by_name.setdefault(operation.operation_id, operation)
    found: dict[str, tuple[str, OperationOverride]] = {}
    for key, override in configured.items():
        found_op = by_name.get(key) or by_name.get(canonical_key(key))
        config_key = f"operations.{_toml_key(key)}"
        if found_op is None:
            raise ConfigError(
                f"'{key}' names no operation of the spec{_close(key, by_name)}; use an operationId or "
                '"METHOD /path" as the spec writes it',
                key=config_key,
            )
        if found_op.key in found:
            raise ConfigError(
                f"'{key}' and '{found[found_op.key][0]}' name the same operation ({found_op.key}); keep one",
                key=config_key,
            )
        found[found_op.key] = (config_key, override)
    return found


def _warn_unmatched(operations: Sequence[Operation], label: str, which: str, selection: Selection) -> None:
    values = {
        "tags": selection.tags,
        "operations": selection.operations,
        "paths": selection.paths,
        "methods": selection.methods,
    }
    for key, listed in values.items():
        for value in listed:
            if any(_rule_hits(operation, key, value) for operation in operations):
                continue
            known = _known(operations, key)
            log.warning(
                "connector '%s': %s.%s: %r matches no operation%s",
                label,
                which,
                key,
                value,
                _close(value, known),
            )


def _known(operations: Iterable[Operation], key: str) -> Iterable[str]:
    if key == "tags":
        return {tag for operation in operations for tag in operation.tags}
    if key == "paths":
        return {operation.path for operation in operations}
    if key == "methods":
        return {operation.method for operation in operations}
    return {name for operation in operations for name in _names_of(operation)}


def _close(value: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.6)
    return f" (did you mean {', '.join(repr(name) for name in close)}?)" if close else ""


def _toml_key(key: str) -> str:
    return key if re.match(r"^[A-Za-z0-9_-]+$", key) else f'"{key}"'
