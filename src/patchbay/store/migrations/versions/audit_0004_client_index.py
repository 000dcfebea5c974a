"""audit: an index on each record's client, and on PostgreSQL seq at the end of every (column, ts) index

Revision ID: audit_0004
Revises: audit_0003
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "audit_0004"
down_revision: str | Sequence[str] | None = "audit_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The console reads a page of records newest first, ORDER BY ts DESC, seq DESC (patchbay.console.audit_data).
# SQLite's index entries end with the rowid, which is seq, so (column, ts) already gives that order. PostgreSQL's
# do not: without seq in the index its planner prefers walking ix_audit_records_ts and filtering, which reads the
# whole trail for a rare person, tool or client.
_REBUILT = (
    ("ix_audit_records_ts", ["ts"]),
    ("ix_audit_records_subject_ts", ["subject", "ts"]),
    ("ix_audit_records_name_ts", ["name", "ts"]),
    ("ix_audit_records_outcome_ts", ["outcome", "ts"]),
)


def upgrade() -> None:
    op.create_index("ix_audit_records_client_ts", "audit_records", ["client_id", "ts", "seq"])
    if op.get_bind().dialect.name == "postgresql":
        for name, columns in _REBUILT:
            op.drop_index(name, table_name="audit_records")
            op.create_index(name, "audit_records", [*columns, "seq"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name, columns in _REBUILT:
            op.drop_index(name, table_name="audit_records")
            op.create_index(name, "audit_records", columns)
    op.drop_index("ix_audit_records_client_ts", table_name="audit_records")
