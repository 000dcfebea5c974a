"""What changed between the approved manifest and what the connectors now publish, each change risk-labelled.

A change is one item (tool, prompt or resource template) that is new, removed or changed. Its risks say why a
reviewer should look: an annotation flip towards writing, a new required argument, hidden characters in text a
model reads, a possible rename. ``hold`` says whether a changed tool can still be served with its approved
definition, or must be held back because the connector can no longer honour that contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

from patchbay.catalog.digest import Kind
from patchbay.catalog.hidden import escaped, find_hidden
from patchbay.catalog.schemas import Finding, compare

Level = Literal["high", "medium", "low"]
Status = Literal["new", "removed", "changed"]
LEVELS: dict[Level, int] = {"high": 0, "medium": 1, "low": 2}
# MCP 2025-11-25 ToolAnnotations: the value a client assumes when a hint is absent.
HINT_DEFAULTS = {"readOnlyHint": False, "destructiveHint": True, "idempotentHint": False, "openWorldHint": True}
# (hint, old, new) flips towards more power: the tool may now write, or destroy.
HIGH_FLIPS = {("readOnlyHint", True, False), ("destructiveHint", False, True)}


@dataclass(frozen=True, slots=True)
class Item:
    """One definition as digested: ``definition`` is the visible wire form."""

    kind: Kind
    name: str
    digest: str
    definition: dict[str, Any]
    connector: str = ""


@dataclass(frozen=True, slots=True)
class Risk:
    level: Level
    label: str


@dataclass(slots=True)
class Change:
    kind: Kind
    name: str
    status: Status
    old: Item | None
    new: Item | None
    risks: list[Risk] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    # The approved contract cannot be served any more (a new required argument …): unlisted and refused.
    hold: bool = False
    renamed_from: str | None = None

    @property
    def level(self) -> Level:
        return min((r.level for r in self.risks), key=LEVELS.__getitem__, default="low")

    @property
    def connector(self) -> str:
        item = self.new or self.old
        return item.connector if item is not None else ""


def diff(approved: Mapping[tuple[Kind, str], Item], observed: Mapping[tuple[Kind, str], Item]) -> list[Change]:
    """Every difference from ``approved`` to ``observed``, ordered by kind and name."""
    changes: list[Change] = []
    for key in sorted(approved.keys() | observed.keys()):
        old, new = approved.get(key), observed.get(key)
        if old is not None and new is not None and old.digest == new.digest:
            continue
        if new is None:
            assert old is not None
            changes.append(Change(old.kind, old.name, "removed", old, None, [Risk("low", "removed")]))
        elif old is None:
            change = Change(new.kind, new.name, "new", None, new, [Risk("medium", f"new {new.kind}")])
            change.risks += _hidden_risks(new.definition, change.details)
            changes.append(change)
        else:
            changes.append(classify(old, new))
    _find_renames(changes)
    return changes


def classify(old: Item, new: Item) -> Change:
    change = Change(new.kind, new.name, "changed", old, new)
    a, b = old.definition, new.definition
    for key in ("title", "description"):
        if a.get(key) != b.get(key):
            change.risks.append(Risk("medium" if key == "description" else "low", f"{key} changed"))
            change.details.append(f"{key}: {_text(a.get(key))} → {_text(b.get(key))}")
    for key in ("inputSchema", "outputSchema"):
        if a.get(key) != b.get(key):
            _schema_change(change, key, a.get(key), b.get(key))
    if a.get("annotations") != b.get("annotations"):
        _annotation_change(change, a.get("annotations") or {}, b.get("annotations") or {})
    # A template is known by its URI template, so its name is one more field that may change.
    own = {"title", "description", "inputSchema", "outputSchema", "annotations"}
    for key in sorted((a.keys() | b.keys()) - own - ({"name"} if new.kind != "template" else set())):
        if a.get(key) != b.get(key):
            level: Level = "low" if key in ("icons", "execution") else "medium"
            change.risks.append(Risk(level, f"{key} changed"))
            change.details.append(f"{key}: {_text(a.get(key))} → {_text(b.get(key))}")
    change.risks += _hidden_risks(b, change.details)
    if not change.risks:  # e.g. a prompt's arguments or a template's mimeType: still a change to review
        change.risks.append(Risk("medium", "definition changed"))
    return change


def _schema_change(change: Change, key: str, old: Any, new: Any) -> None:
    findings, words = compare(old or {}, new or {})
    side = "input" if key == "inputSchema" else "output"
    for w in words:
        change.details.append(f"{key} {w.path} {w.key}: {_text(w.old)} → {_text(w.new)}")
    if words:
        change.risks.append(Risk("low", f"{side} schema text changed"))
    # A result field that must now be present narrows the results: each of them was valid under the old schema.
    effects = {"narrowed" if side == "output" and f.effect == "breaking" else f.effect for f in findings}
    for effect in ("breaking", "narrowed", "widened", "changed"):
        if effect in effects:
            label = _schema_label(side, effect)
            change.risks.append(Risk("high" if effect == "breaking" else "medium", label))
    change.details += [f"{key} {f.message}" for f in findings]
    change.hold = change.hold or _breaks_contract(side, findings)


def _schema_label(side: str, effect: str) -> str:
    return "breaking: new required argument" if effect == "breaking" else f"{side} schema {effect}"


def _breaks_contract(side: str, findings: Iterable[Finding]) -> bool:
    """Whether a client holding the approved schema would now be refused (input) or surprised (output).

    Input: every call valid under the approved schema must still be accepted, so anything but widening breaks.
    Output: every result must still be valid under the approved schema (clients validate structuredContent),
    so anything but narrowing breaks, except a new property where the approved schema allowed extra ones.
    """
    for f in findings:
        if side == "input" and f.effect != "widened":
            return True
        if side == "output" and f.effect in ("widened", "changed") and not f.open_addition:
            return True
    return False


def _annotation_change(change: Change, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    for hint in sorted(old.keys() | new.keys()):
        before, after = old.get(hint, HINT_DEFAULTS.get(hint)), new.get(hint, HINT_DEFAULTS.get(hint))
        if before == after:
            continue
        level: Level = "high" if (hint, before, after) in HIGH_FLIPS else "medium"
        change.risks.append(Risk(level, f"annotation {hint} {_json(before)} → {_json(after)}"))
        change.details.append(f"annotations.{hint}: {_json(before)} → {_json(after)}")


def _hidden_risks(definition: Mapping[str, Any], details: list[str]) -> list[Risk]:
    found = find_hidden(definition)
    for where, shown, decoded in found:
        extra = f" (tag characters spell {decoded!r})" if decoded else ""
        details.append(f"hidden text in {where}: {shown}{extra}")
    return [Risk("high", "hidden text")] if found else []


def _find_renames(changes: list[Change]) -> None:
    """A new item equal to a removed one of the same kind but for its name is shown as a possible rename."""
    removed = {(c.kind, _unnamed(c.old)): c for c in changes if c.status == "removed" and c.old is not None}
    for change in changes:
        if change.status != "new" or change.new is None:
            continue
        twin = removed.get((change.kind, _unnamed(change.new)))
        if twin is not None:
            change.renamed_from = twin.name
            change.risks.insert(0, Risk("medium", f"possible rename of {twin.name}"))
            twin.risks.append(Risk("medium", f"possible rename to {change.name}"))


def _unnamed(item: Item | None) -> str:
    definition = dict(item.definition) if item is not None else {}
    definition.pop("name", None)
    return orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _text(value: Any) -> str:
    """A value for one line of the diff: a string quoted, with hidden characters escaped; anything else as JSON,
    unquoted (so ``"3"`` and ``3`` differ). Long text is cut (the full text is diffed)."""
    if isinstance(value, str):
        text = escaped(value)
        return f'"{text}"' if len(text) <= 80 else f'"{text[:77]}..."'
    text = _json(value)
    return text if len(text) <= 80 else f"{text[:77]}..."
