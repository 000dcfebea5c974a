"""The frequent kanban reads, listing and getting cards, in SQLAlchemy Core on one connection.

Through the ORM these cost milliseconds of CPU each (identity map, eager loaders, instance state), and that CPU
holds the interpreter lock that the store's one writer thread and the event loop wait for. In Core they are a
few cached statements and plain rows. The tables and the board and column lookups are shared with
``kanban.writes``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, bindparam, exists, func, select

from patchbay.connectors.kanban import schemas
from patchbay.errors import ToolError
from patchbay.store.models import KanbanBoard, KanbanCard, KanbanCardLabel, KanbanColumn

BOARDS = cast(Table, KanbanBoard.__table__)
COLUMNS = cast(Table, KanbanColumn.__table__)
CARDS = cast(Table, KanbanCard.__table__)
LABELS = cast(Table, KanbanCardLabel.__table__)

# A board's name and its columns in order; one row with no column when the board has none, none when no board.
_BOARD_COLUMNS = (
    select(BOARDS.c.name, COLUMNS.c.id, COLUMNS.c.name)
    .select_from(BOARDS.outerjoin(COLUMNS, COLUMNS.c.board_id == BOARDS.c.id))
    .where(BOARDS.c.id == bindparam("board"))
    .order_by(COLUMNS.c.position)
)
_ALL_BOARDS = select(BOARDS.c.id, BOARDS.c.name).order_by(BOARDS.c.id)
_CARDS_WITH_COLUMN = CARDS.join(COLUMNS, COLUMNS.c.id == CARDS.c.column_id)
_SUMMARY = (
    CARDS.c.id,
    COLUMNS.c.board_id,
    COLUMNS.c.name.label("column"),
    CARDS.c.position,
    CARDS.c.title,
    CARDS.c.assignee,
    CARDS.c.due_date,
)
_CARD = (
    select(*_SUMMARY, BOARDS.c.name.label("board"), CARDS.c.description, CARDS.c.created_at, CARDS.c.updated_at)
    .select_from(_CARDS_WITH_COLUMN.join(BOARDS, BOARDS.c.id == COLUMNS.c.board_id))
    .where(CARDS.c.id == bindparam("card"))
)
_LABELS_OF = (
    select(LABELS.c.card_id, LABELS.c.label)
    .where(LABELS.c.card_id.in_(bindparam("cards", expanding=True)))
    .order_by(LABELS.c.card_id, LABELS.c.label)
)


def board_columns(connection: Connection, board_id: int) -> tuple[str, list[tuple[int, str]]]:
    """Board ``board_id``'s name and its columns (id, name) in order.

    Raises:
        ToolError: no such board, naming the boards there are.
    """
    rows = connection.execute(_BOARD_COLUMNS, {"board": board_id}).all()
    if not rows:
        known = connection.execute(_ALL_BOARDS).all()
        listing = ", ".join(f"{bid} ({bname})" for bid, bname in known) or "none yet"
        raise ToolError(f"No board with id {board_id}; boards are: {listing}. Call list_boards for details.")
    return rows[0][0], [(column_id, name) for _, column_id, name in rows if column_id is not None]


def find_column(connection: Connection, board_id: int, name: str) -> tuple[str, int, str]:
    """(board name, column id, column name) of the column called ``name`` (any case) on board ``board_id``.

    Raises:
        ToolError: no such board (naming the boards there are) or no such column (naming the board's columns).
    """
    board_name, columns = board_columns(connection, board_id)
    wanted = name.strip().casefold()
    for column_id, column_name in columns:
        if column_name.casefold() == wanted:
            return board_name, column_id, column_name
    names = ", ".join(column_name for _, column_name in columns)
    raise ToolError(f"No column '{name}' on board {board_id}; columns are: {names}")


def utc(value: dt.datetime) -> dt.datetime:
    # SQLite keeps no zone; every timestamp we write is UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def get_card(connection: Connection, card_id: int) -> schemas.Card:
    """Card ``card_id`` in full.

    Raises:
        ToolError: there is no such card.
    """
    row = connection.execute(_CARD, {"card": card_id}).first()
    if row is None:
        raise ToolError(f"No card with id {card_id}. Use list_cards or search_cards to find card ids.")
    labels = _labels(connection, [card_id]).get(card_id, [])
    return schemas.Card(
        **_summary_fields(row, labels),
        board=row.board,
        description=row.description,
        created_at=utc(row.created_at),
        updated_at=utc(row.updated_at),
    )


def list_cards(
    connection: Connection,
    board_id: int,
    *,
    column: str | None,
    assignee: str | None,
    label: str | None,
    limit: int,
    offset: int,
) -> schemas.CardPage:
    """One page of board ``board_id``'s cards in column order, filtered, with the total across pages.

    Raises:
        ToolError: no such board or column.
    """
    query = select(*_SUMMARY).select_from(_CARDS_WITH_COLUMN).where(COLUMNS.c.board_id == board_id)
    if column is None:
        board_columns(connection, board_id)
    else:
        query = query.where(CARDS.c.column_id == find_column(connection, board_id, column)[1])
    if assignee is not None:
        query = query.where(func.lower(CARDS.c.assignee) == assignee.strip().lower())
    if label is not None:
        labelled = (LABELS.c.card_id == CARDS.c.id) & (func.lower(LABELS.c.label) == label.strip().lower())
        query = query.where(exists().where(labelled))
    total = _count(connection, query)
    page = query.order_by(COLUMNS.c.position, CARDS.c.position, CARDS.c.id).limit(limit).offset(offset)
    rows = connection.execute(page).all()
    labels = _labels(connection, [row.id for row in rows])
    after = offset + len(rows)
    return schemas.CardPage(
        cards=[schemas.CardSummary(**_summary_fields(row, labels.get(row.id, []))) for row in rows],
        total=total,
        next_offset=after if after < total else None,
    )


def _count(connection: Connection, query: Select[Any]) -> int:
    counted = select(func.count()).select_from(query.subquery())
    return int(connection.execute(counted).scalar_one())


def _labels(connection: Connection, card_ids: Sequence[int]) -> dict[int, list[str]]:
    """Each card's labels in the order the tools show them (case-insensitive)."""
    found: dict[int, list[str]] = {}
    if card_ids:
        for card_id, label in connection.execute(_LABELS_OF, {"cards": list(card_ids)}):
            found.setdefault(card_id, []).append(label)
    return {card_id: _sorted(labels) for card_id, labels in found.items()}


def _sorted(labels: Iterable[str]) -> list[str]:
    return sorted(labels, key=str.casefold)


def _summary_fields(row: Any, labels: list[str]) -> dict[str, Any]:
    # ``row``: a Row with the ``_SUMMARY`` columns (typed Any: its generic arity differs per query).
    return {
        "id": row.id,
        "board_id": row.board_id,
        "column": row.column,
        "position": row.position,
        "title": row.title,
        "assignee": row.assignee,
        "labels": labels,
        "due_date": row.due_date,
    }
