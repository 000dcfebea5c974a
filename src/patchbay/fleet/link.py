"""The one connection to the fleet's Redis: bounded commands, fail-fast while Redis is down, one probe a second.

Every part of the fleet (sessions, events, limits, the bus, heartbeats) talks to Redis through :class:`RedisLink`,
so that an outage is noticed once and every caller then fails at once with :class:`FleetUnavailable` instead of
each request waiting ``timeout_ms`` on a dead socket. While the link is down, at most one command a second goes to
Redis (the probe); the first that succeeds marks the link up again and runs the ``on_up`` callbacks.

Concurrency is bounded: at most ``MAX_CONNECTIONS`` commands are in flight on a replica's pool, and a command beyond
that waits up to ``timeout_ms`` for a free connection. A busy pool is load, not an outage: a command that waited in
vain fails with :class:`FleetBusy` and the link stays up (redis-py's default pool would raise "Too many connections",
which looks like a connection failure and would take the link down for every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit

if TYPE_CHECKING:  # redis is imported only when a fleet is built: single-node code may import FleetUnavailable
    import redis.asyncio as aioredis

log = logging.getLogger("patchbay.fleet")

T = TypeVar("T")
PROBE_SECONDS = 1.0
# Connections a replica opens to Redis for commands (the bus holds one more of its own). One command takes ~0.1 ms
# of Redis time, so even c=64 rarely waits; a fleet of N replicas opens at most N times this many (Redis allows 10,000).
MAX_CONNECTIONS = 32
Outage = tuple[type[BaseException], ...]


def outage_errors() -> Outage:
    """What "Redis is unreachable" looks like from redis-py: refused or reset connections, timeouts, a server still
    loading its data (BusyLoadingError is a ConnectionError) or a wrong password (AuthenticationError, too)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)


class FleetUnavailable(Exception):
    """Redis, the fleet's shared store, cannot be reached; the message is safe to show a client (no URL, no secret).

    ``what`` names the feature that needs Redis, e.g. "stream resumption".
    """

    def __init__(self, what: str = "") -> None:
        self.what = what
        part = f": {what} is unavailable" if what else ""
        super().__init__(f"The fleet's shared store (Redis) is unreachable{part}; try again shortly")


class FleetBusy(FleetUnavailable):
    """Every connection to Redis stayed busy for ``timeout_ms``: this command failed, but Redis is not down."""

    def __init__(self, what: str = "") -> None:
        Exception.__init__(self, "The fleet's shared store (Redis) is busy; try again shortly")
        self.what = what


def redact(url: str) -> str:
    """``url`` without its password (``redis://:***@host:6379/0``), for logs and health reports."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:***@{hostport}"
    query = urlencode([(k, "***" if k.lower() == "password" else v) for k, v in parse_qsl(parts.query)], safe="*")
    # Built by hand: urlunsplit drops the empty authority of unix:///path.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


class RedisLink:
    """The fleet's Redis client with outage handling; ``key()`` builds every key under the fleet's prefix."""

    def __init__(
        self, url: str, *, key_prefix: str = "pb:", timeout_ms: int = 500, max_connections: int = MAX_CONNECTIONS
    ) -> None:
        import redis.asyncio as aioredis

        self.outage = outage_errors()
        self.where = redact(url)
        self.prefix = key_prefix
        self.timeout = timeout_ms / 1000
        self.max_connections = max_connections
        # The pool may open a spare connection or two beyond the slots (e.g. a script load racing a command); it
        # waits rather than raises when they are all taken, as a safety net: the slots already bound the load.
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections + 2, timeout=self.timeout, **_options(self.timeout)
        )
        self.client: aioredis.Redis = aioredis.Redis.from_pool(pool)
        # The bus's subscription holds its connection for good: its own client, so it never waits for a slot.
        self.subscriber: aioredis.Redis = aioredis.Redis.from_url(url, **_options(self.timeout))
        self._slots = asyncio.Semaphore(max_connections)
        self.up = True
        self.down_since: float | None = None
        self.last_error = ""
        self._next_probe = 0.0
        self._probing = False
        self._on_up: list[Callable[[], Any]] = []
        self._prober: asyncio.Task[None] | None = None
        self._closing = False
        self._callbacks: set[asyncio.Task[Any]] = set()  # on_up coroutines in flight (held against GC)

    def key(self, *parts: str) -> str:
        """``prefix + ":".join(parts)``: ``key("s", sid)`` → ``pb:s:<sid>``."""
        return self.prefix + ":".join(parts)

    def on_up(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` (a coroutine function is awaited in a task) whenever Redis answers again."""
        self._on_up.append(callback)

    async def do(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        """``await fn(client)``, bounded by the timeout; ``fn`` uses one connection at a time (one command or one
        pipeline after another).

        Raises:
            FleetBusy: every connection stayed busy for the timeout (the link stays up).
            FleetUnavailable: Redis is down (this call found out, or an earlier one did and no probe is due).
        """
        if not self.up:
            return await self._probe_with(fn)
        await self._take_slot()
        try:
            return await fn(self.client)
        except self.outage as exc:
            self.mark_down(exc)
            raise FleetUnavailable from None
        finally:
            self._slots.release()

    async def _take_slot(self) -> None:
        if not self._slots.locked():
            await self._slots.acquire()  # never suspends while a slot is free: the hot path stays one call
            return
        try:
            async with asyncio.timeout(self.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise FleetBusy from None

    async def _probe_with(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
        now = time.monotonic()
        if self._probing or now < self._next_probe:
            raise FleetUnavailable
        self._probing, self._next_probe = True, now + PROBE_SECONDS
        try:
            result = await fn(self.client)
        except self.outage as exc:
            self.last_error = _describe(exc)
            raise FleetUnavailable from None
        finally:
            self._probing = False
        self._mark_up()
        return result

    def script(self, lua: str) -> Callable[[Sequence[str], Sequence[Any]], Awaitable[Any]]:
        """A Lua script run with EVALSHA (EVAL after NOSCRIPT, e.g. after a Redis restart) through :meth:`do`."""
        registered = self.client.register_script(lua)

        async def run(keys: Sequence[str], args: Sequence[Any]) -> Any:
            return await self.do(lambda client: registered(keys=list(keys), args=list(args), client=client))

        return run

    def mark_down(self, exc: BaseException) -> None:
        """Note an outage seen by someone else (e.g. the bus's subscription dropped)."""
        self.last_error = _describe(exc)
        if self.up:
            self.up = False
            self.down_since = time.time()
            self._next_probe = time.monotonic() + PROBE_SECONDS
            log.warning("redis at %s is unreachable (%s); fleet calls fail fast until it answers", self.where, exc)

    async def probe(self) -> bool:
        """One PING when a probe is due (whether or not the link is down); True when Redis answered."""
        try:
            await self.do(lambda client: client.ping())
        except FleetUnavailable:
            return False
        return True

    async def start(self) -> None:
        """Start probing once a second while down, so the link comes back without waiting for traffic."""
        if self._prober is None:
            self._closing = False
            self._prober = asyncio.create_task(self._probe_loop(), name="patchbay-redis-probe")

    async def close(self) -> None:
        if self._prober is not None:
            self._closing = True  # redis-py can absorb a cancellation that lands inside a command
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
            self._prober = None
        with contextlib.suppress(*self.outage):
            await self.client.aclose()
        with contextlib.suppress(*self.outage):
            await self.subscriber.aclose()

    async def _probe_loop(self) -> None:
        while not self._closing:
            await asyncio.sleep(PROBE_SECONDS / 4)
            if not self.up and not self._probing and time.monotonic() >= self._next_probe:
                await self.probe()

    def _mark_up(self) -> None:
        if self.up:
            return
        self.up, self.down_since, self.last_error = True, None, ""
        log.info("redis at %s answers again", self.where)
        for callback in list(self._on_up):
            try:
                result = callback()
                if asyncio.iscoroutine(result):
                    task = asyncio.ensure_future(result)
                    self._callbacks.add(task)
                    task.add_done_callback(self._callback_done)
            except Exception:  # a subscriber's bug must not keep the link down
                log.exception("a redis on_up callback failed")

    def _callback_done(self, task: asyncio.Task[Any]) -> None:
        self._callbacks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("a redis on_up callback failed", exc_info=task.exception())


def _options(timeout: float) -> dict[str, Any]:
    """Connection options: bytes answers, and no client-side retries: one attempt bounded by the timeout, then the
    link is down and callers fail fast."""
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "decode_responses": False,
    }


def _describe(exc: BaseException) -> str:
    """A short, secret-free description of a connection failure (redis-py names host:port, never the password)."""
    text = str(exc) or type(exc).__name__
    return text[:200]
