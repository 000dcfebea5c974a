"""kanban: boards, columns, cards and card labels

Revision ID: kanban_0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "kanban_0001"
down_revision: str | Sequence[str] | None = None
# The root of the kanban branch: `upgrade(engine, "kanban@head")` migrates only these tables.
branch_labels: str | Sequence[str] | None = ("kanban",)
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "kanban_boards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kanban_boards")),
    )
    op.create_table(
        "kanban_columns",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("board_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["board_id"],
            ["kanban_boards.id"],
            name=op.f("fk_kanban_columns_board_id_kanban_boards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kanban_columns")),
        sa.UniqueConstraint("board_id", "name", name=op.f("uq_kanban_columns_board_id")),
    )
    op.create_table(
        "kanban_cards",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("column_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("assignee", sa.String(100), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=True),
        *_timestamps(),
        sa.ForeignKeyConstraint(
            ["column_id"],
            ["kanban_columns.id"],
            name=op.f("fk_kanban_cards_column_id_kanban_columns"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_kanban_cards")),
    )
    op.create_index("ix_kanban_cards_column_position", "kanban_cards", ["column_id", "position"])
    op.create_table(
        "kanban_card_labels",
        sa.Column("card_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.ForeignKeyConstraint(
            ["card_id"],
            ["kanban_cards.id"],
            name=op.f("fk_kanban_card_labels_card_id_kanban_cards"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("card_id", "label", name=op.f("pk_kanban_card_labels")),
    )
    op.create_index(op.f("ix_kanban_card_labels_label"), "kanban_card_labels", ["label"])


def downgrade() -> None:
    op.drop_table("kanban_card_labels")
    op.drop_table("kanban_cards")
    op.drop_table("kanban_columns")
    op.drop_table("kanban_boards")
