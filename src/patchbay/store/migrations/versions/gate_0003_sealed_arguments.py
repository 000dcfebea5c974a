"""gate: held calls' arguments sealed with the vault, and what an approver is shown

Revision ID: gate_0003
Revises: gate_0002
Create Date: 2026-12-07

Rows held before this revision keep their arguments in clear (``sealed`` false) and stay readable: they expire
within ``[approvals] ttl_seconds``. New rows store the arguments sealed (``patchbay.vault``, context
``approval:<id>``), and beside them the redacted arguments an approver is shown and how many fields that hides.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gate_0003"
down_revision: str | Sequence[str] | None = "gate_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("gate_approvals") as table:
        table.add_column(sa.Column("sealed", sa.Boolean(), nullable=False, server_default=sa.false()))
        table.add_column(sa.Column("shown", sa.Text(), nullable=True))
        table.add_column(sa.Column("hidden", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("gate_approvals") as table:
        table.drop_column("hidden")
        table.drop_column("shown")
        table.drop_column("sealed")
