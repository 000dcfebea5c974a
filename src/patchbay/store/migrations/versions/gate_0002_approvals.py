"""gate: human approvals of held tool calls

Revision ID: gate_0002
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gate_0002"
down_revision: str | Sequence[str] | None = None
# Its own branch: `upgrade(engine, "gate_approvals@head")` migrates only this table.
branch_labels: str | Sequence[str] | None = ("gate_approvals",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_approvals",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("subject", sa.String(1024), nullable=False),
        sa.Column("username", sa.String(200), nullable=True),
        sa.Column("client_id", sa.String(2048), nullable=False),
        sa.Column("client_name", sa.String(200), nullable=True),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("tool_digest", sa.String(64), nullable=False),
        sa.Column("args_digest", sa.String(64), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approved_by", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(200), nullable=True),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("expires_at", sa.Double(), nullable=False),
        sa.Column("decided_at", sa.Double(), nullable=True),
        sa.Column("used_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gate_approvals")),
    )
    op.create_index("ix_gate_approvals_call", "gate_approvals", ["subject", "tool", "args_digest"])


def downgrade() -> None:
    op.drop_index("ix_gate_approvals_call", table_name="gate_approvals")
    op.drop_table("gate_approvals")
