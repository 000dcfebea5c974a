"""``audit verify``: recompute the audit chain and hold it against the checkpoints written outside the store.

What each check catches (docs/audit.md, "Tamper evidence"):

- a record's ``hash`` is not ``link(prev_hash, seq, body)``: the record was edited (its body, seq or prev_hash);
- an indexed column disagrees with the body: the column was edited (search would lie);
- a gap in ``seq``, or a ``prev_hash`` that is not the previous record's hash: records were deleted or inserted;
- a checkpoint whose ``seq`` is beyond the last record, or whose hash differs from the record at its ``seq``: the
  tail was cut off, or the chain was rewritten and re-hashed after the checkpoint was written;
- a checkpoint whose signature does not verify under the configured key: the checkpoint was forged, or signed
  with another key;
- a retention anchor that matches no checkpoint, or one younger than ``keep_days``: records were deleted by
  something other than the pruner.

The records are read in ``seq`` order, a page at a time (constant memory); only the checkpoints are held.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Engine, select

from patchbay.gate.audit_chain import GENESIS, key_id, link, signature_ok
from patchbay.gate.audit_models import AuditChainHead, AuditRecord
from patchbay.gate.audit_retention import DAY, Anchor, read_anchor
from patchbay.gate.audit_store import INDEXED, columns_of

__all__ = ["Finding", "Problem", "Report", "verify"]

Problem = Literal[
    "edited",
    "column_edited",
    "bad_body",
    "missing",
    "chain_broken",
    "truncated",
    "checkpoint_mismatch",
    "bad_signature",
    "bad_checkpoint",
    "head_mismatch",
    "anchor_unconfirmed",
    "pruned_early",
]
PAGE = 1000
Checkpoint = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Finding:
    """One sign of tampering: what, at which ``seq`` (None when not tied to a record), and a sentence for people."""

    problem: Problem
    seq: int | None
    detail: str


@dataclass(slots=True)
class Report:
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str | None = None
    anchor: Anchor | None = None
    checkpoints: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def intact(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict[str, Any]:
        return {
            "intact": self.intact,
            "records": self.records,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "anchor": None if self.anchor is None else {"seq": self.anchor.seq, "hash": self.anchor.hash},
            "checkpoints": self.checkpoints,
            "findings": [{"problem": f.problem, "seq": f.seq, "detail": f.detail} for f in self.findings],
            "notes": self.notes,
        }


def verify(
    engine: Engine,
    checkpoints: Iterable[tuple[int, Checkpoint | str]] = (),
    *,
    key: bytes | None = None,
    keep_days: int = 0,
    now: float | None = None,
) -> Report:
    """Check the whole kept chain in ``engine`` against ``checkpoints`` (from ``read_checkpoints``).

    With ``key``, every checkpoint must carry a valid signature under it; a checkpoint that does not is reported
    and not used as evidence. ``keep_days`` (0: keep forever) is used to judge the retention anchor.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: the store cannot be read.
    """
    report = Report(anchor=read_anchor(engine))
    trusted = _trusted(checkpoints, key, report)
    by_seq: dict[int, list[Checkpoint]] = {}
    for checkpoint in trusted:
        by_seq.setdefault(checkpoint["seq"], []).append(checkpoint)
    _walk(engine, report, by_seq)
    _check_tail(engine, report, trusted)
    _check_anchor(report, trusted, keep_days, time.time() if now is None else now)
    if not trusted and not any(f.problem == "bad_signature" for f in report.findings):
        report.notes.append("no checkpoints given: records cut off the end of the trail cannot be detected")
    return report


def _trusted(
    checkpoints: Iterable[tuple[int, Checkpoint | str]], key: bytes | None, report: Report
) -> list[Checkpoint]:
    trusted: list[Checkpoint] = []
    unsigned = signed = 0
    for line, checkpoint in checkpoints:
        if isinstance(checkpoint, str):
            report.findings.append(Finding("bad_checkpoint", None, f"checkpoint line {line}: {checkpoint}"))
            continue
        report.checkpoints += 1
        if checkpoint.get("sig") is None:
            unsigned += 1
        else:
            signed += 1
        if key is not None and not signature_ok(checkpoint, key):
            report.findings.append(Finding("bad_signature", checkpoint["seq"], _bad_signature(checkpoint, line, key)))
            continue
        trusted.append({**checkpoint, "line": line})
    if key is None and signed:
        report.notes.append(
            f"{signed} signed checkpoint(s) not checked: no key configured ([audit] checkpoint_key_env)"
        )
    if unsigned:
        report.notes.append(
            f"{unsigned} checkpoint(s) are unsigned: whoever can write the checkpoint file could have forged them"
        )
    return trusted


def _bad_signature(checkpoint: Checkpoint, line: int, key: bytes) -> str:
    written = checkpoint.get("key_id")
    if checkpoint.get("sig") is None:
        return f"checkpoint line {line} is unsigned, but a key is configured: it was not written by this server"
    if written != key_id(key):
        return f"checkpoint line {line} was signed with key {written}, not the configured key {key_id(key)}"
    return f"checkpoint line {line}: the signature does not match its content (the checkpoint was altered)"


def _rows(engine: Engine, after: int) -> Iterator[Any]:
    """Every record with ``seq > after``, in order, a page per short read."""
    query = select(AuditRecord).order_by(AuditRecord.seq).limit(PAGE)
    while True:
        with engine.connect() as connection:
            page = list(connection.execute(query.where(AuditRecord.seq > after)).all())
        if not page:
            return
        yield from page
        after = page[-1].seq


def _walk(engine: Engine, report: Report, by_seq: dict[int, list[Checkpoint]]) -> None:
    anchor = report.anchor
    expected = anchor.seq + 1 if anchor is not None else 1
    prev = anchor.hash if anchor is not None else GENESIS
    for row in _rows(engine, anchor.seq if anchor is not None else 0):
        if report.first_seq is None:
            report.first_seq = row.seq
        report.records += 1
        _check_link(report, row, expected, prev)
        _check_columns(report, row)
        for checkpoint in by_seq.get(row.seq, ()):
            if checkpoint["hash"] != row.hash:
                report.findings.append(
                    Finding(
                        "checkpoint_mismatch",
                        row.seq,
                        f"checkpoint line {checkpoint['line']} holds hash {checkpoint['hash'][:16]}… for seq "
                        f"{row.seq}, the store {row.hash[:16]}…: the chain up to here was rewritten",
                    )
                )
        # Go on from what is stored, so one edit is reported once rather than at every later record.
        expected, prev = row.seq + 1, row.hash
    report.last_seq, report.last_hash = (expected - 1, prev) if report.records else (None, None)


def _check_link(report: Report, row: Any, expected: int, prev: str) -> None:
    seq = row.seq
    if seq != expected:
        gap = f"seq {expected}" if seq == expected + 1 else f"seqs {expected}..{seq - 1}"
        report.findings.append(Finding("missing", seq, f"{gap} missing before seq {seq}: records were deleted"))
    elif row.prev_hash != prev:
        report.findings.append(
            Finding(
                "chain_broken",
                seq,
                f"seq {seq}: prev_hash is not the hash of record {seq - 1}: a record was inserted or replaced",
            )
        )
    try:
        recomputed = link(row.prev_hash, seq, row.body)
    except ValueError:
        recomputed = None
    if recomputed != row.hash:
        report.findings.append(Finding("edited", seq, f"seq {seq}: the hash does not match the record: it was edited"))


def _check_columns(report: Report, row: Any) -> None:
    # The body's canonical form is not re-derived here: RFC 8785 in Python costs ~100 µs a record, and a body that
    # hashes correctly but is not canonical can only come from someone re-hashing the chain, which the checkpoints
    # catch. `audit_chain.is_canonical` is there for a deeper, slower audit.
    seq = row.seq
    try:
        expected = columns_of(json.loads(row.body))
    except (KeyError, TypeError, ValueError, AttributeError):
        report.findings.append(Finding("bad_body", seq, f"seq {seq}: the body is not a JSON audit record"))
        return
    for column in INDEXED:
        stored = getattr(row, column)
        if column == "duration_ms" and stored is None:
            continue  # written before audit_0005, which adds the column without back-filling it
        if stored != expected[column]:
            report.findings.append(
                Finding("column_edited", seq, f"seq {seq}: column {column} disagrees with the record's body")
            )


def _check_tail(engine: Engine, report: Report, trusted: list[Checkpoint]) -> None:
    last = report.last_seq if report.last_seq is not None else (report.anchor.seq if report.anchor else 0)
    beyond = [c for c in trusted if c["seq"] > last]
    if beyond:
        furthest = max(beyond, key=lambda c: c["seq"])
        report.findings.append(
            Finding(
                "truncated",
                furthest["seq"],
                f"checkpoint line {furthest['line']} covers seq {furthest['seq']}, but the trail ends at seq {last}: "
                "records were cut off the end",
            )
        )
    with engine.connect() as connection:
        head = connection.execute(select(AuditChainHead.seq).where(AuditChainHead.id == 1)).scalar()
    if head is not None and head != last:
        what = "records were cut off the end" if head > last else "records were added outside the audit writer"
        report.findings.append(
            Finding("head_mismatch", head, f"the chain head says seq {head}, the last record is seq {last}: {what}")
        )


def _check_anchor(report: Report, trusted: list[Checkpoint], keep_days: int, now: float) -> None:
    anchor = report.anchor
    if anchor is None or not trusted:
        return
    matching = [c for c in trusted if c["seq"] == anchor.seq and c["hash"] == anchor.hash]
    if not matching:
        report.findings.append(
            Finding(
                "anchor_unconfirmed",
                anchor.seq,
                f"records up to seq {anchor.seq} were removed, but no checkpoint confirms that point: "
                "they were deleted by something other than retention pruning",
            )
        )
        return
    written = min(float(c.get("ts", now)) for c in matching)
    if keep_days > 0 and written > now - keep_days * DAY:
        report.findings.append(
            Finding(
                "pruned_early",
                anchor.seq,
                f"records up to seq {anchor.seq} were removed, but their checkpoint is younger than keep_days "
                f"({keep_days}): they were deleted before their retention ended",
            )
        )
