"""What changed between two JSON Schemas of one tool, as the set of values each accepts.

Each finding says whether the new schema accepts more (``widened``), less (``narrowed``), needs a new argument
(``breaking``), or changed in a way this comparison does not judge (``changed``: ``$ref``, ``anyOf`` and other
composition). Words (``description``, ``title``, ``examples``, ``default``) are reported apart: they never change what a
schema accepts, but they are what a model reads, so they are shown and scanned for hidden text like any description.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Effect = Literal["widened", "narrowed", "breaking", "changed"]
WORDS = ("description", "title", "examples", "default", "$comment")
# Lower bounds: a smaller value accepts more. Upper bounds: a larger value does.
LOWER = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
UPPER = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
# Keys whose mere presence constrains, and whose removal therefore widens.
CONSTRAINTS = ("pattern", "format", "multipleOf", "uniqueItems", "const")
HANDLED = {"type", "properties", "required", "additionalProperties", "enum", "items", *WORDS}
HANDLED |= {*LOWER, *UPPER, *CONSTRAINTS}


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    effect: Effect
    message: str
    # A property added where the old schema let any extra property through: no value it took is refused now.
    open_addition: bool = False


@dataclass(frozen=True, slots=True)
class Words:
    path: str
    key: str
    old: Any
    new: Any


def compare(old: Any, new: Any, path: str = "") -> tuple[list[Finding], list[Words]]:
    """Findings about accepted values, and word changes, from ``old`` to ``new`` (both JSON Schemas)."""
    findings: list[Finding] = []
    words: list[Words] = []
    _walk(old, new, path or "$", findings, words)
    return findings, words


def _walk(old: Any, new: Any, path: str, findings: list[Finding], words: list[Words]) -> None:
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        if old != new:
            findings.append(Finding(path, "changed", f"{path}: schema {_short(old)} → {_short(new)}"))
        return
    for key in WORDS:
        if old.get(key) != new.get(key):
            words.append(Words(path, key, old.get(key), new.get(key)))
    _types(old, new, path, findings)
    _properties(old, new, path, findings, words)
    _required(old, new, path, findings)
    _additional(old, new, path, findings, words)
    _enum(old, new, path, findings)
    _bounds(old, new, path, findings)
    if "items" in old or "items" in new:
        _walk(old.get("items", {}), new.get("items", {}), f"{path}[]", findings, words)
    for key in sorted((old.keys() | new.keys()) - HANDLED):
        if old.get(key) != new.get(key):
            findings.append(Finding(path, "changed", f"{path}: {key} changed"))


def _types(old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding]) -> None:
    before, after = _type_set(old), _type_set(new)
    if before == after:
        return
    if before is None or (after is not None and after < before):
        findings.append(Finding(path, "narrowed", f"{path}: type {_types_text(before)} → {_types_text(after)}"))
    elif after is None or after > before:
        findings.append(Finding(path, "widened", f"{path}: type {_types_text(before)} → {_types_text(after)}"))
    else:
        findings.append(Finding(path, "changed", f"{path}: type {_types_text(before)} → {_types_text(after)}"))


def _type_set(schema: Mapping[str, Any]) -> frozenset[str] | None:
    value = schema.get("type")
    if value is None:
        return None  # any type
    types = {value} if isinstance(value, str) else {str(v) for v in value}
    if "number" in types:
        types.add("integer")  # every integer is a number
    return frozenset(types)


def _types_text(types: frozenset[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _properties(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding], words: list[Words]
) -> None:
    before, after = old.get("properties") or {}, new.get("properties") or {}
    open_before = old.get("additionalProperties", True) is not False
    # Narrowed even where additionalProperties would still accept it: the tool no longer reads it, so a call that
    # relies on it (a dry_run flag) would do something else, which is what holding an input change is for.
    for name in sorted(before.keys() - after.keys()):
        findings.append(Finding(f"{path}.{name}", "narrowed", f"{path}.{name}: property removed"))
    required = set(new.get("required") or ())
    for name in sorted(after.keys() - before.keys()):
        if name not in required:  # a new required one is reported by _required as breaking
            findings.append(Finding(f"{path}.{name}", "widened", f"{path}.{name}: new optional property", open_before))
    for name in sorted(before.keys() & after.keys()):
        _walk(before[name], after[name], f"{path}.{name}", findings, words)


def _required(old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding]) -> None:
    before, after = set(old.get("required") or ()), set(new.get("required") or ())
    for name in sorted(after - before):
        findings.append(Finding(f"{path}.{name}", "breaking", f"{path}.{name}: new required argument"))
    for name in sorted(before - after):
        findings.append(Finding(f"{path}.{name}", "widened", f"{path}.{name}: no longer required"))


def _additional(
    old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding], words: list[Words]
) -> None:
    before, after = old.get("additionalProperties", True), new.get("additionalProperties", True)
    if before == after:
        return
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        _walk(before, after, f"{path}.*", findings, words)
    elif after is True or (before is False and isinstance(after, Mapping)):
        findings.append(Finding(path, "widened", f"{path}: additionalProperties opened"))
    elif after is False or before is True:
        findings.append(Finding(path, "narrowed", f"{path}: additionalProperties closed"))


def _enum(old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding]) -> None:
    before, after = old.get("enum"), new.get("enum")
    if before == after:
        return
    if after is None:
        findings.append(Finding(path, "widened", f"{path}: enum removed"))
    elif before is None:
        findings.append(Finding(path, "narrowed", f"{path}: enum added {_short(after)}"))
    else:
        added = [v for v in after if v not in before]
        dropped = [v for v in before if v not in after]
        effect: Effect = "changed" if added and dropped else "widened" if added else "narrowed"
        detail = ", ".join([*(f"+{_short(v)}" for v in added), *(f"-{_short(v)}" for v in dropped)])
        findings.append(
            Finding(path, effect, f"{path}: enum {'extended' if effect == 'widened' else effect} ({detail})")
        )


def _bounds(old: Mapping[str, Any], new: Mapping[str, Any], path: str, findings: list[Finding]) -> None:
    for key in (*LOWER, *UPPER):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if after is None:
            effect: Effect = "widened"
        elif before is None:
            effect = "narrowed"
        elif not isinstance(before, int | float) or not isinstance(after, int | float):
            effect = "changed"
        else:
            looser = after < before if key in LOWER else after > before
            effect = "widened" if looser else "narrowed"
        word = {"widened": "loosened", "narrowed": "tightened", "changed": "changed"}[effect]
        findings.append(Finding(path, effect, f"{path}: {key} {word} ({_short(before)} → {_short(after)})"))
    for key in CONSTRAINTS:
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        effect = "widened" if after is None else "narrowed" if before is None else "changed"
        findings.append(Finding(path, effect, f"{path}: {key} {_short(before)} → {_short(after)}"))


def _short(value: Any) -> str:
    text = "none" if value is None else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
