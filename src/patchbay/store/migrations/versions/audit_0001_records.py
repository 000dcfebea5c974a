"""audit: the audit trail (records, hash chain head)

Revision ID: audit_0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "audit_0001"
down_revision: str | Sequence[str] | None = None
# Its own branch: `upgrade(engine, "audit@head")` migrates only these tables.
branch_labels: str | Sequence[str] | None = ("audit",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=False, nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("request_ref", sa.String(64), nullable=True),
        sa.Column("method", sa.String(100), nullable=False),
        sa.Column("name", sa.String(1024), nullable=True),
        sa.Column("subject", sa.String(1024), nullable=True),
        sa.Column("client_id", sa.String(2048), nullable=True),
        sa.Column("client_name", sa.String(200), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_records")),
    )
    op.create_index("ix_audit_records_ts", "audit_records", ["ts"])
    op.create_index("ix_audit_records_subject_ts", "audit_records", ["subject", "ts"])
    op.create_index("ix_audit_records_name_ts", "audit_records", ["name", "ts"])
    op.create_index("ix_audit_records_outcome_ts", "audit_records", ["outcome", "ts"])
    head = op.create_table(
        "audit_chain_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_chain_head")),
    )
    # The one row every writer locks; an empty chain's head is seq 0 and the genesis hash (audit_chain.GENESIS).
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": "0" * 64}])


def downgrade() -> None:
    op.drop_table("audit_chain_head")
    op.drop_index("ix_audit_records_outcome_ts", table_name="audit_records")
    op.drop_index("ix_audit_records_name_ts", table_name="audit_records")
    op.drop_index("ix_audit_records_subject_ts", table_name="audit_records")
    op.drop_index("ix_audit_records_ts", table_name="audit_records")
    op.drop_table("audit_records")
