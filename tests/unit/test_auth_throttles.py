"""The in-process throttles, on a clock the test moves: failed sign-ins per address (``AddressThrottle``) and
registrations per address (``RateLimit``), each at the edges of its window and of its memory bound."""

from __future__ import annotations

import collections

import pytest
from tests.support.clock import Clock

from patchbay.auth.lockout import MAX_ADDRESSES, AddressThrottle
from patchbay.auth.register import RateLimit

pytestmark = pytest.mark.anyio


async def test_the_failure_that_reaches_the_limit_blocks_the_address_until_the_oldest_ages_out() -> None:
    clock = Clock()
    throttle = AddressThrottle(3, 60, clock)
    assert not await throttle.blocked("10.0.0.1")
    answers = []
    for _ in range(4):
        answers.append(await throttle.failed("10.0.0.1"))
        clock.now += 10
    assert answers == [False, False, True, False]  # only the one that blocks says so
    assert await throttle.blocked("10.0.0.1")
    assert not await throttle.blocked("10.0.0.2")
    clock.now = 1069.999  # failures at 1000, 1010, 1020, 1030: the first is out of the window
    assert await throttle.blocked("10.0.0.1")
    clock.now = 1070.0  # exactly one window after the second: it no longer counts either
    assert not await throttle.blocked("10.0.0.1")
    assert list(throttle.failures["10.0.0.1"]) == [1020.0, 1030.0]


async def test_an_address_whose_failures_all_aged_out_is_forgotten() -> None:
    clock = Clock()
    throttle = AddressThrottle(5, 60, clock)
    await throttle.failed("a")
    clock.now += 30
    await throttle.failed("a")
    assert list(throttle.failures["a"]) == [1000.0, 1030.0]
    clock.now += 30
    assert not await throttle.blocked("a")
    assert list(throttle.failures["a"]) == [1030.0]
    clock.now += 30
    assert not await throttle.blocked("a")
    assert throttle.failures == {}
    assert not await throttle.failed("a")  # starts again from one
    assert list(throttle.failures["a"]) == [1090.0]


async def test_failures_older_than_the_window_do_not_count_towards_the_next_block() -> None:
    clock = Clock()
    throttle = AddressThrottle(2, 60, clock)
    await throttle.failed("a")
    clock.now += 100  # nothing asked in between: the old failure is dropped when the next one is counted
    assert await throttle.failed("a") is False
    assert list(throttle.failures["a"]) == [1100.0]
    assert await throttle.failed("a") is True


def fill(throttle: AddressThrottle, clock: Clock, count: int) -> None:
    for i in range(count):
        throttle.failures[f"10.{i}"] = collections.deque([clock.now + i])


async def test_a_full_table_first_drops_addresses_whose_failures_aged_out() -> None:
    clock = Clock()
    throttle = AddressThrottle(5, 60, clock)
    fill(throttle, clock, MAX_ADDRESSES)
    throttle.failures["10.0"][0] = clock.now - 60  # one address's only failure is now out of the window
    await throttle.failed("new")
    assert len(throttle.failures) == MAX_ADDRESSES
    assert "10.0" not in throttle.failures and "new" in throttle.failures


async def test_a_full_table_of_recent_failures_forgets_the_half_that_failed_longest_ago() -> None:
    clock = Clock()
    throttle = AddressThrottle(5, 1_000_000, clock)
    fill(throttle, clock, MAX_ADDRESSES - 1)
    clock.now += MAX_ADDRESSES
    await throttle.failed("last-before-full")  # the table is not full before this one: nothing is dropped
    assert len(throttle.failures) == MAX_ADDRESSES
    clock.now += 1
    await throttle.failed("new")
    assert len(throttle.failures) == MAX_ADDRESSES // 2 + 1
    assert "10.4999" not in throttle.failures and "10.5000" in throttle.failures
    assert "last-before-full" in throttle.failures and "new" in throttle.failures
    assert await throttle.failed("10.5000") is False  # a known address never prunes
    assert len(throttle.failures) == MAX_ADDRESSES // 2 + 1


def test_the_table_bound_is_ten_thousand_addresses() -> None:
    assert MAX_ADDRESSES == 10_000


async def test_registrations_are_limited_per_address_in_a_sliding_minute() -> None:
    clock = Clock()
    limit = RateLimit(2, clock)
    assert await limit.allow("a") and await limit.allow("a")
    clock.now += 30
    assert not await limit.allow("a")  # refused, and not counted
    assert await limit.allow("b")
    assert list(limit.events["a"]) == [1000.0, 1000.0]
    clock.now = 1059.999
    assert not await limit.allow("a")
    clock.now = 1060.0  # a minute after the first two
    assert await limit.allow("a")
    assert list(limit.events["a"]) == [1060.0]


async def test_the_registration_table_is_emptied_past_ten_thousand_addresses() -> None:
    clock = Clock()
    limit = RateLimit(1, clock)
    for i in range(10_000):
        assert await limit.allow(f"10.{i}")
    assert await limit.allow("one-more")
    assert len(limit.events) == 10_001
    assert await limit.allow("10.0")  # the table was over the bound: forgotten, so allowed again
    assert list(limit.events) == ["10.0"]
