"""Retention of the audit trail: ``[audit] keep_days``, pruned in the background without breaking verification.

Pruning deletes a whole prefix of the chain, records ``1..B``, and first stores the *anchor*: ``B`` and the hash of
record ``B`` (table ``audit_anchor``, one row). The first kept record's ``prev_hash`` must equal the anchor's hash and
its ``seq`` must be ``B + 1``, so verifying what is kept still starts from a known point, and deleting a record in the
kept range still breaks the chain.

``B`` is chosen at a checkpoint boundary: the newest checkpoint in the checkpoint file that was written before the
cut-off (``now - keep_days``) and whose ``(seq, hash)`` the store still holds. A checkpoint is written after its
records were committed, so every record up to its ``seq`` is older than the cut-off; and ``audit verify`` can check
that the anchor *is* such a checkpoint, which tells a prune from someone deleting recent records and moving the
anchor. Without a checkpoint file, ``B`` is the last record before the first one at or after the cut-off.

Deletion runs in chunks of short transactions after the anchor is set; records at or below the anchor that a crash
left behind are deleted by the next run and ignored by ``verify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, delete, func, insert, select, update

from patchbay.gate.audit_chain import read_checkpoints, signature_ok
from patchbay.gate.audit_models import AuditRecord
from patchbay.gate.audit_retention_models import AuditAnchor
from patchbay.store.engine import writer

__all__ = ["Anchor", "AuditAnchor", "Pruner", "prune", "read_anchor"]

log = logging.getLogger("patchbay.audit")
DAY = 86_400.0
# Rows deleted per transaction: short enough that the one writer (and the audit writer behind it) never waits long.
CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: str
    cutoff: float
    pruned_at: float


def read_anchor(engine: Engine) -> Anchor | None:
    """The retention anchor, or None when nothing was ever pruned."""
    columns = (AuditAnchor.seq, AuditAnchor.hash, AuditAnchor.cutoff, AuditAnchor.pruned_at)
    with engine.connect() as connection:
        row = connection.execute(select(*columns).where(AuditAnchor.id == 1)).first()
    return Anchor(row.seq, row.hash, row.cutoff, row.pruned_at) if row is not None else None


def prune(
    engine: Engine,
    keep_days: int,
    *,
    checkpoints: Path | None = None,
    key: bytes | None = None,
    now: float | None = None,
) -> int:
    """Delete records older than ``keep_days`` up to a checkpoint boundary; returns how many were deleted.

    ``checkpoints`` is the checkpoint file (None: cut at the records' own times); with ``key``, only checkpoints
    with a valid signature count. ``keep_days`` 0 keeps everything.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read or written (nothing is half-done: the anchor is
            set before any deletion, and a later run finishes it).
    """
    if keep_days <= 0:
        return 0
    cutoff = (time.time() if now is None else now) - keep_days * DAY
    boundary = _boundary(engine, cutoff, checkpoints, key)
    current = read_anchor(engine)
    if boundary is not None and (current is None or boundary[0] > current.seq):
        _set_anchor(engine, boundary[0], boundary[1], cutoff)
        current = read_anchor(engine)
    return _delete_through(engine, current.seq) if current is not None else 0


def _boundary(engine: Engine, cutoff: float, checkpoints: Path | None, key: bytes | None) -> tuple[int, str] | None:
    if checkpoints is not None:
        return _checkpoint_boundary(engine, cutoff, _checkpoints_before(checkpoints, cutoff, key))
    with engine.connect() as connection:
        first_kept = connection.execute(select(func.min(AuditRecord.seq)).where(AuditRecord.ts >= cutoff)).scalar()
        last = connection.execute(select(func.max(AuditRecord.seq))).scalar()
        seq = (first_kept - 1) if first_kept is not None else last
        if not seq:
            return None
        found = connection.execute(select(AuditRecord.hash).where(AuditRecord.seq == seq)).scalar()
    return (seq, found) if found is not None else None


def _checkpoints_before(path: Path, cutoff: float, key: bytes | None) -> list[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            found = [c for _, c in read_checkpoints(lines) if isinstance(c, dict)]
    except FileNotFoundError:
        return []
    usable = [c for c in found if _number(c.get("ts")) < cutoff and (key is None or signature_ok(c, key))]
    return sorted(((c["seq"], c["hash"]) for c in usable), reverse=True)


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else float("inf")


def _checkpoint_boundary(
    engine: Engine, cutoff: float, candidates: Iterable[tuple[int, str]]
) -> tuple[int, str] | None:
    with engine.connect() as connection:
        for seq, head in candidates:
            row = connection.execute(select(AuditRecord.hash, AuditRecord.ts).where(AuditRecord.seq == seq)).first()
            if row is not None and row.hash == head and row.ts < cutoff:
                return seq, head
            if row is None:
                continue
            log.warning("audit retention: checkpoint at seq %d does not match the store; not pruning there", seq)
    return None


def _set_anchor(engine: Engine, seq: int, head: str, cutoff: float) -> None:
    values: Mapping[str, Any] = {"seq": seq, "hash": head, "cutoff": cutoff, "pruned_at": time.time()}
    with writer(engine).begin() as connection:
        updated = connection.execute(update(AuditAnchor).where(AuditAnchor.id == 1).values(**values))
        if updated.rowcount == 0:
            connection.execute(insert(AuditAnchor).values(id=1, **values))


def _delete_through(engine: Engine, seq: int) -> int:
    deleted = 0
    while True:
        with writer(engine).begin() as connection:
            low = connection.execute(select(func.min(AuditRecord.seq))).scalar()
            if low is None or low > seq:
                return deleted
            high = min(seq, low + CHUNK - 1)
            result = connection.execute(delete(AuditRecord).where(AuditRecord.seq <= high))
            deleted += result.rowcount


class Pruner:
    """Runs :func:`prune` every ``interval`` seconds in the server, off the event loop."""

    def __init__(
        self, engine: Engine, keep_days: int, *, interval: float, checkpoints: Path | None, key: bytes | None
    ) -> None:
        self.engine = engine
        self.keep_days = keep_days
        self.interval = interval
        self.checkpoints = checkpoints
        self.key = key
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.keep_days > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="patchbay-audit-prune")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def run_once(self) -> int:
        def job() -> int:
            return prune(self.engine, self.keep_days, checkpoints=self.checkpoints, key=self.key)

        return await anyio.to_thread.run_sync(job)

    async def _loop(self) -> None:
        while True:
            try:
                deleted = await self.run_once()
            except Exception as exc:  # the store is busy or down: try again next round, keep serving
                log.warning("audit retention: pruning failed, will retry: %s: %s", type(exc).__name__, exc)
            else:
                if deleted:
                    log.info("audit retention: deleted %d records older than %d days", deleted, self.keep_days)
            await asyncio.sleep(self.interval)
