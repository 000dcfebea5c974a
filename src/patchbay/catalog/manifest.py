"""The reviewed manifest in memory: which definitions a client is served, given the last approved version.

``open`` mode serves what the connectors publish (the keeper records each change as a version). ``review`` mode
serves the last approved definitions: a changed item is listed as it was approved while its handler keeps
running, unless the change makes that contract impossible (``Change.hold``: a new required argument, a narrower
input, a result the approved output schema would refuse), in which case it is held back, unlisted and uncallable,
until reviewed; a new item is invisible; a removed item disappears at once. Nothing here touches the store: the
keeper (``patchbay.catalog.keeper``) loads approved versions and writes what it observes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from patchbay.catalog.changes import Change, Item, diff
from patchbay.catalog.digest import Kind, manifest_digest

Mode = Literal["open", "review"]
Key = tuple[Kind, str]


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One approved version: the whole manifest at that point."""

    version: int
    digest: str
    approved_by: str
    approved_at: float
    mode: str
    note: str
    entries: dict[Key, Item] = field(default_factory=dict)


def digest_of(entries: Iterable[Item]) -> str:
    return manifest_digest((e.kind, e.name, e.digest) for e in entries)


def apply(entries: Mapping[Key, Item], changes: Iterable[Change]) -> dict[Key, Item]:
    """``entries`` with ``changes`` approved: new and changed items take their new definition, removed ones go."""
    result = dict(entries)
    for change in changes:
        key = (change.kind, change.name)
        if change.new is None:
            result.pop(key, None)
        else:
            result[key] = change.new
    return result


def summary(changes: Iterable[Change]) -> str:
    """One line for the history: ``+new ~changed -removed``."""
    mark = {"new": "+", "changed": "~", "removed": "-"}
    return " ".join(f"{mark[c.status]}{c.kind}:{c.name}" for c in changes)


class Manifest:
    """The served view for one mode, recomputed by the catalog on every rebuild."""

    def __init__(self, mode: Mode) -> None:
        self.mode: Mode = mode
        self.approved: Snapshot | None = None
        self.observed: dict[Key, Item] = {}
        # Connectors that were down at the last review: their approved items are absent, not removed.
        self.down: frozenset[str] = frozenset()
        self.pending: list[Change] = []

    def review(self, observed: Mapping[Key, tuple[Item, dict[str, Any]]], down: frozenset[str]) -> dict[Key, Any]:
        """The wire definition to serve for each observed key that is served, in the observed order."""
        self.observed = {key: item for key, (item, _) in observed.items()}
        self.down = down
        self.pending = diff(self.effective(), self.observed)
        if self.mode == "open":
            return {key: wire for key, (_, wire) in observed.items()}
        if self.approved is None:
            return {}  # review mode before any approval serves nothing (the keeper approves the first start)
        changes = {(c.kind, c.name): c for c in self.pending}
        served: dict[Key, Any] = {}
        for key, (_, wire) in observed.items():
            change = changes.get(key)
            if change is None:
                served[key] = wire
            elif change.status == "changed" and not change.hold:
                served[key] = self.approved.entries[key].definition
        return served

    def effective(self) -> dict[Key, Item]:
        """Approved entries the connectors can be compared with: those of connectors that are down are left out."""
        if self.approved is None:
            return {}
        return {k: e for k, e in self.approved.entries.items() if e.connector not in self.down}

    def held(self) -> list[Change]:
        return [c for c in self.pending if c.hold]
