"""What the kanban tools take and return. Output models become each tool's ``outputSchema``."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, Field

# -- inputs (module level: the @tool decorator resolves annotations against this module's globals) ----------

# Ids are SQLite INTEGER keys: a number past 2**63 - 1 would fail in the driver instead of being "not found".
MAX_ID = 2**63 - 1
# Offsets past the data give an empty page; the bound keeps them a number every database takes.
MAX_OFFSET = 10_000_000
BoardId = Annotated[int, Field(ge=1, le=MAX_ID, description="Board id, from list_boards.")]
CardId = Annotated[int, Field(ge=1, le=MAX_ID, description="Card id, from list_cards or search_cards.")]
ColumnName = Annotated[str, Field(description="Column name on the card's board, e.g. 'In progress' (any case).")]
Title = Annotated[str, Field(description="Short card title, 1-200 characters.")]
Limit = Annotated[int, Field(ge=1, le=100, description="How many cards to return (1-100).")]
Offset = Annotated[
    int, Field(ge=0, le=MAX_OFFSET, description="How many cards to skip; use next_offset from the last page.")
]
DueDate = Annotated[str | None, Field(description="Due date as YYYY-MM-DD.")]
Position = Annotated[
    int | None,
    Field(ge=0, le=MAX_OFFSET, description="0 is the top of the column; omit (or exceed the count) for the bottom."),
]


# -- outputs ----------------------------------------------------------------------------------------------------


class ColumnSummary(BaseModel):
    name: str
    position: int
    card_count: int


class Board(BaseModel):
    id: int
    name: str
    description: str
    columns: list[ColumnSummary]
    card_count: int


class BoardList(BaseModel):
    boards: list[Board]


class CardSummary(BaseModel):
    id: int
    board_id: int
    column: str
    position: int = Field(description="0-based order within the column.")
    title: str
    assignee: str | None
    labels: list[str]
    due_date: dt.date | None


class Card(CardSummary):
    board: str
    description: str
    created_at: dt.datetime
    updated_at: dt.datetime


class CardPage(BaseModel):
    cards: list[CardSummary]
    total: int = Field(description="Cards matching the filters, across all pages.")
    next_offset: int | None = Field(description="Pass as offset for the next page; null on the last page.")


class SearchHit(CardSummary):
    snippet: str = Field(description="The matching text around the first match.")


class SearchResults(BaseModel):
    query: str
    cards: list[SearchHit]
    total: int = Field(description="Cards matching, of which at most `limit` are returned.")


class Deleted(BaseModel):
    deleted: int = Field(description="The id of the deleted card.")
