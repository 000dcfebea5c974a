"""The sample board the demo starts with: enough variety (assignees, labels, due dates, columns) to try every
tool and filter. Due dates are relative to today so the board never looks stale."""

from __future__ import annotations

import datetime as dt

from patchbay.store.models import KanbanBoard, KanbanCard, KanbanCardLabel, KanbanColumn

COLUMNS = ("To do", "In progress", "Done")

# (column, title, description, assignee, labels, due in days or None)
CARDS: tuple[tuple[str, str, str, str | None, tuple[str, ...], int | None], ...] = (
    (
        "To do",
        "Write launch blog post",
        "Draft the announcement post: the problem, what ships, two customer quotes and a short demo GIF. "
        "Legal reviews the pricing paragraph.",
        "Maya",
        ("marketing", "content"),
        9,
    ),
    (
        "To do",
        "Prepare press kit",
        "Logos in SVG and PNG, three product screenshots at 2x, founder bios and the fact sheet as one zip.",
        "Maya",
        ("marketing",),
        12,
    ),
    (
        "To do",
        "Set up status page",
        "Public status page on status.example.com with components for API, dashboard and webhooks; "
        "wire it to the on-call alerts.",
        None,
        ("infra",),
        14,
    ),
    (
        "In progress",
        "Finalise pricing tiers",
        "Free, Team (per seat) and Enterprise. Decide whether the Team trial is 14 or 30 days; "
        "update the billing plans in Stripe.",
        "Jonas",
        ("pricing", "blocked"),
        5,
    ),
    (
        "In progress",
        "Load-test the signup flow",
        "Target 200 signups per minute with p95 under 800 ms. Known issue: the welcome email queue backs up "
        "at 100% CPU.",
        "Priya",
        ("infra", "performance"),
        6,
    ),
    (
        "In progress",
        "Onboarding checklist in the app",
        "Five steps: create a project, invite a teammate, connect a data source, run a first query, share a dashboard.",
        "Luis",
        ("frontend", "onboarding"),
        8,
    ),
    (
        "Done",
        "Fix 500 on password reset",
        "Reset links for accounts created before March raised a KeyError on the legacy token format.",
        "Priya",
        ("bug", "backend"),
        None,
    ),
    (
        "Done",
        "Record product demo video",
        "Three-minute walkthrough, captions in English and German, uploaded unlisted for the launch page.",
        "Luis",
        ("marketing", "video"),
        None,
    ),
)


def sample_rows(today: dt.date | None = None) -> list[KanbanBoard | KanbanCard]:
    """New (unsaved) rows for an empty database: the board (with its columns) and its cards."""
    today = today or dt.date.today()
    columns = {name: KanbanColumn(name=name, position=index) for index, name in enumerate(COLUMNS)}
    board = KanbanBoard(
        name="Product launch",
        description="Everything that has to happen before the public launch.",
        columns=list(columns.values()),
    )
    filled: dict[str, int] = {}
    cards: list[KanbanBoard | KanbanCard] = []
    for column, title, description, assignee, labels, due_in in CARDS:
        position = filled.get(column, 0)
        filled[column] = position + 1
        cards.append(
            KanbanCard(
                column=columns[column],
                position=position,
                title=title,
                description=description,
                assignee=assignee,
                labels=[KanbanCardLabel(label=label) for label in labels],
                due_date=None if due_in is None else today + dt.timedelta(days=due_in),
            )
        )
    return [board, *cards]
