"""Pending manifest changes for the console: what ``patchbay manifest status|diff`` shows, one page at a time, with
a side-by-side diff of each definition; and approving or rejecting them as ``patchbay manifest approve|reject`` do.

Read from the store, as the CLI reads it, so every replica's console shows the same review; the approved version
this server already holds stands in for reading it again while it is the latest (10,000 definitions take seconds
to read). An approval records a
new version, then this process's keeper loads it at once (``ManifestKeeper.check``): the catalog is rebuilt and
open streams are told ``notifications/tools/list_changed``, exactly as when the CLI approves and the keeper's poll
notices; other replicas notice within ``[manifest] poll_seconds``.

A decision names what the operator saw: each chosen change with the digest of its proposed definition, and "all"
with the fingerprint of the whole pending list, so a change that arrived or changed after the page was drawn is
never approved unseen.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import anyio.to_thread
import orjson

from patchbay.catalog.changes import LEVELS, Change, Risk, diff
from patchbay.catalog.hidden import escaped

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from patchbay.catalog.manifest import Snapshot
    from patchbay.catalog.manifest_store import Proposal

PAGE_SIZE = 50
Mark = Literal["same", "changed", "removed", "added"]
# The marker of each line, so a change is told by text and not only by colour (WCAG 1.4.1).
SYMBOL: dict[Mark, str] = {"same": " ", "changed": "~", "removed": "-", "added": "+"}


class ChangeRefused(Exception):
    """A decision that cannot be made as asked; ``str(error)`` says why, for the operator. Nothing was changed."""


@dataclass(frozen=True, slots=True)
class Line:
    """One row of a side-by-side diff: the approved line (left), the proposed one (right) and how they differ."""

    mark: Mark
    old: str | None
    new: str | None

    @property
    def symbol(self) -> str:
        return SYMBOL[self.mark]


@dataclass(frozen=True, slots=True)
class Review:
    """The manifest review as the console shows it."""

    mode: str
    version: int | None
    digest: str | None
    approved_by: str | None
    changes: list[Change]
    rejected: int

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.changes)

    def page(self, after: str = "", size: int = PAGE_SIZE) -> tuple[list[Change], str | None, str | None]:
        """The changes after the key ``after`` ("kind:name"), and the ``after`` of the previous and next pages."""
        keys = [key_of(c) for c in self.changes]
        start = next((i for i, k in enumerate(keys) if k > after), len(keys)) if after else 0
        prev_after = None if start == 0 else (keys[start - size - 1] if start - size - 1 >= 0 else "")
        chosen = self.changes[start : start + size]
        next_after = key_of(chosen[-1]) if chosen and start + size < len(keys) else None
        return chosen, prev_after, next_after


def key_of(change: Change) -> str:
    return f"{change.kind}:{change.name}"


def proposed_digest(change: Change) -> str:
    return change.new.digest if change.new is not None else ""


def choice(change: Change) -> str:
    """A checkbox's value: the change and the proposed definition the operator saw."""
    return f"{key_of(change)}@{proposed_digest(change)}"


def fingerprint(changes: Iterable[Change]) -> str:
    """The digest of a pending list: changes on any item (or a new item) give another fingerprint."""
    listed = sorted((c.kind, c.name, proposed_digest(c)) for c in changes)
    return hashlib.sha256(orjson.dumps(listed)).hexdigest()


def risks(change: Change) -> list[Risk]:
    return sorted(change.risks, key=lambda r: LEVELS[r.level])


async def review(runtime: Any) -> Review | None:
    """The pending changes and the approved version; None when this server keeps no manifest versions."""
    engine = _engine(runtime)
    if engine is None:
        return None
    mode, known = runtime.settings.manifest.mode, _known(runtime)
    return await anyio.to_thread.run_sync(functools.partial(_review, engine, mode, known))


def _review(engine: Engine, mode: str, known: Snapshot | None) -> Review:
    from patchbay.catalog.manifest_store import REJECTED

    snapshot, changes, proposals = _pending(engine, known)
    rejected = sum(1 for p in proposals if p.state == REJECTED)
    return Review(
        mode,
        snapshot.version if snapshot else None,
        snapshot.digest if snapshot else None,
        snapshot.approved_by if snapshot else None,
        changes,
        rejected,
    )


def _pending(engine: Engine, known: Snapshot | None) -> tuple[Snapshot | None, list[Change], list[Proposal]]:
    """What ``patchbay manifest diff`` reports (``patchbay.cli.manifest.pending``), without reading every approved
    definition on each request: the version this server already loaded is used while it is the latest, and only
    the proposed items are compared (every other item is unchanged by definition)."""
    from patchbay.catalog.manifest_store import PROPOSED, latest_version, read_proposed, read_snapshot

    snapshot = known if known is not None and known.version == latest_version(engine) else read_snapshot(engine)
    approved = snapshot.entries if snapshot is not None else {}
    proposals = read_proposed(engine)
    keys = {(p.kind, p.name) for p in proposals if p.state == PROPOSED}
    before = {key: approved[key] for key in keys if key in approved}
    after = dict(before)
    for proposal in proposals:
        if proposal.state != PROPOSED:
            continue
        if proposal.item is None:
            after.pop((proposal.kind, proposal.name), None)
        else:
            after[proposal.kind, proposal.name] = proposal.item
    return snapshot, diff(before, after), proposals


def side_by_side(change: Change) -> list[Line]:
    """The approved and proposed definitions as indented JSON, aligned line by line."""
    old = _lines(change.old.definition if change.old is not None else None)
    new = _lines(change.new.definition if change.new is not None else None)
    rows: list[Line] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, old, new, autojunk=False).get_opcodes():
        if op == "equal":
            rows += [Line("same", a, b) for a, b in zip(old[i1:i2], new[j1:j2], strict=True)]
        elif op == "delete":
            rows += [Line("removed", a, None) for a in old[i1:i2]]
        elif op == "insert":
            rows += [Line("added", None, b) for b in new[j1:j2]]
        else:
            left, right = old[i1:i2], new[j1:j2]
            for k in range(max(len(left), len(right))):
                a = left[k] if k < len(left) else None
                b = right[k] if k < len(right) else None
                rows.append(Line("changed" if a is not None and b is not None else _one_side(a), a, b))
    return rows


def _one_side(old: str | None) -> Mark:
    return "removed" if old is not None else "added"


def _lines(definition: dict[str, Any] | None) -> list[str]:
    if definition is None:
        return []
    text = orjson.dumps(definition, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    return escaped(text).splitlines()


@dataclass(frozen=True, slots=True)
class Decided:
    """An approval or rejection as recorded: the new version (approvals), and the changes it covered."""

    version: int | None
    chosen: list[str]
    summary: str


async def approve(runtime: Any, chosen: Sequence[str], everything: str | None, by: str) -> Decided:
    """Approve the ``chosen`` changes (``choice`` values), or all of them when ``everything`` is the fingerprint
    of the list the operator saw; then serve the new version here at once.

    Raises:
        ChangeRefused: nothing chosen, a change not pending or changed since, or another approval came first.
    """
    engine, known = _required(runtime), _known(runtime)
    done = await anyio.to_thread.run_sync(functools.partial(_approve, engine, known, chosen, everything, by))
    if runtime.keeper is not None:
        await runtime.keeper.check()  # load the version now: rebuild and tell clients, as the keeper's poll does
    return done


def _approve(engine: Engine, known: Snapshot | None, chosen: Sequence[str], everything: str | None, by: str) -> Decided:
    from patchbay.catalog.manifest import apply, summary
    from patchbay.catalog.manifest_store import VersionConflict, record_version

    snapshot, changes, _ = _pending(engine, known)
    picked = _pick(changes, chosen, everything)
    entries = apply(snapshot.entries if snapshot else {}, picked)
    try:
        version = record_version(
            engine, entries, previous=snapshot.version if snapshot else 0, by=by, mode="review", note=summary(picked)
        )
    except VersionConflict as exc:
        raise ChangeRefused(f"Not approved: {exc}. Review the changes again.") from None
    return Decided(version, [key_of(c) for c in picked], summary(picked))


async def reject(runtime: Any, chosen: Sequence[str], everything: str | None, by: str) -> Decided:
    """Reject the chosen changes (or all, as for ``approve``); they come back only when the connector changes
    again.

    Raises:
        ChangeRefused: as for ``approve``.
    """
    engine, known = _required(runtime), _known(runtime)
    return await anyio.to_thread.run_sync(functools.partial(_reject, engine, known, chosen, everything, by))


def _reject(engine: Engine, known: Snapshot | None, chosen: Sequence[str], everything: str | None, by: str) -> Decided:
    from patchbay.catalog.manifest_store import reject as reject_rows

    _, changes, _ = _pending(engine, known)
    picked = _pick(changes, chosen, everything)
    reject_rows(engine, [(c.kind, c.name) for c in picked], by)
    keys = [key_of(c) for c in picked]
    return Decided(None, keys, " ".join(keys))


def _pick(changes: list[Change], chosen: Sequence[str], everything: str | None) -> list[Change]:
    if not changes:
        raise ChangeRefused("No changes are pending: clients see the approved version.")
    if everything is not None:
        if everything != fingerprint(changes):
            raise ChangeRefused("The pending changes differ from the ones shown. Review them again.")
        return changes
    if not chosen:
        raise ChangeRefused("Choose at least one change, or decide all of them.")
    by_choice = {choice(c): c for c in changes}
    by_key = {key_of(c) for c in changes}
    stale = [c.rpartition("@")[0] or c for c in chosen if c not in by_choice]
    if stale:
        gone = [k for k in stale if k not in by_key]
        if gone:
            raise ChangeRefused(f"Not pending (any more): {', '.join(gone)}. Review the changes again.")
        raise ChangeRefused(f"Changed since the page was shown: {', '.join(stale)}. Review the changes again.")
    return [by_choice[c] for c in dict.fromkeys(chosen)]


def _known(runtime: Any) -> Snapshot | None:
    """The approved version this server has loaded (its keeper's)."""
    manifest = runtime.catalog.manifest
    return manifest.approved if manifest is not None else None


def _engine(runtime: Any) -> Engine | None:
    keeper = runtime.keeper
    return keeper.engine if keeper is not None else None


def _required(runtime: Any) -> Engine:
    engine = _engine(runtime)
    if engine is None:
        raise ChangeRefused("This server keeps no manifest versions ([manifest] mode and [store]; docs/manifest.md).")
    return engine
