"""Limits and throttles one fleet shares through Redis: ``[[limits]]`` rate budgets, the sign-in throttle per
address, the registration throttle, and one-shot MRTR request states.

Every check is one Lua call reading Redis ``TIME``, so replicas whose clocks disagree still share one budget
(reference/governance-and-fleet.md A5: "use a Redis Lua script reading Redis TIME, not the pod clock").

While Redis is unreachable the budgets and throttles go on in each replica's memory with the limit divided by the
replicas known to be live: a fleet of three then admits about what one shared budget would, never unlimited and
never nothing, and never waits on a socket (the link fails fast). When Redis answers again they are shared again.
MRTR states are the exception: a state's single use cannot be proved without the shared record, so they are
refused while Redis is down (replay safety first).
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from patchbay.auth.lockout import AddressThrottle
from patchbay.auth.register import RateLimit
from patchbay.errors import RpcError
from patchbay.fleet.link import FleetUnavailable
from patchbay.gate.limits_config import Rate
from patchbay.gate.limits_rate import MemoryRateStore
from patchbay.protocol import jsonrpc

log = logging.getLogger("patchbay.fleet")

# KEYS[1] the budget; ARGV: emission interval (s), burst, the caller's clock ('' = Redis TIME).
# The arithmetic is gate.limits_rate.gcra's, in seconds, so a replica's decisions match the memory store's.
# TATs are written with %.17g: a double survives the round trip through a Redis string exactly.
GCRA_TAKE = """
local now
if ARGV[3] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
else
  now = tonumber(ARGV[3])
end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local stored = redis.call('GET', KEYS[1])
local tat = now
if stored then tat = tonumber(stored) end
local start = math.max(tat, now)
local wait = (start - now) - (burst - 1) * interval
if wait > 0 then return string.format('%.17g', wait) end
local new = start + interval
-- The key holds nothing once its TAT has passed: let it go just after.
redis.call('SET', KEYS[1], string.format('%.17g', new), 'PX', math.ceil((new - now) * 1000) + 1000)
return false
"""
GCRA_REFUND = """
local stored = redis.call('GET', KEYS[1])
if stored then
  redis.call('SET', KEYS[1], string.format('%.17g', tonumber(stored) - tonumber(ARGV[1])), 'KEEPTTL')
end
return 1
"""
# A sliding window of event times (auth.lockout.AddressThrottle, auth.register.RateLimit) in a sorted set.
# KEYS[1] the window; ARGV: window (s), limit, mode ('count' | 'add' | 'allow'), a unique member.
# 'count' answers how many events are in the window; 'add' records one and answers the count; 'allow' records one
# only when fewer than limit are there, answering -1 when not. Beyond limit + 1 the oldest go: whether the window
# is full, and when it frees, depends only on the newest limit events.
WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.17g', now - window))
local count = redis.call('ZCARD', KEYS[1])
if ARGV[3] == 'count' then return count end
if ARGV[3] == 'allow' and count >= limit then return -1 end
redis.call('ZADD', KEYS[1], string.format('%.17g', now), ARGV[4])
count = count + 1
if count > limit + 1 then
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, count - limit - 2)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
return count
"""

Script = Callable[[list[str], list[Any]], Awaitable[Any]]


class LinkLike(Protocol):
    """What these stores need of :class:`patchbay.fleet.link.RedisLink`."""

    def key(self, *parts: str) -> str: ...

    def script(self, lua: str) -> Any: ...

    async def do(self, fn: Any) -> Any: ...


class Outage:
    """Logs an outage once and counts the checks answered locally (``patchbay_rate_limit_degraded_total``)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.down = False
        self.local_checks = 0

    def local(self) -> None:
        self.local_checks += 1
        if not self.down:
            self.down = True
            log.warning(
                "Redis is unreachable: %s are kept per replica (each replica's share of the limit) until it is back",
                self.what,
            )

    def shared(self) -> bool:
        """Note a check Redis answered; True when it ends an outage (the local state is then dropped)."""
        if not self.down:
            return False
        self.down = False
        log.warning("Redis is back: %s are shared by the fleet again", self.what)
        return True


def share(count: int, replicas: int) -> int:
    """One replica's share of ``count`` among ``replicas``: at least 1, so an outage never refuses everything."""
    return max(1, count // max(1, replicas))


class RedisRateStore:
    """:class:`patchbay.gate.limits_rate.RateStore` over Redis: one Lua GCRA per check on the server's clock.

    ``caller_clock`` makes the script use the ``now`` it is given instead of Redis ``TIME``: only for tests that
    compare decisions with the memory store's under one clock.
    """

    def __init__(self, link: LinkLike, live: Callable[[], int], *, caller_clock: bool = False) -> None:
        self.link = link
        self.live = live
        self.caller_clock = caller_clock
        self.outage = Outage("[[limits]] rate budgets")
        self.local = MemoryRateStore()
        self._take: Script = link.script(GCRA_TAKE)
        self._refund: Script = link.script(GCRA_REFUND)

    async def take(self, key: str, rate: Rate, burst: int, now: float) -> float | None:
        clock = repr(now) if self.caller_clock else ""
        try:
            wait = await self._take([self.link.key("rl", key)], [repr(rate.interval), burst, clock])
        except FleetUnavailable:
            self.outage.local()
            replicas = self.live()
            return await self.local.take(key, _slower(rate, replicas), share(burst, replicas), now)
        if self.outage.shared():
            self.local = MemoryRateStore()
        return float(wait) if wait is not None else None

    async def refund(self, key: str, rate: Rate) -> None:
        # A refund goes where the take most likely went; one lost at the moment Redis fails or returns costs one
        # call of budget, which is the price of never waiting on Redis.
        try:
            await self._refund([self.link.key("rl", key)], [repr(rate.interval)])
        except FleetUnavailable:
            await self.local.refund(key, _slower(rate, self.live()))


def _slower(rate: Rate, replicas: int) -> Rate:
    """``rate`` divided among ``replicas``: the same count over a period ``replicas`` times as long."""
    return rate if replicas <= 1 else Rate(rate.count, rate.period * replicas, rate.unit)


class _Window:
    """A sliding window per key in Redis (the ``WINDOW`` script), with a local fallback."""

    def __init__(self, link: LinkLike, prefix: str, what: str) -> None:
        self.link = link
        self.prefix = prefix
        self.outage = Outage(what)
        self._script: Script = link.script(WINDOW)

    async def run(self, key: str, window: float, limit: int, mode: str) -> int | None:
        """The script's answer, or None when Redis cannot be reached (the caller then decides locally)."""
        try:
            answer = await self._script(
                [self.link.key(self.prefix, key)], [repr(window), limit, mode, secrets.token_hex(8)]
            )
        except FleetUnavailable:
            self.outage.local()
            return None
        self.outage.shared()
        return int(answer)


class SharedThrottle:
    """The sign-in throttle per address (:class:`patchbay.auth.lockout.AddressThrottle`) shared by the fleet:
    ``{p}lock:{address}``. N replicas give an address the same ``limit`` failures, not N times as many."""

    def __init__(
        self,
        link: LinkLike,
        live: Callable[[], int],
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window = window
        self.live = live
        self._shared = _Window(link, "lock", "sign-in throttles")
        self.local = AddressThrottle(limit, window, clock)

    async def blocked(self, address: str) -> bool:
        count = await self._shared.run(address, self.window, self.limit, "count")
        if count is None:
            self.local.limit = share(self.limit, self.live())
            return await self.local.blocked(address)
        return count >= self.limit

    async def failed(self, address: str) -> bool:
        count = await self._shared.run(address, self.window, self.limit, "add")
        if count is None:
            self.local.limit = share(self.limit, self.live())
            return await self.local.failed(address)
        return count == self.limit


class SharedRateLimit:
    """The registration throttle per address (:class:`patchbay.auth.register.RateLimit`) shared by the fleet:
    ``{p}reg:{address}``."""

    def __init__(self, link: LinkLike, live: Callable[[], int], per_minute: int) -> None:
        self.per_minute = per_minute
        self.live = live
        self._shared = _Window(link, "reg", "registration throttles")
        self.local = RateLimit(per_minute)

    async def allow(self, key: str) -> bool:
        answer = await self._shared.run(key, 60.0, self.per_minute, "allow")
        if answer is None:
            self.local.per_minute = share(self.per_minute, self.live())
            return await self.local.allow(key)
        return answer >= 0


UNAVAILABLE = (
    "The fleet's shared store (Redis) is unreachable: multi-round requests cannot continue (a request state's "
    "single use cannot be checked); start the request again shortly"
)


class SharedNonces:
    """Spent MRTR request states, ``{p}mrtr:{nonce}`` set NX until the state expires: a state used on one replica
    is refused on every other (patchbay.protocol.mrtr)."""

    def __init__(self, link: LinkLike) -> None:
        self.link = link

    async def spend(self, nonce: str, expiry: float) -> bool:
        """True when ``nonce`` was unused (and is now spent), False when it was used before.

        Raises:
            RpcError: Redis cannot be reached (fail closed: a replay could not be told apart).
        """
        key = self.link.key("mrtr", nonce)
        ttl_ms = max(1, int((expiry - time.time()) * 1000) + 1000)
        try:
            answer = await self.link.do(lambda client: client.set(key, b"1", nx=True, px=ttl_ms))
        except FleetUnavailable:
            raise RpcError(jsonrpc.INTERNAL_ERROR, UNAVAILABLE, status=503) from None
        return bool(answer)
