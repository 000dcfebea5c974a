"""audit: an index on each record's client, so the console's audit filter by client reads an index range

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


def upgrade() -> None:
    # (client_id, ts) like the other filters' indexes: a page of one client's records, newest first, is a walk of
    # one index range, whatever the size of the trail (patchbay.console.audit_data).
    op.create_index("ix_audit_records_client_ts", "audit_records", ["client_id", "ts"])


def downgrade() -> None:
    op.drop_index("ix_audit_records_client_ts", table_name="audit_records")
