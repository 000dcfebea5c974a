"""The store's tables as SQLAlchemy 2.0 typed declarative models, all on one ``Base``.

Each feature owns a group of tables whose names start with its own prefix (``kanban_``, later ``auth_``,
``audit_`` …), so the store can share a database with other software, and its schema changes live on its own
Alembic branch (see ``patchbay.store.migrate``). Adding a feature: add its models here (or in a sibling
module imported below), then a migration under ``migrations/versions`` with a new ``branch_labels``.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, ForeignKey, Index, MetaData, String, Text, UniqueConstraint, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names, so later migrations can drop or alter them on every backend (SQLite batch
# mode needs names to find them).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Timestamps:
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now, server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=_now, onupdate=_now, server_default=func.now()
    )


# -- kanban (the demo connector) -------------------------------------------------------------------------------


class KanbanBoard(Timestamps, Base):
    __tablename__ = "kanban_boards"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    columns: Mapped[list[KanbanColumn]] = relationship(
        back_populates="board", order_by="KanbanColumn.position", cascade="all, delete-orphan"
    )


class KanbanColumn(Base):
    __tablename__ = "kanban_columns"
    __table_args__ = (UniqueConstraint("board_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    board_id: Mapped[int] = mapped_column(ForeignKey("kanban_boards.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    position: Mapped[int]
    board: Mapped[KanbanBoard] = relationship(back_populates="columns")


class KanbanCard(Timestamps, Base):
    __tablename__ = "kanban_cards"
    __table_args__ = (Index("ix_kanban_cards_column_position", "column_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    column_id: Mapped[int] = mapped_column(ForeignKey("kanban_columns.id", ondelete="CASCADE"))
    # 0-based order within the column; kept contiguous by every write.
    position: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    assignee: Mapped[str | None] = mapped_column(String(100))
    due_date: Mapped[dt.date | None]
    column: Mapped[KanbanColumn] = relationship()
    labels: Mapped[list[KanbanCardLabel]] = relationship(
        order_by="KanbanCardLabel.label", cascade="all, delete-orphan", lazy="selectin"
    )


class KanbanCardLabel(Base):
    """One label on one card: a table rather than a JSON list so filtering by label is plain, indexed SQL."""

    __tablename__ = "kanban_card_labels"

    card_id: Mapped[int] = mapped_column(ForeignKey("kanban_cards.id", ondelete="CASCADE"), primary_key=True)
    label: Mapped[str] = mapped_column(String(50), primary_key=True, index=True)
