"""audit: each call record's duration in milliseconds, as a column copied from the body's latency_ms

Revision ID: audit_0005
Revises: audit_0004
Create Date: 2026-12-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "audit_0005"
down_revision: str | Sequence[str] | None = "audit_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The console's Overview averages latency per minute (patchbay.console.traffic); reading it out of each
    # record's JSON body cost a parse per call. Nullable and not back-filled, so the upgrade is instant on a trail
    # of any size: records written before it keep NULL (their calls still count, their latency does not), and
    # audit verify accepts NULL there (the chain covers the body, which keeps latency_ms).
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("duration_ms", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("duration_ms")
