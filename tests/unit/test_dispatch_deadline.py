"""The gate's per-call deadline (patchbay.protocol.dispatch._within) keeps asyncio.timeout's contract."""

from __future__ import annotations

import asyncio

import pytest

from patchbay.protocol.dispatch import _within

pytestmark = pytest.mark.anyio


async def _forever() -> int:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_work_past_its_deadline_raises_timeout_error_and_the_task_is_not_left_cancelled() -> None:
    task = asyncio.current_task()
    assert task is not None
    with pytest.raises(TimeoutError):
        await _within(0.01, _forever)
    assert task.cancelling() == 0
    await asyncio.sleep(0)  # no cancellation is still pending on the task


async def test_work_in_time_returns_its_result_and_leaves_the_task_alone() -> None:
    async def quick() -> int:
        await asyncio.sleep(0)
        return 42

    task = asyncio.current_task()
    assert task is not None
    assert await _within(5.0, quick) == 42
    assert task.cancelling() == 0


async def test_a_cancellation_from_elsewhere_stays_a_cancellation() -> None:
    started = asyncio.Event()

    async def waiting() -> int:
        started.set()
        return await _forever()

    runner = asyncio.create_task(_within(60.0, waiting))
    await started.wait()
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert runner.cancelled()


async def test_an_outer_deadline_is_the_outer_one_s_timeout_not_this_one_s() -> None:
    inner_timed_out = False

    async def inner() -> None:
        nonlocal inner_timed_out
        try:
            await _within(60.0, _forever)
        except TimeoutError:
            inner_timed_out = True
            raise

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await inner()
    assert not inner_timed_out


async def test_errors_of_the_work_pass_through_unchanged() -> None:
    async def failing() -> int:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await _within(5.0, failing)
