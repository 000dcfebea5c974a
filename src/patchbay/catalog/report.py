"""The manifest diff for people (text) and machines (JSON): per item its kind, name, risk labels, field changes,
and a unified diff of a changed description. Hidden characters are always shown escaped."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from patchbay.catalog.changes import LEVELS, Change
from patchbay.catalog.hidden import escaped


def change_json(change: Change) -> dict[str, Any]:
    return {
        "kind": change.kind,
        "name": change.name,
        "status": change.status,
        "connector": change.connector,
        "risk": change.level,
        "risks": [{"level": r.level, "label": r.label} for r in _ordered(change)],
        "details": change.details,
        "held": change.hold,
        "renamed_from": change.renamed_from,
        "approved_digest": change.old.digest if change.old is not None else None,
        "proposed_digest": change.new.digest if change.new is not None else None,
        "approved": change.old.definition if change.old is not None else None,
        "proposed": change.new.definition if change.new is not None else None,
    }


def render(changes: Sequence[Change]) -> str:
    """The readable diff: one block per item, highest risk first within the listing order."""
    blocks = [_block(c) for c in changes]
    return "\n\n".join(blocks)


def _block(change: Change) -> str:
    held = " · held back until reviewed (the approved contract cannot be served)" if change.hold else ""
    lines = [f"{change.kind} {change.name} · {change.status} · risk {change.level}{held}"]
    lines += [f"  [{r.level}] {r.label}" for r in _ordered(change)]
    lines += [f"    {escaped(d)}" for d in change.details]
    if change.status == "new" and change.new is not None:
        lines += [f"    {line}" for line in _describe(change.new.definition)]
    old = change.old.definition.get("description") if change.old is not None else None
    new = change.new.definition.get("description") if change.new is not None else None
    if change.status == "changed" and old != new:
        lines += ["    " + line for line in _unified(str(old or ""), str(new or ""))]
    return "\n".join(lines)


def _describe(definition: dict[str, Any]) -> Iterable[str]:
    for key in ("title", "description"):
        if definition.get(key):
            yield f"{key}: {escaped(str(definition[key]))}"
    schema = definition.get("inputSchema") or {}
    properties = schema.get("properties") or {}
    if properties:
        required = set(schema.get("required") or ())
        args = ", ".join(f"{n}{'' if n in required else '?'}" for n in properties)
        yield f"arguments: {escaped(args)}"
    hints = definition.get("annotations") or {}
    if hints:
        yield "annotations: " + ", ".join(f"{k}={str(v).lower()}" for k, v in sorted(hints.items()))


def _unified(old: str, new: str) -> list[str]:
    diff = difflib.unified_diff(
        escaped(old).splitlines(),
        escaped(new).splitlines(),
        "approved description",
        "proposed description",
        lineterm="",
    )
    return list(diff)


def _ordered(change: Change) -> list[Any]:
    return sorted(change.risks, key=lambda r: LEVELS[r.level])
