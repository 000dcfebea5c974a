"""gate: the reviewed tool manifest (approved versions, their entries, proposed changes)

Revision ID: gate_0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "gate_0001"
down_revision: str | Sequence[str] | None = None
# Its own branch: `upgrade(engine, "gate_manifest@head")` migrates only these tables.
branch_labels: str | Sequence[str] | None = ("gate_manifest",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "gate_manifest_versions",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=False),
        sa.Column("approved_at", sa.Double(), nullable=False),
        sa.Column("mode", sa.String(length=20), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_gate_manifest_versions")),
    )
    op.create_table(
        "gate_manifest_entries",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("connector", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["version"],
            ["gate_manifest_versions.version"],
            name=op.f("fk_gate_manifest_entries_version_gate_manifest_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version", "kind", "name", name=op.f("pk_gate_manifest_entries")),
    )
    op.create_table(
        "gate_manifest_proposed",
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("connector", sa.String(length=100), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("definition", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("observed_at", sa.Double(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("kind", "name", name=op.f("pk_gate_manifest_proposed")),
    )


def downgrade() -> None:
    op.drop_table("gate_manifest_proposed")
    op.drop_table("gate_manifest_entries")
    op.drop_table("gate_manifest_versions")
