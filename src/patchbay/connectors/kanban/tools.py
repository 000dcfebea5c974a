"""The kanban tools, built with the public ``@tool`` decorator over a repository.

The functions are synchronous: the decorator runs them in a worker thread, so database work never blocks the
event loop. Every annotation is stated explicitly, because clients decide from them whether to ask the person
before a call (R-050).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import Field

from patchbay.connectors.kanban import schemas, validate
from patchbay.connectors.kanban.repository import KanbanRepository
from patchbay.connectors.kanban.schemas import BoardId, CardId, ColumnName, DueDate, Limit, Offset, Position, Title
from patchbay.decorators import ATTR, tool
from patchbay.definitions import Tool

F = TypeVar("F", bound=Callable[..., Any])


def _tool(
    *, title: str, description: str, read_only: bool, destructive: bool, idempotent: bool, open_world: bool
) -> Callable[[F], F]:
    """``@tool`` with every annotation a required keyword, so no kanban tool can fall back on a default."""
    decorate: Callable[[F], F] = tool(
        title=title,
        description=description,
        read_only=read_only,
        destructive=destructive,
        idempotent=idempotent,
        open_world=open_world,
    )
    return decorate


def build_tools(repo: KanbanRepository) -> list[Tool]:
    """The eight tools, bound to ``repo``."""
    functions = [*_read_tools(repo), *_write_tools(repo)]
    tools: list[Tool] = [getattr(fn, ATTR) for fn in functions]
    return tools


def _read_tools(repo: KanbanRepository) -> list[object]:
    @_tool(
        title="List boards",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
        description=(
            "List every Kanban board with its columns and card counts; call this first to get board ids and "
            "column names."
        ),
    )
    def list_boards() -> schemas.BoardList:
        return repo.list_boards()

    @_tool(
        title="List cards",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
        description=(
            "List the cards on one board in column order, optionally filtered by column, assignee or label; "
            "page with offset/next_offset."
        ),
    )
    def list_cards(
        board_id: BoardId,
        column: Annotated[str | None, Field(description="Only cards in this column (any case).")] = None,
        assignee: Annotated[str | None, Field(description="Only cards assigned to this person (any case).")] = None,
        label: Annotated[str | None, Field(description="Only cards carrying this label (any case).")] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> schemas.CardPage:
        return repo.list_cards(board_id, column=column, assignee=assignee, label=label, limit=limit, offset=offset)

    @_tool(
        title="Search cards",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
        description=(
            "Find cards whose title or description contains some text (case-insensitive), on one board or all; "
            "use it when you know words but not the card id."
        ),
    )
    def search_cards(
        query: Annotated[str, Field(description="Text to look for, matched literally (no wildcards).")],
        board_id: Annotated[int | None, Field(description="Search only this board; omit for all boards.")] = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many cards (1-100).")] = 20,
    ) -> schemas.SearchResults:
        return repo.search_cards(validate.check_query(query), board_id=board_id, limit=limit)

    @_tool(
        title="Get card",
        read_only=True,
        destructive=False,
        idempotent=True,
        open_world=False,
        description=(
            "Get one card in full (description, labels, dates, column) by its id; use it before updating a card."
        ),
    )
    def get_card(card_id: CardId) -> schemas.Card:
        return repo.get_card(card_id)

    return [list_boards, list_cards, search_cards, get_card]


def _write_tools(repo: KanbanRepository) -> list[object]:
    @_tool(
        title="Create card",
        read_only=False,
        destructive=False,
        idempotent=False,
        open_world=False,
        description="Create a new card at the bottom of a column; use it to add a task to a board.",
    )
    def create_card(
        board_id: BoardId,
        column: ColumnName,
        title: Title,
        description: Annotated[str, Field(description="Longer details; plain text.")] = "",
        assignee: Annotated[str | None, Field(description="Who owns the card.")] = None,
        labels: Annotated[list[str] | None, Field(description="Labels (tags), e.g. ['bug', 'frontend'].")] = None,
        due_date: DueDate = None,
    ) -> schemas.Card:
        new = validate.new_card(title, description, assignee, labels, due_date)
        return repo.create_card(board_id, column, new)

    @_tool(
        title="Update card",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=False,
        description=(
            "Change a card's title, description, assignee, labels or due date; only the fields you give change "
            "(use move_card to change its column)."
        ),
    )
    def update_card(
        card_id: CardId,
        title: Annotated[str | None, Field(description="New title, 1-200 characters.")] = None,
        description: Annotated[str | None, Field(description="New description (replaces the old one).")] = None,
        assignee: Annotated[str | None, Field(description="New assignee; '' to unassign.")] = None,
        labels: Annotated[list[str] | None, Field(description="New labels (replace all); [] to clear.")] = None,
        due_date: Annotated[str | None, Field(description="New due date as YYYY-MM-DD; '' to clear.")] = None,
    ) -> schemas.Card:
        changes = validate.changes(
            title=title, description=description, assignee=assignee, labels=labels, due_date=due_date
        )
        return repo.update_card(card_id, changes)

    @_tool(
        title="Move card",
        read_only=False,
        destructive=False,
        idempotent=True,
        open_world=False,
        description="Move a card to another column (or reorder it within its column), e.g. to mark it done.",
    )
    def move_card(card_id: CardId, column: ColumnName, position: Position = None) -> schemas.Card:
        return repo.move_card(card_id, column, position)

    @_tool(
        title="Delete card",
        read_only=False,
        destructive=True,
        idempotent=True,
        open_world=False,
        description="Delete a card permanently; only when the person asked for it to be removed, not when done.",
    )
    def delete_card(card_id: CardId) -> schemas.Deleted:
        return repo.delete_card(card_id)

    return [create_card, update_card, move_card, delete_card]
