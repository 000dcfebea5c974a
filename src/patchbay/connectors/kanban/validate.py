"""Checks on tool input that pydantic's types cannot express, each failing with a message that says what to do.

They run before any database work, so a bad call never opens a write transaction.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from patchbay.errors import ToolError

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_ASSIGNEE = 100
MAX_LABEL = 50
MAX_LABELS = 20
MAX_QUERY = 200


@dataclass(frozen=True, slots=True)
class NewCard:
    title: str
    description: str = ""
    assignee: str | None = None
    labels: list[str] = field(default_factory=list)
    due_date: dt.date | None = None


def check_title(value: str) -> str:
    text = value.strip()
    if not text:
        raise ToolError("title must not be empty; give the card a short title.")
    if len(text) > MAX_TITLE:
        raise ToolError(
            f"title is {len(text)} characters; the limit is {MAX_TITLE}. Shorten it and put details in description."
        )
    return text


def check_description(value: str) -> str:
    if len(value) > MAX_DESCRIPTION:
        raise ToolError(f"description is {len(value)} characters; the limit is {MAX_DESCRIPTION}.")
    return value


def check_assignee(value: str | None) -> str | None:
    """The assignee's name, or None for nobody ("" also means nobody)."""
    text = (value or "").strip()
    if len(text) > MAX_ASSIGNEE:
        raise ToolError(f"assignee is {len(text)} characters; the limit is {MAX_ASSIGNEE}.")
    return text or None


def check_labels(values: list[str] | None) -> list[str]:
    """Trimmed labels without blanks or case-insensitive duplicates, in the order given."""
    result: list[str] = []
    seen: set[str] = set()
    for raw in values or []:
        label = raw.strip()
        if not label or label.casefold() in seen:
            continue
        if len(label) > MAX_LABEL:
            raise ToolError(f"label '{label[:20]}…' is {len(label)} characters; the limit is {MAX_LABEL}.")
        seen.add(label.casefold())
        result.append(label)
    if len(result) > MAX_LABELS:
        raise ToolError(f"a card takes at most {MAX_LABELS} labels; {len(result)} were given.")
    return result


def check_due_date(value: str | None) -> dt.date | None:
    """A YYYY-MM-DD date, or None ("" also means none)."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        if len(text) != len("YYYY-MM-DD"):
            raise ValueError(text)
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ToolError(f"due_date '{text}' is not a date; use YYYY-MM-DD, e.g. '2025-03-31'.") from None


def check_query(value: str) -> str:
    text = value.strip()
    if not text:
        raise ToolError("query must not be empty; give a word or phrase to look for in titles and descriptions.")
    if len(text) > MAX_QUERY:
        raise ToolError(f"query is {len(text)} characters; the limit is {MAX_QUERY}.")
    return text


def new_card(
    title: str, description: str, assignee: str | None, labels: list[str] | None, due_date: str | None
) -> NewCard:
    return NewCard(
        check_title(title),
        check_description(description),
        check_assignee(assignee),
        check_labels(labels),
        check_due_date(due_date),
    )


def changes(
    *,
    title: str | None,
    description: str | None,
    assignee: str | None,
    labels: list[str] | None,
    due_date: str | None,
) -> dict[str, Any]:
    """The fields an update sets (None = leave unchanged), checked, keyed by the card attribute they set.

    Raises:
        ToolError: a value is invalid, or nothing would change.
    """
    found: dict[str, Any] = {}
    if title is not None:
        found["title"] = check_title(title)
    if description is not None:
        found["description"] = check_description(description)
    if assignee is not None:
        found["assignee"] = check_assignee(assignee)
    if labels is not None:
        found["labels"] = check_labels(labels)
    if due_date is not None:
        found["due_date"] = check_due_date(due_date)
    if not found:
        raise ToolError(
            "Nothing to update: give at least one of title, description, assignee, labels or due_date. "
            "To move a card to another column, use move_card."
        )
    return found
