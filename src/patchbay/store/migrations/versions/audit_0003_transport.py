"""audit: the transport of each call record, as an indexed copy of the body's field

Revision ID: audit_0003
Revises: audit_0002
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "audit_0003"
down_revision: str | Sequence[str] | None = "audit_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and not back-filled: the bodies of records written before this revision have no transport field,
    # and the chain covers the bodies, so their copy stays NULL (audit verify holds columns against bodies).
    with op.batch_alter_table("audit_records") as batch:
        batch.add_column(sa.Column("transport", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_records") as batch:
        batch.drop_column("transport")
