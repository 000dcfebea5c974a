"""The audit trail's tables (migrations ``audit_0001`` to ``audit_0005``, branch ``audit``).

``audit_records`` holds one row per recorded call or event. ``seq`` is assigned in order by the one writer inside
its write transaction; ``body`` is the full record as canonical JSON text, which the hash chain covers
(``hash = patchbay.gate.audit_chain.link(prev_hash, seq, body)``). The other columns are copies of fields of
``body`` kept for indexed search; verification checks that they agree with it.

``audit_chain_head`` is one row (id 1) naming the last ``seq`` and ``hash``: a writer locks it (``SELECT ... FOR
UPDATE`` on PostgreSQL; SQLite's write lock does the same) so that two processes (the server and a CLI) never hand
out the same ``seq`` or fork the chain.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from patchbay.store.models import Base

# Length bounds of the indexed copies; `body` holds the full values.
NAME_LENGTH = 1024
SUBJECT_LENGTH = 1024
CLIENT_ID_LENGTH = 2048


class AuditRecord(Base):
    __tablename__ = "audit_records"
    __table_args__ = (
        Index("ix_audit_records_ts", "ts"),
        Index("ix_audit_records_subject_ts", "subject", "ts"),
        Index("ix_audit_records_name_ts", "name", "ts"),
        Index("ix_audit_records_outcome_ts", "outcome", "ts"),
        Index("ix_audit_records_client_ts", "client_id", "ts", "seq"),  # audit_0004 (seq: see there)
    )

    # INTEGER on SQLite so the key is the rowid (no second index); never auto-assigned: the writer assigns it.
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    ts: Mapped[float]
    kind: Mapped[str] = mapped_column(String(10))  # "call" | "event"
    request_ref: Mapped[str | None] = mapped_column(String(64))
    # tools/call | resources/read | prompts/get, or the event name ("auth.sign_in", "manifest.approve" ...).
    method: Mapped[str] = mapped_column(String(100))
    name: Mapped[str | None] = mapped_column(String(NAME_LENGTH))
    subject: Mapped[str | None] = mapped_column(String(SUBJECT_LENGTH))
    client_id: Mapped[str | None] = mapped_column(String(CLIENT_ID_LENGTH))
    client_name: Mapped[str | None] = mapped_column(String(200))
    outcome: Mapped[str | None] = mapped_column(String(20))
    # streamable_http | legacy_sse | stdio | in_process (audit_0003); NULL for events and for records written
    # before it, whose bodies have no transport field.
    transport: Mapped[str | None] = mapped_column(String(20))
    # A call's final record: the body's latency_ms (audit_0005); NULL for intents, events and records written
    # before it.
    duration_ms: Mapped[float | None] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditChainHead(Base):
    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger, default=0)
    hash: Mapped[str] = mapped_column(String(64), default="")
