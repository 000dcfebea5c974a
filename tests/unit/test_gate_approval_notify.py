"""notifications/elicitation/complete goes to the one 2025-11-25 session that got the approval's URL elicitation,
over its open GET stream; nothing is sent when that stream is gone; a decision made elsewhere is found by the poll."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from patchbay.gate.approval_notify import COMPLETE, ElicitationWaits
from patchbay.transport.sessions import Session

pytestmark = pytest.mark.anyio


def session_with_stream(name: str) -> Session:
    session = Session(name, "2025-11-25", {"elicitation": {"url": {}}}, None)
    session.standalone = asyncio.Queue(maxsize=10)
    return session


def messages(session: Session) -> list[dict[str, Any]]:
    assert session.standalone is not None
    out = []
    while not session.standalone.empty():
        frame = session.standalone.get_nowait()
        out.append(orjson.loads(frame.split(b"data: ", 1)[1]))
    return out


async def test_a_decision_reaches_only_the_session_that_got_the_elicitation() -> None:
    statuses: dict[str, str] = {"a1": "pending"}

    async def read(ids: list[str]) -> dict[str, str]:
        return {i: statuses[i] for i in ids if i in statuses}

    waits = ElicitationWaits(read, poll_seconds=60)
    mine, other = session_with_stream("mine"), session_with_stream("other")
    waits.add("a1", mine)
    assert waits.complete("a1") is True
    assert messages(mine) == [{"jsonrpc": "2.0", "method": COMPLETE, "params": {"elicitationId": "a1"}}]
    assert messages(other) == []
    assert waits.complete("a1") is False and waits.waiting == 0  # told once
    waits.close()


async def test_nothing_is_sent_when_the_sessions_stream_is_gone() -> None:
    async def read(ids: list[str]) -> dict[str, str]:
        return {}

    waits = ElicitationWaits(read, poll_seconds=60)
    gone = Session("gone", "2025-11-25", {}, None)  # no GET stream open (closed, or never opened)
    waits.add("a2", gone)
    assert waits.complete("a2") is False and waits.waiting == 0
    waits.close()


async def test_a_decision_made_elsewhere_is_found_by_the_poll() -> None:
    statuses = {"a3": "pending"}
    polls = 0
    polled_twice = asyncio.Event()

    async def read(ids: list[str]) -> dict[str, str]:
        nonlocal polls
        polls += 1
        if polls >= 2:
            polled_twice.set()
        return {i: statuses[i] for i in ids if i in statuses}

    waits = ElicitationWaits(read, poll_seconds=0.01)
    session = session_with_stream("s")
    waits.add("a3", session)
    await asyncio.wait_for(polled_twice.wait(), 5)
    assert messages(session) == [] and waits.waiting == 1  # polled while pending: nothing sent
    statuses["a3"] = "denied"  # as `patchbay approvals deny` writes it
    assert session.standalone is not None
    frame = await asyncio.wait_for(session.standalone.get(), 5)
    assert orjson.loads(frame.split(b"data: ", 1)[1])["params"] == {"elicitationId": "a3"}
    assert waits.waiting == 0
    waits.close()
