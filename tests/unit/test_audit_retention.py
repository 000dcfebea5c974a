"""Retention of the audit trail (docs/audit.md, "Retention"): where pruning cuts, what it keeps, and the background
pruner, against a real SQLite trail with real checkpoints."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from patchbay.gate import audit_chain, audit_retention
from patchbay.gate.audit_chain import read_checkpoints
from patchbay.gate.audit_retention import DAY, Pruner, prune, read_anchor
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import Report, verify
from patchbay.store import create_engine, upgrade
from patchbay.store.engine import writer

KEY = b"retention-test-key-0123456789"
START = 1_000_000.0


@dataclass
class Trail:
    engine: Engine
    db: Path
    checkpoints: Path
    heads: list[tuple[int, str]]

    def seqs(self) -> list[int]:
        with sqlite3.connect(self.db) as connection:
            return [seq for (seq,) in connection.execute("SELECT seq FROM audit_records ORDER BY seq")]

    def verify(self, **kwargs: Any) -> Report:
        lines = self.checkpoints.read_text().splitlines() if self.checkpoints.exists() else []
        return verify(self.engine, read_checkpoints(lines), key=KEY, **kwargs)


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    """Ten records, one a second from START (record i at START + i); a signed checkpoint after every fourth."""
    db = tmp_path / "audit.db"
    upgrade(f"sqlite:///{db}")
    engine = create_engine(f"sqlite:///{db}")
    clock = [START]
    file = tmp_path / "audit.db.checkpoints.jsonl"
    checkpointer = audit_chain.Checkpointer(key=KEY, file=file, log=False, every=4, clock=lambda: clock[0])
    heads = []
    for i in range(1, 11):
        (head,) = write_now(engine, [{"kind": "event", "method": "auth.sign_in", "ts": START + i}])
        clock[0] = START + i + 0.5
        checkpointer.maybe(*head)
        heads.append(head)
    yield Trail(engine, db, file, heads)
    engine.dispose()


def test_without_checkpoints_pruning_cuts_before_the_first_record_at_the_cutoff(trail: Trail) -> None:
    now = START + 6.5 + DAY
    assert prune(trail.engine, 1, now=now) == 6
    anchor = read_anchor(trail.engine)
    assert anchor is not None and (anchor.seq, anchor.hash, anchor.cutoff) == (*trail.heads[5], START + 6.5)
    assert trail.seqs() == [7, 8, 9, 10]
    report = verify(trail.engine)
    assert report.intact and (report.first_seq, report.records) == (7, 4)


def test_without_checkpoints_a_trail_entirely_past_its_days_is_pruned_to_its_last_record(trail: Trail) -> None:
    assert prune(trail.engine, 1, now=START + 100 + DAY) == 10
    anchor = read_anchor(trail.engine)
    assert anchor is not None and (anchor.seq, anchor.hash) == trail.heads[9]
    emptied = verify(trail.engine)  # nothing kept: the trail ends at the anchor, where the chain head is
    assert emptied.intact and (emptied.records, emptied.last_seq) == (0, None)
    write_now(trail.engine, [{"kind": "event", "method": "auth.sign_in"}])
    assert trail.seqs() == [11]
    assert verify(trail.engine).intact


def test_nothing_is_pruned_from_a_trail_younger_than_its_days(trail: Trail) -> None:
    assert prune(trail.engine, 1, now=START + 0.5 + DAY) == 0
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, now=START + 0.5 + DAY) == 0
    assert read_anchor(trail.engine) is None
    assert trail.seqs() == list(range(1, 11))


def test_with_checkpoints_pruning_cuts_at_the_newest_checkpoint_before_the_cutoff(trail: Trail) -> None:
    # Checkpoints at seq 4 (written START + 4.5) and 8 (START + 8.5); the cut-off is START + 8.5 exactly: the
    # checkpoint at seq 8 is not older than that, so the cut is at seq 4.
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 8.5 + DAY) == 4
    anchor = read_anchor(trail.engine)
    assert anchor is not None and (anchor.seq, anchor.hash) == trail.heads[3]
    assert trail.verify(keep_days=1, now=START + 8.5 + DAY).intact
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 8.6 + DAY) == 4
    assert trail.seqs() == [9, 10]


def test_a_missing_checkpoint_file_prunes_nothing(trail: Trail, tmp_path: Path) -> None:
    assert prune(trail.engine, 1, checkpoints=tmp_path / "none.jsonl", now=START + 100 * DAY) == 0
    assert trail.seqs() == list(range(1, 11))


def test_checkpoints_that_fail_their_signature_or_have_no_time_are_not_used(trail: Trail) -> None:
    good = trail.checkpoints.read_text().splitlines()[0]  # seq 4
    forged = audit_chain.checkpoint_body(8, trail.heads[7][1], 4, START + 8.5, b"someone else's key!!")
    timeless = {k: v for k, v in audit_chain.checkpoint_body(9, trail.heads[8][1], 1, 0, None).items() if k != "ts"}
    trail.checkpoints.write_text(f"{good}\n{json.dumps(forged)}\n{json.dumps(timeless)}\n")
    now = START + 100 + DAY
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=now) == 4
    # Without a key the forged checkpoint counts; the one without a time never does.
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, now=now) == 4
    anchor = read_anchor(trail.engine)
    assert anchor is not None and anchor.seq == 8


def test_a_checkpoint_the_store_no_longer_matches_is_skipped_with_a_warning(
    trail: Trail, caplog: pytest.LogCaptureFixture
) -> None:
    with sqlite3.connect(trail.db) as connection:
        connection.execute("UPDATE audit_records SET hash = ? WHERE seq = 8", ("ee" * 32,))
    with caplog.at_level(logging.WARNING, logger="patchbay.audit"):
        assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 100 + DAY) == 4
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.audit"] == [
        "audit retention: checkpoint at seq 8 does not match the store; not pruning there"
    ]


def test_the_anchor_never_moves_back(trail: Trail) -> None:
    assert prune(trail.engine, 1, now=START + 6.5 + DAY) == 6
    assert prune(trail.engine, 1, now=START + 3.5 + DAY) == 0
    anchor = read_anchor(trail.engine)
    assert anchor is not None and anchor.seq == 6 and anchor.cutoff == START + 6.5
    assert prune(trail.engine, 1, now=START + 8.5 + DAY) == 2
    anchor = read_anchor(trail.engine)
    assert anchor is not None and (anchor.seq, anchor.cutoff) == (8, START + 8.5)


def test_records_a_crash_left_at_or_below_the_anchor_are_deleted_by_the_next_run(trail: Trail) -> None:
    with sqlite3.connect(trail.db) as connection:
        connection.execute(
            "INSERT INTO audit_anchor (id, seq, hash, cutoff, pruned_at) VALUES (1, 5, ?, 0, 0)", (trail.heads[4][1],)
        )
    assert verify(trail.engine).intact  # verify starts after the anchor
    assert prune(trail.engine, 1, now=START + 2.5 + DAY) == 5
    assert trail.seqs() == [6, 7, 8, 9, 10]


def test_deletion_in_chunks_stops_at_the_anchor(trail: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_retention, "CHUNK", 3)
    chunks: list[int] = []

    def deleted(_conn: Any, cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("DELETE FROM audit_records"):
            chunks.append(cursor.rowcount)

    event.listen(writer(trail.engine), "after_cursor_execute", deleted)
    assert prune(trail.engine, 1, now=START + 7.5 + DAY) == 7
    assert chunks == [3, 3, 1]  # 1..3, 4..6, then the anchor's own record alone
    assert trail.seqs() == [8, 9, 10]
    assert verify(trail.engine).intact


def test_keep_days_counts_whole_days_before_now(trail: Trail) -> None:
    # Two days: the cut-off is two days before now.
    assert prune(trail.engine, 2, now=START + 6.5 + 2 * DAY) == 6
    anchor = read_anchor(trail.engine)
    assert anchor is not None and anchor.cutoff == START + 6.5


def test_prune_uses_the_clock_when_no_time_is_given(trail: Trail) -> None:
    before = time.time()
    assert prune(trail.engine, 1) == 10  # every record is from 1970
    anchor = read_anchor(trail.engine)
    assert anchor is not None and before - DAY <= anchor.cutoff <= time.time() - DAY
    assert before <= anchor.pruned_at <= time.time()


def _pruner_tasks() -> int:
    return sum(task.get_name() == "patchbay-audit-prune" for task in asyncio.all_tasks())


async def _until(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.mark.anyio
async def test_the_pruner_prunes_in_the_background_and_logs_what_it_deleted(
    trail: Trail, caplog: pytest.LogCaptureFixture
) -> None:
    pruner = Pruner(trail.engine, 1, interval=3600, checkpoints=trail.checkpoints, key=KEY)
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        pruner.start()
        pruner.start()  # a second start keeps the one task
        assert _pruner_tasks() == 1
        try:
            await _until(lambda: read_anchor(trail.engine) is not None)
            await _until(lambda: any("deleted" in r.getMessage() for r in caplog.records))
        finally:
            await pruner.stop()
    assert trail.seqs() == [9, 10]
    assert [r.getMessage() for r in caplog.records if r.name == "patchbay.audit"] == [
        "audit retention: deleted 8 records older than 1 days"
    ]
    await pruner.stop()  # stopping twice is harmless


@pytest.mark.anyio
async def test_a_pruner_for_keep_days_zero_never_starts(trail: Trail) -> None:
    pruner = Pruner(trail.engine, 0, interval=0.01, checkpoints=None, key=None)
    pruner.start()
    assert _pruner_tasks() == 0
    assert await pruner.run_once() == 0
    await pruner.stop()
    assert trail.seqs() == list(range(1, 11))


@pytest.mark.anyio
async def test_a_failing_prune_is_logged_and_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")
    pruner = Pruner(engine, 1, interval=0.01, checkpoints=None, key=None)
    failed = "audit retention: pruning failed, will retry: OperationalError: "
    try:
        with caplog.at_level(logging.WARNING, logger="patchbay.audit"):
            pruner.start()
            await _until(lambda: sum(r.getMessage().startswith(failed) for r in caplog.records) >= 2)
            await pruner.stop()
    finally:
        engine.dispose()
    assert all("no such table: audit_records" in m for m in caplog.messages if m.startswith(failed))


@pytest.mark.anyio
async def test_the_pruner_trusts_only_checkpoints_signed_with_its_key(trail: Trail) -> None:
    good = trail.checkpoints.read_text().splitlines()[0]  # seq 4
    forged = audit_chain.checkpoint_body(8, trail.heads[7][1], 4, START + 8.5, b"someone else's key!!")
    trail.checkpoints.write_text(f"{good}\n{json.dumps(forged)}\n")
    pruner = Pruner(trail.engine, 1, interval=3600, checkpoints=trail.checkpoints, key=KEY)
    assert await pruner.run_once() == 4
    assert trail.seqs() == [5, 6, 7, 8, 9, 10]


def test_a_checkpoint_line_that_is_not_utf8_costs_only_itself(trail: Trail) -> None:
    with trail.checkpoints.open("ab") as file:  # a torn write: half a line of bytes that decode as nothing
        file.write(b'{"type": "pb-audit-checkpoint", "seq": \xff\xfe\n')
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 100 + DAY) == 8
    assert trail.seqs() == [9, 10]


def test_a_checkpoint_past_the_stores_last_record_is_passed_over(
    trail: Trail, caplog: pytest.LogCaptureFixture
) -> None:
    # A checkpoint file kept from a longer trail (the store restored from an older backup) names seq 12.
    ahead = audit_chain.checkpoint_body(12, "ab" * 32, 4, START + 12.5, KEY)
    with trail.checkpoints.open("a") as file:
        file.write(f"{json.dumps(ahead)}\n")
    with caplog.at_level(logging.WARNING, logger="patchbay.audit"):
        assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 100 + DAY) == 8
    assert not caplog.records  # no record to mismatch: nothing to warn about


def test_a_checkpoint_whose_record_is_not_older_than_the_cutoff_is_not_used(trail: Trail) -> None:
    # The checkpoint at seq 8 claims a time before its own record's (the clock was set back in between): the
    # record at the cut-off itself is not older than keep_days, so the cut is at the checkpoint before.
    first = trail.checkpoints.read_text().splitlines()[0]  # seq 4, written START + 4.5
    early = audit_chain.checkpoint_body(8, trail.heads[7][1], 4, START + 1, KEY)
    trail.checkpoints.write_text(f"{first}\n{json.dumps(early)}\n")
    assert prune(trail.engine, 1, checkpoints=trail.checkpoints, key=KEY, now=START + 8 + DAY) == 4
    assert trail.seqs() == [5, 6, 7, 8, 9, 10]


def test_a_prune_that_finds_the_anchors_own_boundary_leaves_the_anchor_as_it_was(trail: Trail) -> None:
    # A run that crashed after setting the anchor at seq 5 left records 1..5; the next run finds the same boundary.
    with sqlite3.connect(trail.db) as connection:
        connection.execute(
            "INSERT INTO audit_anchor (id, seq, hash, cutoff, pruned_at) VALUES (1, 5, ?, 0, 0)", (trail.heads[4][1],)
        )
    assert prune(trail.engine, 1, now=START + 5.5 + DAY) == 5
    assert read_anchor(trail.engine) == audit_retention.Anchor(5, trail.heads[4][1], 0, 0)
    assert trail.seqs() == [6, 7, 8, 9, 10]


def test_without_checkpoints_a_record_at_the_cutoff_itself_is_kept(trail: Trail) -> None:
    assert prune(trail.engine, 1, now=START + 7 + DAY) == 6  # record 7 is exactly keep_days old: not older
    assert trail.seqs() == [7, 8, 9, 10]


def test_without_checkpoints_no_anchor_is_set_on_a_record_deleted_by_hand(trail: Trail) -> None:
    with sqlite3.connect(trail.db) as connection:
        connection.execute("DELETE FROM audit_records WHERE seq = 3")  # the cut would fall on it
    assert prune(trail.engine, 1, now=START + 3.5 + DAY) == 0
    assert read_anchor(trail.engine) is None
    assert trail.seqs() == [1, 2, 4, 5, 6, 7, 8, 9, 10]  # the gap stays for verify to report
