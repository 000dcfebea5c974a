"""The kanban data access: reads in an ORM session of their own, writes as jobs on the store's writer path.

Every method returns the tool's output model, built inside the transaction, or raises ``ToolError`` naming
what was wrong and what to do. Writes validate everything before they change anything, so a failed call leaves
the board as it was. Reads are synchronous (the tools run them in a worker thread); writes are async: they
wait for the store's writer thread without holding a worker thread. Creating and deleting a card, the frequent
writes, are lean Core jobs (``kanban.writes``); updates and moves use an ORM session on the writer connection.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, Select, case, func, or_, select, text
from sqlalchemy.orm import Session, joinedload, sessionmaker

from patchbay.connectors.kanban import queries, schemas, writes
from patchbay.connectors.kanban.validate import NewCard
from patchbay.errors import ToolError
from patchbay.store import write_path
from patchbay.store.models import KanbanBoard, KanbanCard, KanbanCardLabel, KanbanColumn

SNIPPET_RADIUS = 60
T = TypeVar("T")


class KanbanRepository:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._read = sessionmaker(engine, expire_on_commit=False)
        self._writes = write_path(engine)

    async def _write(self, job: Callable[[Connection], T]) -> T:
        """``job`` on the store's writer path: a ToolError it raises rolls back its changes and reaches the
        caller."""
        return await self._writes.run(job)

    def ping(self) -> None:
        with self._read() as session:
            session.execute(text("SELECT 1"))

    # -- reads --------------------------------------------------------------------------------------------------

    def list_boards(self) -> schemas.BoardList:
        with self._read() as session:
            per_column = select(KanbanCard.column_id, func.count()).group_by(KanbanCard.column_id)
            counts = {column_id: count for column_id, count in session.execute(per_column)}
            boards = session.scalars(
                select(KanbanBoard).options(joinedload(KanbanBoard.columns)).order_by(KanbanBoard.id)
            ).unique()
            return schemas.BoardList(boards=[_board(board, counts) for board in boards])

    def list_cards(
        self, board_id: int, *, column: str | None, assignee: str | None, label: str | None, limit: int, offset: int
    ) -> schemas.CardPage:
        with self._engine.connect() as connection:
            return queries.list_cards(
                connection, board_id, column=column, assignee=assignee, label=label, limit=limit, offset=offset
            )

    def search_cards(self, query: str, *, board_id: int | None, limit: int) -> schemas.SearchResults:
        # Parameterised LIKE with % and _ escaped: the user's text is matched literally, never as a pattern.
        pattern = f"%{escape_like(query)}%"
        in_title = KanbanCard.title.ilike(pattern, escape="\\")
        matches = or_(in_title, KanbanCard.description.ilike(pattern, escape="\\"))
        with self._read() as session:
            stmt = _cards_query().where(matches)
            if board_id is not None:
                stmt = stmt.where(KanbanColumn.board_id == _get_board(session, board_id).id)
            total = _count(session, stmt)
            ranked = stmt.order_by(case((in_title, 0), else_=1), KanbanCard.updated_at.desc(), KanbanCard.id)
            cards = session.scalars(ranked.limit(limit)).all()
            hits = [schemas.SearchHit(**_summary(card).model_dump(), snippet=snippet(card, query)) for card in cards]
            return schemas.SearchResults(query=query, cards=hits, total=total)

    def get_card(self, card_id: int) -> schemas.Card:
        with self._engine.connect() as connection:
            return queries.get_card(connection, card_id)

    # -- writes -------------------------------------------------------------------------------------------------

    async def create_card(self, board_id: int, column: str, new: NewCard) -> schemas.Card:
        return await self._write(writes.create_card(board_id, column, new))

    async def update_card(self, card_id: int, changes: Mapping[str, Any]) -> schemas.Card:
        return await self._write(_in_session(lambda session: _update_card(session, card_id, changes)))

    async def move_card(self, card_id: int, column: str, position: int | None) -> schemas.Card:
        return await self._write(_in_session(lambda session: _move_card(session, card_id, column, position)))

    async def delete_card(self, card_id: int) -> schemas.Deleted:
        return await self._write(writes.delete_card(card_id))

    def seed_if_empty(self, rows: Iterable[KanbanBoard | KanbanCard]) -> bool:
        """Add ``rows`` when there are no boards yet. The write lock makes concurrent starts seed only once.

        Synchronous: call it from a worker thread."""
        return self._writes.run_sync(_in_session(lambda session: _seed_if_empty(session, rows)))


# -- writes in an ORM session on the writer path's connection --------------------------------------------------


def _in_session(work: Callable[[Session], T]) -> Callable[[Connection], T]:
    """``work`` as a writer-path job, in a session of its own on the job's connection."""

    def job(connection: Connection) -> T:
        # The session's commit releases its savepoint; the writer path commits the transaction.
        with Session(bind=connection, join_transaction_mode="create_savepoint") as session:
            result = work(session)
            session.commit()
            return result

    return job


def _update_card(session: Session, card_id: int, changes: Mapping[str, Any]) -> schemas.Card:
    card = _get_card(session, card_id)
    for attribute, value in changes.items():
        if attribute == "labels":
            _set_labels(card, value)
        else:
            setattr(card, attribute, value)
    card.updated_at = _now()  # also when only labels changed, which onupdate would not see
    session.flush()
    return _full(card)


def _move_card(session: Session, card_id: int, column: str, position: int | None) -> schemas.Card:
    card = _get_card(session, card_id)
    source = card.column
    target = _find_column(source.board, column)
    if source.id != target.id:
        _renumber(c for c in _column_cards(session, source.id) if c.id != card.id)
    others = [c for c in _column_cards(session, target.id) if c.id != card.id]
    index = len(others) if position is None else min(position, len(others))
    others.insert(index, card)
    card.column = target
    _renumber(others)
    card.updated_at = _now()
    session.flush()
    return _full(card)


def _seed_if_empty(session: Session, rows: Iterable[KanbanBoard | KanbanCard]) -> bool:
    if session.scalar(select(func.count()).select_from(KanbanBoard)):
        return False
    session.add_all(rows)
    return True


# -- lookups that fail with directions --------------------------------------------------------------------------


def _get_board(session: Session, board_id: int) -> KanbanBoard:
    board = session.get(KanbanBoard, board_id, options=[joinedload(KanbanBoard.columns)])
    if board is not None:
        return board
    known = session.execute(select(KanbanBoard.id, KanbanBoard.name).order_by(KanbanBoard.id)).all()
    listing = ", ".join(f"{bid} ({name})" for bid, name in known) or "none yet"
    raise ToolError(f"No board with id {board_id}; boards are: {listing}. Call list_boards for details.")


def _find_column(board: KanbanBoard, name: str) -> KanbanColumn:
    wanted = name.strip().casefold()
    for column in board.columns:
        if column.name.casefold() == wanted:
            return column
    names = ", ".join(c.name for c in board.columns)
    raise ToolError(f"No column '{name}' on board {board.id}; columns are: {names}")


def _get_card(session: Session, card_id: int) -> KanbanCard:
    options = [joinedload(KanbanCard.column).joinedload(KanbanColumn.board).joinedload(KanbanBoard.columns)]
    card = session.get(KanbanCard, card_id, options=options)
    if card is None:
        raise ToolError(f"No card with id {card_id}. Use list_cards or search_cards to find card ids.")
    return card


# -- helpers ----------------------------------------------------------------------------------------------------


def escape_like(value: str) -> str:
    """``value`` for use inside a LIKE pattern with ``ESCAPE '\\'``: wildcards match themselves."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def snippet(card: KanbanCard, query: str) -> str:
    """The text around the first match, preferring the description (it has the context the title lacks)."""
    for source in (card.description, card.title):
        found = re.search(re.escape(query), source, re.IGNORECASE)
        if found is None:
            continue
        start = max(found.start() - SNIPPET_RADIUS, 0)
        end = min(found.end() + SNIPPET_RADIUS, len(source))
        excerpt = " ".join(source[start:end].split())
        return f"{'…' if start else ''}{excerpt}{'…' if end < len(source) else ''}"
    return card.title  # matched in a way Python's casefolding does not reproduce; the title still helps


def _cards_query() -> Select[KanbanCard]:
    return select(KanbanCard).join(KanbanCard.column).options(joinedload(KanbanCard.column))


def _count(session: Session, query: Select[KanbanCard]) -> int:
    return session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0


def _column_cards(session: Session, column_id: int) -> list[KanbanCard]:
    stmt = select(KanbanCard).where(KanbanCard.column_id == column_id).order_by(KanbanCard.position, KanbanCard.id)
    return list(session.scalars(stmt))


def _renumber(cards: Iterable[KanbanCard]) -> None:
    for index, card in enumerate(cards):
        if card.position != index:
            card.position = index


def _set_labels(card: KanbanCard, labels: list[str]) -> None:
    # Reuse the rows of labels that stay, so one flush never deletes and re-inserts the same primary key.
    existing = {row.label.casefold(): row for row in card.labels}
    rows = []
    for label in labels:
        row = existing.get(label.casefold()) or KanbanCardLabel(label=label)
        row.label = label  # a change of case only
        rows.append(row)
    card.labels = rows


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _board(board: KanbanBoard, counts: Mapping[int, int]) -> schemas.Board:
    columns = [
        schemas.ColumnSummary(name=c.name, position=c.position, card_count=counts.get(c.id, 0)) for c in board.columns
    ]
    return schemas.Board(
        id=board.id,
        name=board.name,
        description=board.description,
        columns=columns,
        card_count=sum(c.card_count for c in columns),
    )


def _summary(card: KanbanCard) -> schemas.CardSummary:
    return schemas.CardSummary(
        id=card.id,
        board_id=card.column.board_id,
        column=card.column.name,
        position=card.position,
        title=card.title,
        assignee=card.assignee,
        labels=sorted((row.label for row in card.labels), key=str.casefold),
        due_date=card.due_date,
    )


def _full(card: KanbanCard) -> schemas.Card:
    return schemas.Card(
        **_summary(card).model_dump(),
        board=card.column.board.name,
        description=card.description,
        created_at=queries.utc(card.created_at),
        updated_at=queries.utc(card.updated_at),
    )
