"""GCRA budgets in the in-memory store: the rate, the burst, the retry time and the bound on keys (clock given)."""

from __future__ import annotations

import pytest

from patchbay.gate.limits_config import parse_rate
from patchbay.gate.limits_rate import MemoryRateStore, gcra

pytestmark = pytest.mark.anyio


async def allowed_at(store: MemoryRateStore, key: str, rate: str, burst: int, now: float, tries: int) -> int:
    parsed = parse_rate(rate)
    return sum([await store.take(key, parsed, burst, now) is None for _ in range(tries)])


async def test_a_full_burst_is_allowed_at_once_then_the_next_call_waits_one_interval() -> None:
    store, rate = MemoryRateStore(), parse_rate("60/minute")
    assert await allowed_at(store, "k", "60/minute", 60, now=100.0, tries=100) == 60
    assert await store.take("k", rate, 60, 100.0) == pytest.approx(1.0)
    assert await store.take("k", rate, 60, 100.25) == pytest.approx(0.75)
    assert await store.take("k", rate, 60, 101.0) is None
    assert await store.take("k", rate, 60, 101.0) == pytest.approx(1.0)


async def test_over_a_long_run_the_calls_allowed_never_exceed_the_rate_plus_the_burst() -> None:
    store, rate = MemoryRateStore(), parse_rate("10/second")
    allowed = 0
    for tick in range(10_000):  # 100 calls a second for 100 seconds, against 10/second with burst 5
        allowed += await store.take("k", rate, 5, tick / 100) is None
    assert 1000 <= allowed <= 1000 + 5  # honoured both ways: never more, and everything it promises


async def test_a_burst_of_one_spaces_calls_exactly_one_interval_apart() -> None:
    store, rate = MemoryRateStore(), parse_rate("4/minute")
    assert await store.take("k", rate, 1, 0.0) is None
    assert await store.take("k", rate, 1, 14.9) == pytest.approx(0.1)
    assert await store.take("k", rate, 1, 15.0) is None


async def test_a_day_quota_names_the_wait_until_the_next_call_would_be_allowed() -> None:
    store, rate = MemoryRateStore(), parse_rate("1000/day")
    assert await allowed_at(store, "ada", "1000/day", 1000, now=0.0, tries=1000) == 1000
    assert await store.take("ada", rate, 1000, 0.0) == pytest.approx(86.4)
    assert await store.take("bob", rate, 1000, 0.0) is None  # every key has its own budget


async def test_a_refund_gives_back_exactly_one_call() -> None:
    store, rate = MemoryRateStore(), parse_rate("2/minute")
    assert await allowed_at(store, "k", "2/minute", 2, now=0.0, tries=2) == 2
    assert await store.take("k", rate, 2, 0.0) is not None
    await store.refund("k", rate)
    assert await store.take("k", rate, 2, 0.0) is None
    assert await store.take("k", rate, 2, 0.0) is not None


def test_gcra_refuses_without_moving_the_arrival_time() -> None:
    rate = parse_rate("1/second")
    assert gcra(5.0, rate, 1, 4.0) == (5.0, pytest.approx(1.0))
    assert gcra(5.0, rate, 1, 5.0) == (6.0, None)


async def test_keys_whose_budget_has_refilled_are_dropped_first_and_lose_nothing() -> None:
    store, rate = MemoryRateStore(max_keys=100), parse_rate("1/second")
    for index in range(100):
        await store.take(f"old{index}", rate, 1, 0.0)
    await store.take("late", rate, 1, 0.0)  # over the bound while every old key is still mid-budget
    assert len(store) <= 100
    store.evicted = 0
    for index in range(100):
        await store.take(f"new{index}", rate, 1, 10.0)  # the old keys' budgets refilled at 1.0
    assert len(store) <= 100
    assert store.evicted == 0
    assert await store.take("new99", rate, 1, 10.0) is not None  # the new keys were kept


async def test_memory_stays_bounded_when_every_key_is_live() -> None:
    store, rate = MemoryRateStore(max_keys=1000), parse_rate("1/day")
    for index in range(10_000):
        await store.take(f"k{index}", rate, 1, 0.0)
        assert len(store) <= 1000
    assert store.evicted >= 9000
    assert await store.take("k9999", rate, 1, 0.0) is not None  # the most recent keys are the ones kept


@pytest.mark.parametrize("rate", ["1/hour", "10/minute", "3/second", "1000/day"])
def test_a_fresh_budget_always_allows_its_first_call_whatever_the_clock_reads(rate: str) -> None:
    # Written as (now + interval) - now - interval, float rounding left a tiny positive wait for some clock values
    # (~0.7 % of them for 1/hour): a first call refused "for 1 ms". Clock readings a long-running server sees.
    parsed = parse_rate(rate)
    for step in range(20_000):
        now = 12_345.678 + step * 97.031
        assert gcra(now, parsed, 1, now)[1] is None, now
