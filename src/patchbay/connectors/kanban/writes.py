"""The frequent kanban writes, creating and deleting a card, as jobs for the store's one writer thread.

Every write of the process to a SQLite file runs on that one thread (``patchbay.store.writes``), so whatever a
job does there, every other write waits for. These jobs therefore do the least that keeps the board right: a
few SQLAlchemy Core statements, built once at import so each execution hits the compiled cache, and no ORM
session, identity map or relationship loading (which cost milliseconds per call on that thread). The job
still builds the tool's answer before its savepoint is released, so a failure while building it rolls the
write back like any other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update

from patchbay.connectors.kanban import schemas
from patchbay.connectors.kanban.queries import CARDS, LABELS, find_column
from patchbay.connectors.kanban.validate import NewCard
from patchbay.errors import ToolError

_COLUMN_SIZE = select(func.count()).select_from(CARDS).where(CARDS.c.column_id == bindparam("column"))
_INSERT_CARD = insert(CARDS)
_INSERT_LABEL = insert(LABELS)
_CARD_PLACE = select(CARDS.c.column_id, CARDS.c.position).where(CARDS.c.id == bindparam("card"))
_DELETE_CARD = delete(CARDS).where(CARDS.c.id == bindparam("card"))
# Positions are contiguous, so the cards after a deleted one move up one: one statement, not a load of the column.
_CLOSE_GAP = (
    update(CARDS)
    .where(CARDS.c.column_id == bindparam("column"), CARDS.c.position > bindparam("after"))
    .values(position=CARDS.c.position - 1)
)


def create_card(board_id: int, column: str, new: NewCard) -> Callable[[Connection], schemas.Card]:
    """The job that adds ``new`` at the bottom of ``column`` on board ``board_id`` and returns the card.

    The job raises ToolError (nothing written) when the board or the column does not exist.
    """

    def job(connection: Connection) -> schemas.Card:
        board_name, column_id, column_name = find_column(connection, board_id, column)
        position = connection.execute(_COLUMN_SIZE, {"column": column_id}).scalar_one()
        now = dt.datetime.now(dt.UTC)
        row = {
            "column_id": column_id,
            "position": position,
            "title": new.title,
            "description": new.description,
            "assignee": new.assignee,
            "due_date": new.due_date,
            "created_at": now,
            "updated_at": now,
        }
        key = connection.execute(_INSERT_CARD, row).inserted_primary_key
        card_id = int(key[0]) if key is not None else 0
        if new.labels:
            connection.execute(_INSERT_LABEL, [{"card_id": card_id, "label": label} for label in new.labels])
        return schemas.Card(
            id=card_id,
            board_id=board_id,
            column=column_name,
            position=position,
            title=new.title,
            assignee=new.assignee,
            labels=sorted(new.labels, key=str.casefold),
            due_date=new.due_date,
            board=board_name,
            description=new.description,
            created_at=now,
            updated_at=now,
        )

    return job


def delete_card(card_id: int) -> Callable[[Connection], schemas.Deleted]:
    """The job that deletes card ``card_id`` (its labels with it) and closes the gap it leaves in its column.

    The job raises ToolError when there is no such card.
    """

    def job(connection: Connection) -> schemas.Deleted:
        place = connection.execute(_CARD_PLACE, {"card": card_id}).first()
        if place is None:
            raise ToolError(f"No card with id {card_id}. Use list_cards or search_cards to find card ids.")
        # Its labels go by the foreign key's ON DELETE CASCADE: foreign keys are on for every connection of
        # the store (patchbay.store.engine), as PostgreSQL always has them.
        connection.execute(_DELETE_CARD, {"card": card_id})
        connection.execute(_CLOSE_GAP, {"column": place.column_id, "after": place.position})
        return schemas.Deleted(deleted=card_id)

    return job
