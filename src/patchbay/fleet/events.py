"""Resumable SSE streams across replicas: the events of a 2025-era session's streams kept in Redis.

Every event of a session's stream goes to the Redis stream ``{prefix}ev:{sid}:{stream}``, so ``GET`` with
``Last-Event-ID`` on any replica replays what followed that event and then follows the stream live until its final
entry (MCP 2025-11-25 basic/transports: resumability and redelivery). The key holds the session's own random id:
a caller verified as the session's owner can only ever name that session's events, never another's.

Event ``{stream}_{n}`` is the Redis entry ``1-{n}``, so the id a client holds names its entry without a lookup and
parses the same on every replica. Appending never waits for Redis: one writer task per process pipelines the
queued entries in order, after the live client got the event. An entry that cannot be written marks its stream
lost (logged once): the live client is unaffected, and a later resume of that stream is refused with the reason.

The queue is bounded (``[redis] event_queue_bytes`` and ``MAX_ENTRIES``): when Redis is slower than the replica
produces events, the stream whose event does not fit is lost the same way, its queued entries are dropped, and the
other streams keep being written. A lost stream's ``lost`` entry carries the last id handed out on it, rewritten
as more are, so a stream that never ends (the standalone GET stream) is marked too.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections import deque
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from patchbay.errors import RpcError
from patchbay.fleet.link import FleetUnavailable, RedisLink
from patchbay.protocol import jsonrpc
from patchbay.transport import http
from patchbay.transport.sse import KEEPALIVE, SSE_HEADERS, EventLog

if TYPE_CHECKING:
    from patchbay.fleet import Fleet
    from patchbay.settings import Settings
    from patchbay.transport.http import Send
    from patchbay.transport.sessions import Session

log = logging.getLogger("patchbay.fleet")

DATA: Final = b"d"  # the framed event
END: Final = b"end"  # the stream's response was sent: nothing follows
LOST: Final = b"lost"  # some of the stream's events could not be written: it cannot be resumed
OWNER: Final = b"r"  # on a stream's first entry: the replica writing it (a resume stops waiting once it is gone)
GET_STREAM: Final = "get"  # the session's standalone GET stream, continued across reconnects
BATCH: Final = 256
MAX_ENTRIES: Final = 65_536  # queued entries at most, whatever their size (one batch of writes is BATCH)
ENTRY_COST: Final = 320  # bytes an entry costs in memory besides its event: tuple, dict, deque slot
LOST_REASON: Final = (
    "some of this stream's events could not be stored for resumption (Redis was unreachable or fell behind); "
    "it cannot be resumed"
)
TRIMMED_REASON: Final = "the events that followed it are no longer kept (see [redis] event_max)"
_STREAM_NAME = re.compile(r"[0-9a-f]{12}|get")
Entries = list[tuple[bytes, dict[bytes, bytes]]]


class RedisEventLog(EventLog):
    """One stream's events, written to Redis; keeps none in memory (``events`` stays empty)."""

    __slots__ = ("_seq", "_writer", "broken", "key", "lost_at", "marked", "queued")

    def __init__(self, writer: _Writer, key: str, stream: str, start: int = 0) -> None:
        super().__init__(limit=0)
        self.id = stream
        self.key = key
        self.broken = False  # an entry could not be written: the stream cannot be resumed
        self.lost_at = -1  # once broken: the id its lost entry is to carry (the last one handed out)
        self.marked = -1  # the id of the lost entry last written
        self.queued = 0  # its entries in the writer's queue
        self._writer = writer
        self._seq = start

    def next_id(self) -> str:
        return f"{self.id}_{self._seq}"

    def append(self, framed: bytes) -> None:
        self._writer.put(self, self._seq, {DATA: framed}, len(framed))
        self._seq += 1
        self._wake()

    def finish(self) -> None:
        if not self.done:
            self.done = True
            self._writer.put(self, self._seq, {END: b"1"}, 1)
            self._wake()


Queued = tuple[RedisEventLog, int, dict[bytes, bytes], int]  # stream, seq, fields, cost in bytes


class _Writer:
    """Writes queued entries in order, one pipeline per batch, in a task that runs only while there is work.

    The queue holds at most ``max_bytes`` (events plus ENTRY_COST each, counting the batch being written) and
    MAX_ENTRIES entries; an event that does not fit loses its stream instead of waiting or growing the queue.
    """

    def __init__(self, link: RedisLink, replica_id: str, ttl: int, maxlen: int, max_bytes: int) -> None:
        self.link = link
        self.replica_id = replica_id
        self.ttl = ttl
        self.maxlen = maxlen
        self.max_bytes = max_bytes
        self.queued_bytes = 0  # queued and in-flight entries' cost
        self.peak_bytes = 0
        self._queue: deque[Queued] = deque()
        self._lost: dict[RedisEventLog, None] = {}  # lost streams whose lost entry is to be (re)written
        self._task: asyncio.Task[None] | None = None
        self._warned = False
        link.on_up(self.kick)

    def put(self, stream: RedisEventLog, seq: int, fields: dict[bytes, bytes], size: int) -> None:
        """Queue ``fields`` (``size`` bytes of values) as entry ``seq`` of ``stream``, or lose the stream."""
        if stream.broken:
            self._mark(stream, seq)
            return
        cost = ENTRY_COST + size
        queued = self.queued_bytes + cost
        if queued > self.max_bytes or len(self._queue) >= MAX_ENTRIES:
            self._overflow(stream, seq)
            return
        self._queue.append((stream, seq, fields, cost))
        stream.queued += 1
        self.queued_bytes = queued
        if queued > self.peak_bytes:
            self.peak_bytes = queued
        if self._task is None:
            self.kick()

    def kick(self) -> None:
        """Start the writing task if there is work and none runs (also when Redis answers again)."""
        if self._task is None and (self._queue or self._lost):
            self._task = asyncio.get_running_loop().create_task(self._drain(), name="patchbay-event-writer")

    async def idle(self) -> None:
        """Return once everything queued so far was written (or given up)."""
        while self._task is not None:
            await asyncio.shield(self._task)

    def _overflow(self, stream: RedisEventLog, seq: int) -> None:
        """Lose ``stream``: drop its queued entries (room for the others) and have its lost entry written."""
        stream.broken = True
        if stream.queued:
            kept: deque[Queued] = deque()
            for item in self._queue:
                if item[0] is stream:
                    self.queued_bytes -= item[3]
                else:
                    kept.append(item)
            self._queue, stream.queued = kept, 0
        self._mark(stream, seq)
        self._warn("more events wait for Redis than [redis] event_queue_bytes holds")

    def _mark(self, stream: RedisEventLog, seq: int) -> None:
        stream.lost_at = max(stream.lost_at, seq)
        self._lost[stream] = None
        self.kick()

    async def _drain(self) -> None:
        try:
            await asyncio.sleep(0)  # the live client's flush, scheduled by the same append, goes first
            while self._queue or self._lost:
                batch = self._take()
                markers = [s for s in self._lost if s.lost_at > s.marked]
                self._lost.clear()
                try:
                    await self._write(batch, markers)
                finally:
                    self.queued_bytes -= sum(cost for *_, cost in batch)
                if self._lost and not self.link.up:
                    break  # lost entries wait for Redis: the next event or the link coming up writes them
        finally:
            self._task = None

    def _take(self) -> list[Queued]:
        """The next batch; entries of a stream lost meanwhile are dropped (they would leave a gap)."""
        batch: list[Queued] = []
        while self._queue and len(batch) < BATCH:
            item = self._queue.popleft()
            item[0].queued -= 1
            if item[0].broken:
                self.queued_bytes -= item[3]
                self._mark(item[0], item[1])
            else:
                batch.append(item)
        return batch

    async def _write(self, batch: list[Queued], markers: list[RedisEventLog]) -> None:
        wanted = [(s, seq, f) for s, seq, f, _ in batch] + [(s, s.lost_at, {LOST: b"1"}) for s in markers]
        if not wanted:
            return

        def commands(client: aioredis.Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            for stream, seq, fields in wanted:
                if seq == 0:
                    fields = {**fields, OWNER: self.replica_id.encode()}
                pipe.xadd(stream.key, fields, id=f"1-{seq}", maxlen=self.maxlen, approximate=True)  # type: ignore[arg-type]
            for key in dict.fromkeys(stream.key for stream, _, _ in wanted):
                pipe.expire(key, self.ttl)
            return pipe.execute(raise_on_error=False)

        try:
            results = await self.link.do(commands)
        except FleetUnavailable:
            for stream, seq, _ in wanted:
                stream.broken = True
                self._lost[stream] = None
                stream.lost_at = max(stream.lost_at, seq)
            self._warn("Redis is unreachable")
            return
        self._settle(wanted, results)

    def _settle(self, wanted: list[tuple[RedisEventLog, int, dict[bytes, bytes]]], results: list[Any]) -> None:
        failed = ""
        for (stream, seq, fields), result in zip(wanted, results, strict=False):
            if LOST in fields:
                # Written, or refused for good (an id below the stream's last): either way not retried.
                stream.marked = max(stream.marked, seq)
            if isinstance(result, Exception):
                failed = failed or str(result)
                if not stream.broken:
                    stream.broken = True
                    self._mark(stream, seq)
        if failed:
            self._warn(failed)
        elif not self._queue:
            self._warned = False  # caught up: the next trouble is worth a warning again

    def _warn(self, why: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("stream events could not be stored for resumption (%s); live streams go on", why)


class FleetEvents:
    """Event logs in Redis for a fleet's sessions, and resuming them on any replica.

    Call it with a session to make the event log of its next stream (``Session.events``).
    """

    def __init__(
        self,
        link: RedisLink,
        replica_id: str,
        url: str,
        *,
        ttl_seconds: int,
        max_events: int,
        keepalive: float,
        queue_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        self.link = link
        self.writer = _Writer(link, replica_id, ttl_seconds, max_events, queue_bytes)
        self.keepalive = keepalive
        # Blocking reads (XREAD BLOCK) wait up to a keep-alive interval, longer than the link's command timeout.
        self.blocking: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=keepalive + link.timeout + 1,
            socket_connect_timeout=link.timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=False,
        )

    def __call__(self, session: Session) -> EventLog:
        stream = secrets.token_hex(6)
        return RedisEventLog(self.writer, self.key(session, stream), stream)

    def key(self, session: Session, stream: str) -> str:
        return self.link.key("ev", session.sid, stream)

    async def close(self) -> None:
        await self.writer.idle()
        await self.blocking.aclose()

    async def replay(self, session: Session, last_event: str, send: Send) -> None:
        """Send what followed ``last_event`` in one of ``session``'s POST streams, then follow it to its end.

        Raises:
            RpcError: before anything was sent: 404 when the id names nothing this session can resume (or events
                that are gone), 503 when Redis is unreachable.
        """
        stream, after = _parse(last_event)
        key = self.key(session, stream)
        first, entries, last = await self._read(lambda c: _ends_and_after(c, key, after))
        if not first:
            raise _unknown(last_event, "nothing to resume")
        problem = _gap(entries, after) or (_ended(last) if not entries else "")
        if problem:
            raise _unknown(last_event, problem)
        owner = first[0][1].get(OWNER)
        await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        position = after
        try:
            while True:
                position, done = await _send_entries(send, entries, position)
                if done:
                    break
                entries = await self.follow(key, position)
                if not entries:
                    if not await self._alive(key, owner):
                        break  # expired, or its replica is gone (the request died with it)
                    await http.chunk(send, KEEPALIVE)
        except FleetUnavailable:
            pass  # the client resumes again from its last event once Redis is back
        await http.end(send)

    async def open_get(self, session: Session, after: int | None) -> tuple[EventLog, list[bytes]]:
        """The event log of the session's standalone GET stream, continuing its numbering across replicas, and
        the framed events that followed ``after`` (a reconnect's Last-Event-ID) for the new stream to send first.

        Raises:
            RpcError: 503 when Redis is unreachable; 404 when what followed ``after`` was lost or is no longer kept.
        """
        key = self.key(session, GET_STREAM)
        missed, last = await self._read(lambda c: _after_and_last(c, key, after))
        if after is not None and _lost_since(missed, last, after):
            raise _unknown(f"{GET_STREAM}_{after}", LOST_REASON)
        if after is not None and missed and _seq(missed[0][0]) != after + 1:
            # Trimmed past ``after`` ([redis] event_max): replaying the rest would skip events without a word.
            raise _unknown(f"{GET_STREAM}_{after}", TRIMMED_REASON)
        start = _seq(last[0][0]) + 1 if last else 1
        stream = RedisEventLog(self.writer, key, GET_STREAM, start)
        if last and LOST in last[0][1]:
            # An empty event above the lost entry: a resume from the new stream's priming id is then not refused.
            stream.append(b"")
        frames = [fields[DATA] for _, fields in missed if fields.get(DATA)]
        return stream, frames

    async def follow(self, key: str, position: int) -> Entries:
        """Entries after ``position``, waiting up to a keep-alive interval for one; [] when none came."""
        block = max(1, int(self.keepalive * 1000))
        found: Any = await self.link.do(lambda _: self.blocking.xread({key: f"1-{position}"}, count=BATCH, block=block))
        return list(found[0][1]) if found else []

    async def _alive(self, key: str, owner: bytes | None) -> bool:
        heartbeat = self.link.key("replica", owner.decode()) if owner else key

        async def check(client: aioredis.Redis) -> Any:
            pipe = client.pipeline(transaction=False)
            pipe.exists(key)
            pipe.exists(heartbeat)
            return await pipe.execute()

        found, beating = await self.link.do(check)
        return bool(found) and bool(beating)

    async def _read(self, fn: Any) -> Any:
        try:
            return await self.link.do(fn)
        except FleetUnavailable:
            raise unavailable("stream resumption") from None


def unavailable(what: str) -> RpcError:
    """The 503 a transport answers while Redis is down, in the fleet's one wording."""
    return RpcError(jsonrpc.INTERNAL_ERROR, str(FleetUnavailable(what)), status=503)


def stream_name(last_event: str) -> str | None:
    """The stream a Last-Event-ID names when it is one of ours (``<12 hex>_<n>`` or ``get_<n>``), else None."""
    parsed = EventLog.parse_id(last_event)
    return parsed[0] if parsed is not None and _STREAM_NAME.fullmatch(parsed[0]) else None


def _parse(last_event: str) -> tuple[str, int]:
    parsed = EventLog.parse_id(last_event)
    if parsed is None or not _STREAM_NAME.fullmatch(parsed[0]):
        raise _unknown(last_event, "nothing to resume")
    return parsed


def _unknown(last_event: str, why: str) -> RpcError:
    return RpcError(jsonrpc.INVALID_REQUEST, f"Unknown Last-Event-ID {last_event!r}: {why}", status=404)


def _seq(entry_id: bytes) -> int:
    return int(entry_id.partition(b"-")[2])


def _gap(entries: Entries, after: int) -> str:
    """Why the entries after ``after`` cannot be replayed, or "" when they can."""
    if not entries:
        return ""
    if LOST in entries[0][1]:
        return LOST_REASON
    if _seq(entries[0][0]) != after + 1:
        return TRIMMED_REASON
    return ""


async def _send_entries(send: Send, entries: Entries, position: int) -> tuple[int, bool]:
    """Send each entry's event in order; (the last position sent, whether the stream has ended)."""
    for entry_id, fields in entries:
        seq = _seq(entry_id)
        if seq != position + 1 or END in fields or LOST in fields:
            return position, True  # a gap or a lost stream ends here: a resume from this point says why
        data = fields.get(DATA)
        if data:
            await http.chunk(send, data)
        position = seq
    return position, False


def _ended(last: Entries) -> str:
    """Why nothing follows an id beyond the stream's last event, or "" while the stream goes on."""
    if last and LOST in last[0][1]:
        return LOST_REASON  # what follows, if the stream goes on, is not being stored
    return "the stream has ended and nothing follows it" if last and END in last[0][1] else ""


def _lost_since(missed: Entries, last: Entries, after: int) -> bool:
    """Whether events of the GET stream that followed ``after`` were lost: a lost entry after it, or the stream's
    last entry is a lost one at or before it (the client got events live that were not stored)."""
    if any(LOST in fields for _, fields in missed):
        return True
    return bool(last) and LOST in last[0][1] and _seq(last[0][0]) <= after


async def _ends_and_after(client: aioredis.Redis, key: str, after: int) -> tuple[Entries, Entries, Entries]:
    """The stream's first entry, the entries after ``after`` and its last entry, in one round trip."""
    pipe = client.pipeline(transaction=False)
    pipe.xrange(key, "-", "+", count=1)
    pipe.xrange(key, f"(1-{after}", "+", count=BATCH)
    pipe.xrevrange(key, "+", "-", count=1)
    first, entries, last = await pipe.execute()
    return first, entries, last


async def _after_and_last(client: aioredis.Redis, key: str, after: int | None) -> tuple[Entries, Entries]:
    """Every entry after ``after`` and the last entry, in one round trip. No COUNT: the stream is trimmed to about
    ``event_max`` entries (approximately, so it may hold a few more), and a reconnect must get all of them."""
    pipe = client.pipeline(transaction=False)
    if after is not None:
        pipe.xrange(key, f"(1-{after}", "+")
    pipe.xrevrange(key, "+", "-", count=1)
    found = await pipe.execute()
    return (found[0] if after is not None else []), found[-1]


def fleet_events(settings: Settings, fleet: Fleet) -> FleetEvents:
    """This replica's event logs in the fleet's Redis (``[redis] event_ttl_seconds``, ``event_max`` and
    ``event_queue_bytes``)."""
    url = settings.redis.url
    assert url is not None  # a fleet exists only with [redis] url
    return FleetEvents(
        fleet.link,
        fleet.replica_id,
        url.get_secret_value(),
        ttl_seconds=settings.redis.event_ttl_seconds,
        max_events=settings.redis.event_max,
        keepalive=settings.server.sse_keepalive_seconds,
        queue_bytes=settings.redis.event_queue_bytes,
    )
