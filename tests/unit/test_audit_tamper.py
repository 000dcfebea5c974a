"""Tamper evidence: edit, insert, delete and cut off records in a real SQLite audit file; `audit verify` names each.

The trail is written the way the server writes it: records appended through the audit store's one chain
(``audit_store.write_now``), the checkpointer called with the new head after each commit. Tampering is done with
plain ``sqlite3`` on the file, as someone with access to the database would.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchbay import settings as settings_mod
from patchbay.cli import app
from patchbay.gate import audit_chain, audit_verify
from patchbay.gate.audit_chain import read_checkpoints
from patchbay.gate.audit_retention import DAY, prune, read_anchor
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import Report, verify
from patchbay.settings import Settings
from patchbay.store import create_engine, upgrade

KEY = "k" * 32
ENV = {"COLUMNS": "200", "NO_COLOR": "1", "PATCHBAY_AUDIT_KEY": KEY}


@dataclass
class Trail:
    settings: Settings
    db: Path
    checkpoints: Path
    heads: list[tuple[int, str]]

    def verify(self, key: str | None = KEY, keep_days: int = 0, now: float | None = None) -> Report:
        engine = create_engine(self.settings.store_url)
        try:
            lines = self.checkpoints.read_text().splitlines() if self.checkpoints.exists() else []
            return verify(
                engine,
                read_checkpoints(lines),
                key=key.encode() if key else None,
                keep_days=keep_days,
                now=now,
            )
        finally:
            engine.dispose()

    def sql(self, statement: str, *params: Any) -> None:
        with sqlite3.connect(self.db) as connection:
            connection.execute(statement, params)


def record(i: int, ts: float) -> dict[str, Any]:
    return {
        "kind": "call",
        "ts": ts,
        "method": "tools/call",
        "name": "crm_query" if i % 2 else "crm_close_ticket",
        "subject": "user:ada",
        "client_id": "client-1",
        "client_name": "ChatGPT",
        "outcome": "ok" if i % 3 else "tool_error",
        "request_ref": f"req{i}",
        "arguments": {"i": i},
    }


def write_trail(tmp_path: Path, count: int = 10, *, every: int = 5, start: float = 1_000_000.0) -> Trail:
    (tmp_path / "patchbay.toml").write_text(
        f'[store]\nurl = "sqlite:///audit.db"\n[audit]\ncheckpoint_every = {every}\ncheckpoint_log = false\n'
    )
    settings = settings_mod.load(tmp_path / "patchbay.toml", env={})
    upgrade(settings.store_url)
    path = audit_chain.checkpoint_path(settings.audit, settings.store_url, settings.base_dir)
    assert path == tmp_path / "audit.db.checkpoints.jsonl"
    key = audit_chain.load_key(settings.audit, settings.base_dir, {"PATCHBAY_AUDIT_KEY": KEY})
    assert key == KEY.encode()
    # The checkpointer's clock follows the records' times, so retention tests can name "now" exactly.
    clock = [start]
    checkpointer = audit_chain.Checkpointer(key=key, file=path, log=False, every=every, clock=lambda: clock[0])
    engine = create_engine(settings.store_url)
    heads: list[tuple[int, str]] = []
    try:
        for i in range(1, count + 1):
            (head,) = write_now(engine, [record(i, start + i)])
            clock[0] = start + i + 0.1
            checkpointer.maybe(*head)
            heads.append(head)
    finally:
        engine.dispose()
    return Trail(settings, tmp_path / "audit.db", path, heads)


def problems(report: Report) -> set[tuple[str, int | None]]:
    return {(f.problem, f.seq) for f in report.findings}


@pytest.fixture
def trail(tmp_path: Path) -> Iterator[Trail]:
    yield write_trail(tmp_path)


def test_an_untouched_trail_verifies_against_its_signed_checkpoints(trail: Trail) -> None:
    report = trail.verify()
    assert report.intact, report.findings
    assert (report.records, report.first_seq, report.last_seq) == (10, 1, 10)
    assert report.checkpoints == 2
    assert report.last_hash == trail.heads[-1][1]


def test_checkpoints_file_is_private_and_signed_with_the_configured_key(trail: Trail) -> None:
    assert trail.checkpoints.stat().st_mode & 0o777 == 0o600
    found = [c for _, c in read_checkpoints(trail.checkpoints.read_text().splitlines())]
    assert [(c["seq"], c["hash"]) for c in found if isinstance(c, dict)] == [trail.heads[4], trail.heads[9]]
    assert all(isinstance(c, dict) and audit_chain.signature_ok(c, KEY.encode()) for c in found)


def test_an_edited_body_is_reported_at_its_seq(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET body = replace(body, '\"i\":4', '\"i\":40') WHERE seq = 4")
    assert problems(trail.verify()) == {("edited", 4)}


def test_an_edited_indexed_column_is_reported_at_its_seq(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET outcome = 'ok' WHERE seq = 3")
    assert problems(trail.verify()) == {("column_edited", 3)}


def test_a_body_that_is_no_record_is_reported(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET body = 'wiped' WHERE seq = 2")
    assert problems(trail.verify()) == {("edited", 2), ("bad_body", 2)}


def test_a_deleted_record_is_reported_where_the_gap_is(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq = 7")
    assert ("missing", 8) in problems(trail.verify())


def test_an_inserted_record_breaks_the_chain_after_it(trail: Trail) -> None:
    # Make room at seq 7 by renumbering the later records, then insert a record correctly linked to seq 6.
    trail.sql("UPDATE audit_records SET seq = seq + 100 WHERE seq >= 7")
    trail.sql("UPDATE audit_records SET seq = seq - 99 WHERE seq >= 107")
    body = audit_chain.canonical(record(99, 1_000_006.5))
    forged = audit_chain.link(trail.heads[5][1], 7, body)
    trail.sql(
        "INSERT INTO audit_records (seq, ts, kind, request_ref, method, name, subject, client_id, client_name, "
        "outcome, body, prev_hash, hash) VALUES (7, 1000006.5, 'call', 'req99', 'tools/call', 'crm_query', "
        "'user:ada', 'client-1', 'ChatGPT', 'ok', ?, ?, ?)",
        body,
        trail.heads[5][1],
        forged,
    )
    found = problems(trail.verify())
    assert ("chain_broken", 8) in found
    assert ("edited", 8) in found  # the old record 7, now at seq 8: its hash covered seq 7


def test_a_cut_off_tail_is_reported_from_the_last_checkpoint(trail: Trail) -> None:
    # A careful intruder moves the chain head back too, so only the checkpoint tells.
    trail.sql("DELETE FROM audit_records WHERE seq > 7")
    trail.sql("UPDATE audit_chain_head SET seq = 7, hash = ?", trail.heads[6][1])
    assert problems(trail.verify()) == {("truncated", 10)}


def test_a_cut_off_tail_with_the_head_left_behind_is_reported(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq > 8")
    assert problems(trail.verify()) == {("truncated", 10), ("head_mismatch", 10)}


def test_a_rewritten_and_rehashed_chain_is_caught_by_the_checkpoints(trail: Trail) -> None:
    with sqlite3.connect(trail.db) as connection:
        rows = connection.execute("SELECT seq, body FROM audit_records ORDER BY seq").fetchall()
        prev = audit_chain.GENESIS
        for seq, body in rows:
            if seq == 3:
                body = body.replace('"i":3', '"i":333')
            digest = audit_chain.link(prev, seq, body)
            connection.execute(
                "UPDATE audit_records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?", (body, prev, digest, seq)
            )
            prev = digest
        connection.execute("UPDATE audit_chain_head SET hash = ?", (prev,))
    assert problems(trail.verify()) == {("checkpoint_mismatch", 5), ("checkpoint_mismatch", 10)}


def test_a_forged_checkpoint_has_a_bad_signature(trail: Trail) -> None:
    forged = audit_chain.checkpoint_body(12, "ab" * 32, 2, 1_000_020.0, b"an attacker's own key!")
    unsigned = audit_chain.checkpoint_body(11, "cd" * 32, 1, 1_000_020.0, None)
    with trail.checkpoints.open("a") as handle:
        handle.write(json.dumps(forged) + "\n" + json.dumps(unsigned) + "\n")
    report = trail.verify()
    assert problems(report) == {("bad_signature", 12), ("bad_signature", 11)}
    assert "not the configured key" in report.findings[0].detail


def test_an_altered_signed_checkpoint_has_a_bad_signature(trail: Trail) -> None:
    lines = trail.checkpoints.read_text().splitlines()
    first = json.loads(lines[0])
    first["seq"] = 4  # moved to another record, keeping its signature
    trail.checkpoints.write_text(json.dumps(first) + "\n" + lines[1] + "\n")
    report = trail.verify()
    assert problems(report) == {("bad_signature", 4)}
    assert "altered" in report.findings[0].detail


def test_a_changed_key_fails_every_checkpoint_with_its_seq(trail: Trail) -> None:
    assert problems(trail.verify(key="another key, 32 bytes long......")) == {
        ("bad_signature", 5),
        ("bad_signature", 10),
    }


def test_without_a_key_the_signatures_go_unchecked_and_verify_says_so(trail: Trail) -> None:
    report = trail.verify(key=None)
    assert report.intact
    assert any("not checked" in note for note in report.notes)


def test_pruning_keeps_a_verifiable_trail_and_a_deletion_in_the_kept_range_is_still_caught(tmp_path: Path) -> None:
    trail = write_trail(tmp_path, 12, every=4)
    engine = create_engine(trail.settings.store_url)
    try:
        # Checkpoints are written at the time of their records here (seconds after `start`): "now" is set so that
        # records 1..9 are past keep_days; the newest checkpoint before the cut-off is the one at seq 8.
        now = 1_000_009.5 + DAY
        deleted = prune(engine, 1, checkpoints=trail.checkpoints, key=KEY.encode(), now=now)
        anchor = read_anchor(engine)
    finally:
        engine.dispose()
    assert deleted == 8
    assert anchor is not None and (anchor.seq, anchor.hash) == trail.heads[7]
    report = trail.verify(keep_days=1, now=now)
    assert report.intact, report.findings
    assert (report.first_seq, report.last_seq, report.records) == (9, 12, 4)
    trail.sql("DELETE FROM audit_records WHERE seq = 9")
    assert ("missing", 10) in problems(trail.verify(keep_days=1, now=now))


def test_deleting_a_prefix_and_moving_the_anchor_is_not_mistaken_for_pruning(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq <= 6")
    trail.sql("INSERT INTO audit_anchor (id, seq, hash, cutoff, pruned_at) VALUES (1, 6, ?, 0, 0)", trail.heads[5][1])
    assert problems(trail.verify()) == {("anchor_unconfirmed", 6)}


def test_pruning_at_a_checkpoint_younger_than_keep_days_is_reported(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq <= 5")
    trail.sql("INSERT INTO audit_anchor (id, seq, hash, cutoff, pruned_at) VALUES (1, 5, ?, 0, 0)", trail.heads[4][1])
    # The checkpoint at seq 5 was written a few seconds before "now": with a year to keep, far too young.
    assert problems(trail.verify(keep_days=365, now=1_000_020.0)) == {("pruned_early", 5)}
    assert trail.verify(keep_days=365, now=1_000_005.1 + 365 * DAY).intact


def test_keep_days_zero_never_prunes(trail: Trail) -> None:
    engine = create_engine(trail.settings.store_url)
    try:
        assert prune(engine, 0, checkpoints=trail.checkpoints, now=10**12) == 0
        assert read_anchor(engine) is None
    finally:
        engine.dispose()


def run_verify(trail: Trail, *args: str, env: dict[str, str] | None = None) -> Any:
    config = str(trail.settings.source)
    return CliRunner().invoke(app, ["audit", "verify", "--config", config, *args], env=env or ENV)


def test_verify_command_exits_0_when_intact_and_1_naming_the_seq_when_tampered(trail: Trail) -> None:
    ok = run_verify(trail)
    assert ok.exit_code == 0, ok.output
    assert "intact" in ok.output
    trail.sql("UPDATE audit_records SET name = 'crm_drop_everything' WHERE seq = 2")
    bad = run_verify(trail, "--json")
    assert bad.exit_code == 1, bad.output
    report = json.loads(bad.output)
    assert report["intact"] is False
    assert report["findings"] == [
        {"problem": "column_edited", "seq": 2, "detail": "seq 2: column name disagrees with the record's body"}
    ]


def test_verify_command_reads_checkpoints_from_a_log_file(trail: Trail, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    lines = trail.checkpoints.read_text().splitlines()
    log.write_text("".join(f"2026-12-06 INFO patchbay.audit audit checkpoint {line}\nother line\n" for line in lines))
    trail.checkpoints.unlink()
    trail.sql("DELETE FROM audit_records WHERE seq > 6")
    result = run_verify(trail, "--checkpoints", str(log), "--json")
    assert result.exit_code == 1
    assert {(f["problem"], f["seq"]) for f in json.loads(result.output)["findings"]} >= {("truncated", 10)}


def test_verify_command_usage_errors_exit_2(trail: Trail, tmp_path: Path) -> None:
    missing = run_verify(trail, "--checkpoints", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2
    assert "nope.jsonl" in missing.output
    short_key = run_verify(trail, env={**ENV, "PATCHBAY_AUDIT_KEY": "short"})
    assert short_key.exit_code == 2
    assert "PATCHBAY_AUDIT_KEY" in short_key.output and "at least 16 bytes" in short_key.output
    assert "short" not in short_key.output.replace("shorter", "")


def _recorded_by_the_server(tmp_path: Path, events: int, every: int) -> tuple[Trail, Path]:
    """``events`` sign-in events written by the server's AuditRecorder (opened, then closed as at shutdown) to a
    store whose checkpoints come every ``every`` records; the trail and its checkpoint file."""
    from patchbay.gate.audit import AuditRecorder

    (tmp_path / "patchbay.toml").write_text(
        f'[store]\nurl = "sqlite:///audit.db"\n[audit]\ncheckpoint_every = {every}\ncheckpoint_log = false\n'
    )
    settings = settings_mod.load(tmp_path / "patchbay.toml", env={})
    checkpointer = audit_chain.checkpointer(settings, {"PATCHBAY_AUDIT_KEY": KEY})
    engine = create_engine(settings.store_url)

    async def record_events() -> None:
        recorder = AuditRecorder(engine, settings.audit, checkpointer=checkpointer)
        await recorder.open()
        for i in range(events):
            recorder.event("auth.sign_in", subject=f"user:u{i}", outcome="ok")
        await recorder.aclose()

    asyncio.run(record_events())
    path = audit_chain.checkpoint_path(settings.audit, settings.store_url, settings.base_dir)
    assert path is not None
    return Trail(settings, tmp_path / "audit.db", path, []), path


def test_a_trail_written_by_the_server_recorder_verifies_and_its_cut_tail_is_caught(tmp_path: Path) -> None:
    trail, _ = _recorded_by_the_server(tmp_path, events=10, every=3)
    report = trail.verify()
    assert report.intact, report.findings
    assert (report.records, report.last_seq) == (10, 10)
    trail.sql("DELETE FROM audit_records WHERE seq = 10")
    trail.sql("UPDATE audit_chain_head SET seq = 9, hash = (SELECT hash FROM audit_records WHERE seq = 9)")
    assert problems(trail.verify()) == {("truncated", 10)}


def test_closing_the_server_recorder_checkpoints_the_records_since_the_last_checkpoint(tmp_path: Path) -> None:
    # Far fewer records than checkpoint_every: only closing the recorder writes a checkpoint.
    trail, path = _recorded_by_the_server(tmp_path, events=2, every=1000)
    assert [c["seq"] for _, c in read_checkpoints(path.read_text().splitlines())] == [2]
    trail.sql("DELETE FROM audit_records WHERE seq = 2")
    trail.sql("UPDATE audit_chain_head SET seq = 1, hash = (SELECT hash FROM audit_records WHERE seq = 1)")
    assert problems(trail.verify()) == {("truncated", 2)}


# -- what each finding says, and the edges of each check ----------------------------------------------------------


def details(report: Report) -> list[tuple[str, int | None, str]]:
    return [(f.problem, f.seq, f.detail) for f in report.findings]


def test_each_finding_says_what_happened_in_words(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET body = replace(body, '\"i\":2', '\"i\":20') WHERE seq = 2")
    trail.sql("UPDATE audit_records SET outcome = 'ok' WHERE seq = 3")
    trail.sql(
        "UPDATE audit_records SET body = 'wiped', hash = ? WHERE seq = 4",
        audit_chain.link(trail.heads[2][1], 4, "wiped"),
    )
    trail.sql("DELETE FROM audit_records WHERE seq IN (6, 7)")
    assert details(trail.verify()) == [
        ("edited", 2, "seq 2: the hash does not match the record: it was edited"),
        ("column_edited", 3, "seq 3: column outcome disagrees with the record's body"),
        ("bad_body", 4, "seq 4: the body is not a JSON audit record"),
        ("chain_broken", 5, "seq 5: prev_hash is not the hash of record 4: a record was inserted or replaced"),
        ("missing", 8, "seqs 6..7 missing before seq 8: records were deleted"),
    ]


def test_one_missing_record_is_named_alone(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq = 7")
    assert details(trail.verify()) == [("missing", 8, "seq 7 missing before seq 8: records were deleted")]


def test_a_replaced_prev_hash_is_a_broken_chain_there_and_after(trail: Trail) -> None:
    # A prev_hash that is not even hex: the record cannot be re-hashed, so it is reported edited too.
    trail.sql("UPDATE audit_records SET prev_hash = 'not a hash', hash = '' WHERE seq = 4")
    assert details(trail.verify()) == [
        ("chain_broken", 4, "seq 4: prev_hash is not the hash of record 3: a record was inserted or replaced"),
        ("edited", 4, "seq 4: the hash does not match the record: it was edited"),
        ("chain_broken", 5, "seq 5: prev_hash is not the hash of record 4: a record was inserted or replaced"),
    ]


def test_a_column_wiped_to_null_is_reported(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET subject = NULL WHERE seq = 6")
    assert details(trail.verify()) == [("column_edited", 6, "seq 6: column subject disagrees with the record's body")]


def test_a_rewritten_chain_names_the_checkpoint_line_and_both_hashes(trail: Trail) -> None:
    trail.sql("UPDATE audit_records SET hash = ? WHERE seq = 5", "cd" * 32)
    report = trail.verify()
    assert (
        "checkpoint_mismatch",
        5,
        f"checkpoint line 1 holds hash {trail.heads[4][1][:16]}… for seq 5, the store cdcdcdcdcdcdcdcd…: "
        "the chain up to here was rewritten",
    ) in details(report)


def test_a_cut_tail_is_reported_at_the_furthest_checkpoint_beyond_it(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq > 3")
    assert details(trail.verify()) == [
        (
            "truncated",
            10,
            "checkpoint line 2 covers seq 10, but the trail ends at seq 3: records were cut off the end",
        ),
        ("head_mismatch", 10, "the chain head says seq 10, the last record is seq 3: records were cut off the end"),
    ]


def test_an_emptied_trail_ends_at_seq_0(trail: Trail) -> None:
    trail.sql("DELETE FROM audit_records")
    report = trail.verify()
    assert (report.records, report.first_seq, report.last_seq, report.last_hash) == (0, None, None, None)
    assert details(report) == [
        ("truncated", 10, "checkpoint line 2 covers seq 10, but the trail ends at seq 0: records were cut off the end"),
        ("head_mismatch", 10, "the chain head says seq 10, the last record is seq 0: records were cut off the end"),
    ]


def test_a_head_behind_the_last_record_means_records_were_added_outside_the_writer(trail: Trail) -> None:
    trail.sql("UPDATE audit_chain_head SET seq = 8")
    assert details(trail.verify()) == [
        (
            "head_mismatch",
            8,
            "the chain head says seq 8, the last record is seq 10: records were added outside the audit writer",
        )
    ]


def test_each_bad_signature_says_why_and_the_good_checkpoints_after_it_still_count(trail: Trail) -> None:
    lines = trail.checkpoints.read_text().splitlines()
    other_key = audit_chain.checkpoint_body(3, trail.heads[2][1], 3, 1_000_003.1, b"another key of 16+ bytes")
    unsigned = audit_chain.checkpoint_body(4, trail.heads[3][1], 4, 1_000_004.1, None)
    altered = {**json.loads(lines[0]), "count": 1}
    trail.checkpoints.write_text(
        "".join(json.dumps(c) + "\n" for c in (other_key, unsigned, altered))
        + "not json patchbay.audit.checkpoint\n"
        + "\n".join(lines)
        + "\n"
    )
    report = trail.verify()
    assert details(report) == [
        (
            "bad_signature",
            3,
            f"checkpoint line 1 was signed with key {audit_chain.key_id(b'another key of 16+ bytes')}, not the "
            f"configured key {audit_chain.key_id(KEY.encode())}",
        ),
        (
            "bad_signature",
            4,
            "checkpoint line 2 is unsigned, but a key is configured: it was not written by this server",
        ),
        (
            "bad_signature",
            5,
            "checkpoint line 3: the signature does not match its content (the checkpoint was altered)",
        ),
        ("bad_checkpoint", None, "checkpoint line 4: not a checkpoint object"),
    ]
    assert report.checkpoints == 5
    assert report.notes == [
        "1 checkpoint(s) are unsigned: whoever can write the checkpoint file could have forged them"
    ]
    trail.sql("DELETE FROM audit_records WHERE seq > 7")
    assert ("truncated", 10) in problems(trail.verify())  # the good checkpoints after the bad ones are used


def test_the_notes_count_unchecked_and_unsigned_checkpoints(trail: Trail) -> None:
    assert trail.verify().notes == []
    assert trail.verify(key=None).notes == [
        "2 signed checkpoint(s) not checked: no key configured ([audit] checkpoint_key_env)"
    ]
    # Every checkpoint failing its signature is reported as that, not as "no checkpoints given".
    assert trail.verify(key="another key, 32 bytes long......").notes == []
    unsigned = [audit_chain.checkpoint_body(seq, head, 5, 1_000_000.0 + seq, None) for seq, head in trail.heads[4::5]]
    trail.checkpoints.write_text("".join(json.dumps(c) + "\n" for c in unsigned))
    assert trail.verify(key=None).notes == [
        "2 checkpoint(s) are unsigned: whoever can write the checkpoint file could have forged them"
    ]


def test_without_checkpoints_verify_says_a_cut_tail_goes_unseen_whatever_else_it_finds(trail: Trail) -> None:
    trail.checkpoints.unlink()
    note = "no checkpoints given: records cut off the end of the trail cannot be detected"
    assert trail.verify().notes == [note]
    trail.sql("UPDATE audit_records SET body = replace(body, '\"i\":4', '\"i\":40') WHERE seq = 4")
    report = trail.verify()
    assert problems(report) == {("edited", 4)}
    assert report.notes == [note]


def test_the_json_report_has_every_documented_field(tmp_path: Path) -> None:
    trail = write_trail(tmp_path, 12, every=4)
    now = 1_000_009.5 + DAY
    engine = create_engine(trail.settings.store_url)
    try:
        prune(engine, 1, checkpoints=trail.checkpoints, key=KEY.encode(), now=now)
    finally:
        engine.dispose()
    trail.sql("UPDATE audit_records SET name = 'renamed' WHERE seq = 10")
    assert trail.verify(keep_days=1, now=now).as_dict() == {
        "intact": False,
        "records": 4,
        "first_seq": 9,
        "last_seq": 12,
        "last_hash": trail.heads[11][1],
        "anchor": {"seq": 8, "hash": trail.heads[7][1]},
        "checkpoints": 3,
        "findings": [
            {"problem": "column_edited", "seq": 10, "detail": "seq 10: column name disagrees with the record's body"}
        ],
        "notes": [],
    }


def _anchor_at(trail: Trail, seq: int, head: str) -> None:
    trail.sql("DELETE FROM audit_records WHERE seq <= ?", seq)
    trail.sql("INSERT INTO audit_anchor (id, seq, hash, cutoff, pruned_at) VALUES (1, ?, ?, 0, 0)", seq, head)


def test_an_anchor_at_a_checkpoints_seq_but_not_its_hash_is_unconfirmed(trail: Trail) -> None:
    _anchor_at(trail, 5, "ef" * 32)
    assert details(trail.verify()) == [
        ("chain_broken", 6, "seq 6: prev_hash is not the hash of record 5: a record was inserted or replaced"),
        (
            "anchor_unconfirmed",
            5,
            "records up to seq 5 were removed, but no checkpoint confirms that point: they were deleted by something "
            "other than retention pruning",
        ),
    ]


def test_an_anchor_checkpoint_is_judged_against_keep_days_to_the_second(trail: Trail) -> None:
    _anchor_at(trail, 5, trail.heads[4][1])
    # The checkpoint at seq 5, written at a time binary floating point holds exactly, so "now - keep_days" can
    # equal it to the last bit.
    written = 1_000_005.5
    checkpoint = audit_chain.checkpoint_body(5, trail.heads[4][1], 5, written, KEY.encode())
    trail.checkpoints.write_text(json.dumps(checkpoint) + "\n")
    assert details(trail.verify(keep_days=1, now=written + DAY - 1)) == [
        (
            "pruned_early",
            5,
            "records up to seq 5 were removed, but their checkpoint is younger than keep_days (1): they were deleted "
            "before their retention ended",
        )
    ]
    assert trail.verify(keep_days=1, now=written + DAY).intact
    # keep_days = 0 keeps records forever: an anchor is never early, even by a clock that is behind.
    assert trail.verify(keep_days=0, now=written - 100).intact


def test_verify_judges_the_anchor_by_the_clock_and_keeps_forever_by_default(tmp_path: Path) -> None:
    trail = write_trail(tmp_path, start=time.time())
    _anchor_at(trail, 5, trail.heads[4][1])
    engine = create_engine(trail.settings.store_url)
    try:
        lines = trail.checkpoints.read_text().splitlines()
        assert verify(engine, read_checkpoints(lines), key=KEY.encode()).intact
        assert problems(verify(engine, read_checkpoints(lines), key=KEY.encode(), keep_days=1)) == {("pruned_early", 5)}
    finally:
        engine.dispose()


def test_an_unsigned_anchor_checkpoint_without_a_time_counts_as_written_now(trail: Trail) -> None:
    _anchor_at(trail, 5, trail.heads[4][1])
    checkpoint = {k: v for k, v in audit_chain.checkpoint_body(5, trail.heads[4][1], 5, 0.0, None).items() if k != "ts"}
    trail.checkpoints.write_text(json.dumps(checkpoint) + "\n")
    assert problems(trail.verify(key=None, keep_days=1, now=2_000_000.0)) == {("pruned_early", 5)}


def test_verify_reads_the_trail_a_page_at_a_time(trail: Trail, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import event

    monkeypatch.setattr(audit_verify, "PAGE", 4)
    engine = create_engine(trail.settings.store_url)
    pages: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM audit_records" in statement:
            pages.append(statement)

    event.listen(engine, "before_cursor_execute", count)
    try:
        lines = trail.checkpoints.read_text().splitlines()
        report = verify(engine, read_checkpoints(lines), key=KEY.encode())
    finally:
        engine.dispose()
    assert report.intact, report.findings
    assert (report.records, report.first_seq, report.last_seq) == (10, 1, 10)
    assert len(pages) == 4  # 4 + 4 + 2 records, then an empty page
