"""The kanban tools, built with the public ``@tool`` decorator over a repository, one small factory each.

The read tools are synchronous: the decorator runs them in a worker thread, so database work never blocks the
event loop. The write tools are async: after checking their input they wait for the store's writer thread (one
per database file, see ``patchbay.store.writes``) without holding a worker thread while they wait. Every
annotation is stated explicitly, because clients decide from them whether to ask the person before a call
(R-050).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from patchbay.connectors.kanban import schemas, validate
from patchbay.connectors.kanban.repository import KanbanRepository
from patchbay.connectors.kanban.schemas import BoardId, CardId, ColumnName, DueDate, Limit, Offset, Position, Title
from patchbay.decorators import ATTR, tool
from patchbay.definitions import Tool

# Input descriptions used once (the shared ones live in schemas).
ColumnFilter = Annotated[str | None, Field(description="Only cards in this column (any case).")]
AssigneeFilter = Annotated[str | None, Field(description="Only cards assigned to this person (any case).")]
LabelFilter = Annotated[str | None, Field(description="Only cards carrying this label (any case).")]
Query = Annotated[str, Field(description="Text to look for, matched literally (no wildcards).")]
SearchBoard = Annotated[
    int | None, Field(ge=1, le=schemas.MAX_ID, description="Search only this board; omit for all boards.")
]
SearchLimit = Annotated[int, Field(ge=1, le=100, description="At most this many cards (1-100).")]
Description = Annotated[str, Field(description="Longer details; plain text.")]
Assignee = Annotated[str | None, Field(description="Who owns the card.")]
Labels = Annotated[list[str] | None, Field(description="Labels (tags), e.g. ['bug', 'frontend'].")]
NewTitle = Annotated[str | None, Field(description="New title, 1-200 characters.")]
NewDescription = Annotated[str | None, Field(description="New description (replaces the old one).")]
NewAssignee = Annotated[str | None, Field(description="New assignee; '' to unassign.")]
NewLabels = Annotated[list[str] | None, Field(description="New labels (replace all); [] to clear.")]
NewDueDate = Annotated[str | None, Field(description="New due date as YYYY-MM-DD; '' to clear.")]


def build_tools(repo: KanbanRepository) -> list[Tool]:
    """The eight tools, bound to ``repo``: reads first, then writes."""
    factories = (list_boards, list_cards, search_cards, get_card, create_card, update_card, move_card, delete_card)
    return [factory(repo) for factory in factories]


def _define(
    fn: Callable[..., Any],
    *,
    title: str,
    description: str,
    read_only: bool,
    destructive: bool,
    idempotent: bool,
    open_world: bool,
) -> Tool:
    """``@tool`` with every annotation a required keyword, so no kanban tool can fall back on a default."""
    tool(
        fn,
        title=title,
        description=description,
        read_only=read_only,
        destructive=destructive,
        idempotent=idempotent,
        open_world=open_world,
    )
    definition: Tool = getattr(fn, ATTR)
    return definition


def _read(fn: Callable[..., Any], *, title: str, description: str) -> Tool:
    return _define(
        fn, title=title, description=description, read_only=True, destructive=False, idempotent=True, open_world=False
    )


# -- reads ------------------------------------------------------------------------------------------------------


def list_boards(repo: KanbanRepository) -> Tool:
    def list_boards() -> schemas.BoardList:
        return repo.list_boards()

    return _read(
        list_boards,
        title="List boards",
        description=(
            "List every Kanban board with its columns and card counts; call this first to get board ids and "
            "column names."
        ),
    )


def list_cards(repo: KanbanRepository) -> Tool:
    def list_cards(
        board_id: BoardId,
        column: ColumnFilter = None,
        assignee: AssigneeFilter = None,
        label: LabelFilter = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.CardPage:
        return repo.list_cards(board_id, column=column, assignee=assignee, label=label, limit=limit, offset=offset)

    return _read(
        list_cards,
        title="List cards",
        description=(
            "List the cards on one board in column order, optionally filtered by column, assignee or label; "
            "page with offset/next_offset."
        ),
    )


def search_cards(repo: KanbanRepository) -> Tool:
    def search_cards(query: Query, board_id: SearchBoard = None, limit: SearchLimit = 20) -> schemas.SearchResults:
        return repo.search_cards(validate.check_query(query), board_id=board_id, limit=limit)

    return _read(
        search_cards,
        title="Search cards",
        description=(
            "Find cards whose title or description contains some text (case-insensitive), on one board or all; "
            "use it when you know words but not the card id."
        ),
    )


def get_card(repo: KanbanRepository) -> Tool:
    def get_card(card_id: CardId) -> schemas.Card:
        return repo.get_card(card_id)

    return _read(
        get_card,
        title="Get card",
        description="Get one card in full (description, labels, dates, column) by its id; use it before updating.",
    )


# -- writes -----------------------------------------------------------------------------------------------------


def create_card(repo: KanbanRepository) -> Tool:
    async def create_card(
        board_id: BoardId,
        column: ColumnName,
        title: Title,
        description: Description = "",
        assignee: Assignee = None,
        labels: Labels = None,
        due_date: DueDate = None,
    ) -> schemas.Card:
        return await repo.create_card(
            board_id, column, validate.new_card(title, description, assignee, labels, due_date)
        )

    return _define(
        create_card,
        title="Create card",
        description="Create a new card at the bottom of a column; use it to add a task to a board.",
        read_only=False,
        destructive=False,
        idempotent=False,  # each call adds another card
        open_world=False,
    )


def update_card(repo: KanbanRepository) -> Tool:
    async def update_card(
        card_id: CardId,
        title: NewTitle = None,
        description: NewDescription = None,
        assignee: NewAssignee = None,
        labels: NewLabels = None,
        due_date: NewDueDate = None,
    ) -> schemas.Card:
        changes = validate.changes(
            title=title, description=description, assignee=assignee, labels=labels, due_date=due_date
        )
        return await repo.update_card(card_id, changes)

    return _define(
        update_card,
        title="Update card",
        description=(
            "Change a card's title, description, assignee, labels or due date; only the fields you give change "
            "(use move_card to change its column)."
        ),
        read_only=False,
        destructive=False,  # it overwrites fields, but only the ones the caller names, with values it gives
        idempotent=True,
        open_world=False,
    )


def move_card(repo: KanbanRepository) -> Tool:
    async def move_card(card_id: CardId, column: ColumnName, position: Position = None) -> schemas.Card:
        return await repo.move_card(card_id, column, position)

    return _define(
        move_card,
        title="Move card",
        description="Move a card to another column (or reorder it within its column), e.g. to mark it done.",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=False,
    )


def delete_card(repo: KanbanRepository) -> Tool:
    async def delete_card(card_id: CardId) -> schemas.Deleted:
        return await repo.delete_card(card_id)

    return _define(
        delete_card,
        title="Delete card",
        description="Delete a card permanently; only when the person asked for it to be removed, not when done.",
        read_only=False,
        destructive=True,
        idempotent=True,  # a second call changes nothing more (it reports the card is gone)
        open_world=False,
    )
