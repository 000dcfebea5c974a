"""The console's view of the served tools: one page of at most 50, filtered by name, and one tool in detail.

Built for 10,000 tools: the sorted name index is made once per catalog build (the catalog swaps its lists on every
rebuild, so their identity says when to build again); a page is a bisect into it plus at most a scan of names for a
filter. Token costs and policy summaries are computed for the rows shown only; the gate caches its per-tool facts
per catalog itself. Text a connector or an upstream server wrote (descriptions, schemas) is untrusted: it is shown
with hidden characters escaped (``patchbay.catalog.hidden``), and the templates render it as text.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import orjson

from patchbay.catalog.hidden import escaped
from patchbay.connectors.openapi.tokens import estimate_tokens

PAGE_SIZE = 50
HINTS = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")


@dataclass(frozen=True, slots=True)
class RuleLine:
    """One policy rule that names a tool, as the console lists it."""

    name: str
    effect: str
    subjects: str
    conditional: bool
    description: str


@dataclass(frozen=True, slots=True)
class ToolRow:
    name: str
    title: str
    summary: str
    hints: dict[str, bool]
    scopes: tuple[str, ...]
    public: bool
    rules: tuple[RuleLine, ...]
    writes: str
    digest: str
    tokens: int

    @property
    def read_only(self) -> bool:
        return self.hints.get("readOnlyHint", False)


@dataclass(frozen=True, slots=True)
class ToolPage:
    rows: list[ToolRow]
    total: int
    """Tools matching the filter (every tool without one)."""
    prev_after: str | None
    """The ``after`` of the previous page ("" for the first page); None on the first page."""
    next_after: str | None
    """The ``after`` of the next page; None on the last page."""


@dataclass(frozen=True, slots=True)
class ToolDetail:
    row: ToolRow
    description: str
    input_schema: str
    output_schema: str | None
    pending: str | None
    """What the manifest review holds for this tool ("changed, held back" ...), None when nothing."""


class ToolIndex:
    """The served tools of ``runtime`` by name, rebuilt only after the catalog rebuilt."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self._seen: Any = None
        self._names: list[str] = []
        self._wire: dict[str, dict[str, Any]] = {}

    def _sync(self) -> None:
        wire = self.runtime.catalog.tools_wire
        if wire is self._seen:
            return
        by_name = {tool["name"]: tool for tool in wire}
        self._names, self._wire, self._seen = sorted(by_name), by_name, wire

    def __len__(self) -> int:
        self._sync()
        return len(self._names)

    def page(self, query: str = "", after: str = "", size: int = PAGE_SIZE) -> ToolPage:
        """The tools whose name contains ``query`` (case-insensitive), the first ``size`` of them after ``after``."""
        self._sync()
        names, needle = self._names, query.strip().lower()
        matching = names if not needle else [n for n in names if needle in n.lower()]
        start = bisect.bisect_right(matching, after) if after else 0
        chosen = matching[start : start + size]
        prev_after = None
        if start > 0:
            prev_after = matching[start - size - 1] if start - size - 1 >= 0 else ""
        next_after = chosen[-1] if start + size < len(matching) else None
        return ToolPage([self.row(n) for n in chosen], len(matching), prev_after, next_after)

    def wire(self, name: str) -> dict[str, Any] | None:
        self._sync()
        return self._wire.get(name)

    def row(self, name: str) -> ToolRow:
        wire = self._wire[name]
        catalog, gate = self.runtime.catalog, self.runtime.dispatcher.gate
        access = catalog.access.get(name)
        facts = gate.facts(name) if gate is not None else None
        hints = wire.get("annotations") or {}
        rules = tuple(
            RuleLine(
                rule.name,
                rule.effect,
                ", ".join(rule.subjects) + (f" except {', '.join(rule.excepted)}" if rule.excepted else ""),
                bool(rule.conditions),
                rule.description or "",
            )
            for rule in (facts.rules if facts is not None else ())
        )
        writes = f"{facts.writes} ({facts.writes_rule})" if facts is not None and facts.write else ""
        return ToolRow(
            name=name,
            title=escaped(str(wire.get("title") or hints.get("title") or "")),
            summary=escaped((str(wire.get("description") or "").strip().splitlines() or [""])[0][:160]),
            hints={hint: bool(hints.get(hint)) for hint in HINTS},
            scopes=access.scopes if access is not None else (),
            public=bool(access is not None and access.public),
            rules=rules,
            writes=writes,
            digest=catalog.digests.get(name, ""),
            tokens=estimate_tokens([wire]),
        )

    def detail(self, name: str) -> ToolDetail | None:
        """One tool in full, or None when no tool of that name is served."""
        wire = self.wire(name)
        if wire is None:
            return None
        output = wire.get("outputSchema")
        return ToolDetail(
            row=self.row(name),
            description=escaped(str(wire.get("description") or "")),
            input_schema=pretty(wire.get("inputSchema") or {}),
            output_schema=pretty(output) if output is not None else None,
            pending=self._pending(name),
        )

    def _pending(self, name: str) -> str | None:
        manifest = self.runtime.catalog.manifest
        change = next((c for c in manifest.pending if c.kind == "tool" and c.name == name), None) if manifest else None
        if change is None:
            return None
        held = "held back until reviewed" if change.hold else "served as approved until reviewed"
        return f"{change.status} ({held}); risk {change.level}"


def pretty(value: Any) -> str:
    """JSON for people: indented, keys sorted, hidden characters escaped."""
    return escaped(orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())
