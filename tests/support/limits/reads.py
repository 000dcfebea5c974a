"""Resources and a prompt for the limits tests: every read that runs is counted in RAN, so a refused read that ran
anyway would show."""

from __future__ import annotations

import asyncio
from collections import Counter

from patchbay import prompt, resource

RAN: Counter[str] = Counter()
# held() waits for this; the tests set it to let held reads finish.
RELEASE = asyncio.Event()
HOLDING: list[str] = []


@resource("docs://report", name="report")
async def report() -> str:
    """The yearly report."""
    RAN["report"] += 1
    return "the report"


@resource("docs://pages/{page}", name="page")
async def page(page: str) -> str:
    """One page, by name."""
    RAN["page"] += 1
    return f"page {page}"


@resource("docs://held", name="held")
async def held() -> str:
    """Waits until the test releases it."""
    RAN["held"] += 1
    HOLDING.append("held")
    try:
        await RELEASE.wait()
    finally:
        HOLDING.remove("held")
    return "released"


@prompt()
async def brief(topic: str) -> str:
    """A briefing on ``topic``."""
    RAN["brief"] += 1
    return f"Brief me on {topic}."
