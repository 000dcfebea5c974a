"""MemorySessionStore: idle expiry, the cap evicting the least recently used session, ``get`` touching, and
``delete`` closing what the session still waits for.

reference/mcp-requirements.md §3.1 Sessions, R-013; field-problems E2.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import pytest
from tests.support.clock import Clock

from patchbay.auth.principal import Principal
from patchbay.errors import ToolError
from patchbay.protocol.outstanding import Outstanding
from patchbay.transport import sessions
from patchbay.transport.sessions import MemorySessionStore, Session, owner_of
from patchbay.transport.sse import EventLog


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()  # stands in for time.monotonic inside patchbay.transport.sessions
    monkeypatch.setattr(sessions.time, "monotonic", fake)
    return fake


def new(store: MemorySessionStore, version: str = "2025-11-25") -> str:
    return store.open(version, {}, {"name": "t", "version": "1"}).id


def test_a_session_idle_past_the_limit_is_gone(clock: Clock) -> None:
    store = MemorySessionStore(idle_seconds=60)
    sid = new(store)
    clock.now += 59
    assert store.lookup(sid) is not None
    clock.now += 61
    assert store.lookup(sid) is None
    assert len(store) == 0


def test_get_touches_so_a_used_session_does_not_expire(clock: Clock) -> None:
    store = MemorySessionStore(idle_seconds=60)
    sid = new(store)
    for _ in range(5):
        clock.now += 50
        assert store.lookup(sid) is not None
    assert store.lookup(sid).last_seen == clock.now  # type: ignore[union-attr]


def test_creating_a_session_sweeps_expired_ones(clock: Clock) -> None:
    store = MemorySessionStore(idle_seconds=60)
    stale = [new(store) for _ in range(3)]
    clock.now += 30
    fresh = new(store)
    clock.now += 40  # the first three are now 70 s idle, the fourth 40 s
    new(store)
    assert len(store) == 2
    assert store.lookup(fresh) is not None
    assert all(store.lookup(s) is None for s in stale)


def test_the_cap_evicts_the_least_recently_used(clock: Clock) -> None:
    store = MemorySessionStore(max_sessions=3)
    a, b, c = new(store), new(store), new(store)
    clock.now += 1
    assert store.lookup(a) is not None  # a is now the most recently used; b the least
    d = new(store)
    assert len(store) == 3
    assert store.lookup(b) is None
    assert all(store.lookup(s) is not None for s in (a, c, d))


def test_an_evicted_session_is_closed(clock: Clock) -> None:
    store = MemorySessionStore(max_sessions=1)
    first = store.open("2025-11-25", {}, None)
    queue: asyncio.Queue[bytes] = asyncio.Queue()
    first.standalone = queue
    new(store)
    assert queue.get_nowait() == b""  # the GET stream was told to end


class _Client:
    """Stands in for the stream to the client: records what the server sends it."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.received = asyncio.Event()

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)
        self.received.set()


@pytest.mark.anyio
async def test_delete_cancels_pending_answers_and_running_requests() -> None:
    store = MemorySessionStore()
    session = store.open("2025-11-25", {"sampling": {}}, None)
    client = _Client()

    asking = asyncio.ensure_future(session.outstanding().ask(client.send, "sampling/createMessage", {}))
    await client.received.wait()  # the request is on its way to the client
    running = asyncio.ensure_future(asyncio.Event().wait())
    session.inflight = {1: running}
    assert store.discard(session.id) is True
    with pytest.raises(asyncio.CancelledError):
        await asking
    with pytest.raises(asyncio.CancelledError):
        await running
    assert store.lookup(session.id) is None
    assert store.discard(session.id) is False


def test_answers_reach_the_request_that_waits_for_them() -> None:
    async def scenario() -> None:
        store = MemorySessionStore()
        session = store.open("2025-11-25", {}, None)
        client = _Client()

        assert session.answer({"jsonrpc": "2.0", "id": "srv-1", "result": {}}) is False  # nothing asked yet
        asking = asyncio.ensure_future(session.outstanding().ask(client.send, "roots/list", {}))
        await client.received.wait()
        request_id = client.sent[0]["id"]
        assert request_id == "srv-1"  # a single node's scheme; a fleet's replicas add their own id after "srv-"
        assert client.sent[0]["method"] == "roots/list"
        assert session.answer({"jsonrpc": "2.0", "id": "unknown", "result": {}}) is False
        assert session.answer({"jsonrpc": "2.0", "id": request_id, "result": {"ok": True}}) is True
        assert await asking == {"ok": True}
        assert session.answer({"jsonrpc": "2.0", "id": request_id, "result": {}}) is False  # once only

    asyncio.run(scenario())


def test_a_refusal_from_the_client_is_a_tool_error_naming_the_request() -> None:
    async def scenario() -> None:
        requests = Outstanding()
        client = _Client()

        asking = asyncio.ensure_future(requests.ask(client.send, "elicitation/create", {"message": "?"}))
        await client.received.wait()
        requests.answer(
            {"jsonrpc": "2.0", "id": client.sent[0]["id"], "error": {"code": -1, "message": "user said no"}}
        )
        with pytest.raises(ToolError, match="declined elicitation/create: user said no"):
            await asking

    asyncio.run(scenario())


def test_session_ids_are_unique_url_safe_and_long() -> None:
    store = MemorySessionStore()
    ids = {new(store) for _ in range(1000)}
    assert len(ids) == 1000
    # docs/protocol.md: 192 random bits, URL-safe: 24 bytes are 32 characters of base64url, no padding.
    url_safe = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert all(len(i) == 32 and set(i) <= url_safe for i in ids)


def test_ten_thousand_sessions_fit_and_the_next_one_evicts_the_least_recently_used() -> None:
    # How fast this is belongs to `make bench`, not to a wall-clock threshold in a test.
    store = MemorySessionStore()  # the default cap, as docs/configuration.md gives for server.max_sessions
    ids = [new(store) for _ in range(10_000)]
    assert len(store) == 10_000
    assert all(store.lookup(i) is not None for i in ids)
    extra = new(store)  # the cap evicts the least recently used: the first one got
    assert len(store) == 10_000
    assert store.lookup(ids[0]) is None
    assert store.lookup(extra) is not None


def test_close_all_empties_the_store() -> None:
    store = MemorySessionStore()
    for _ in range(10):
        new(store)
    store.close_all()
    assert len(store) == 0


def owned(store: MemorySessionStore, owner: str | None) -> str:
    return store.open("2025-11-25", {}, None, owner).id


def test_a_principal_at_its_cap_loses_its_own_oldest_session_only() -> None:
    store = MemorySessionStore(max_sessions=100, max_per_owner=2)
    bob = owned(store, "bob")
    a1, a2 = owned(store, "alice"), owned(store, "alice")
    assert store.lookup(a1) is not None  # a1 is now alice's most recently used
    a3 = owned(store, "alice")
    assert store.lookup(a2) is None
    assert all(store.lookup(s) is not None for s in (a1, a3, bob))
    assert store.count("alice") == 2 and store.count("bob") == 1


def test_anonymous_callers_are_one_principal_and_cannot_evict_a_signed_in_users_session() -> None:
    store = MemorySessionStore(max_sessions=10, max_per_owner=5)
    alice = owned(store, "alice")
    anonymous = [owned(store, None) for _ in range(100)]
    assert store.lookup(alice) is not None
    assert store.count(None) == 5
    assert all(store.lookup(s) is not None for s in anonymous[-5:])


def test_a_full_store_evicts_from_the_principal_holding_the_most() -> None:
    """Even when one principal may fill the store, a crowd evicts its own sessions before anyone else's."""
    store = MemorySessionStore(max_sessions=4, max_per_owner=4)
    alice, bob = owned(store, "alice"), owned(store, "bob")
    crowd = [owned(store, None) for _ in range(10)]
    assert store.lookup(alice) is not None and store.lookup(bob) is not None
    assert [store.lookup(s) is not None for s in crowd] == [False] * 8 + [True] * 2
    carol = owned(store, "carol")  # the store is full: the crowd, holding the most, gives one up
    assert store.lookup(carol) is not None and store.lookup(alice) is not None and store.lookup(bob) is not None
    assert store.count(None) == 1


def test_among_equals_a_full_store_evicts_the_least_recently_used() -> None:
    store = MemorySessionStore(max_sessions=3)
    a, b, c = owned(store, "a"), owned(store, "b"), owned(store, "c")
    assert store.lookup(a) is not None  # b is now the least recently used
    d = owned(store, "d")
    assert store.lookup(b) is None
    assert all(store.lookup(s) is not None for s in (a, c, d))


def test_counts_follow_deletes_and_expiry(clock: Clock) -> None:
    store = MemorySessionStore(idle_seconds=60, max_per_owner=3)
    first = owned(store, "alice")
    owned(store, "alice")
    store.discard(first)
    assert store.count("alice") == 1
    clock.now += 61
    owned(store, "bob")  # creating sweeps the expired
    assert store.count("alice") == 0 and store.count("bob") == 1


def test_a_session_belongs_to_the_principal_and_the_client_that_opened_it() -> None:
    # The same person through two OAuth clients holds two identities: one client cannot use the other's session.
    alice = Principal("user:alice", "user", client_id="chatgpt")
    assert owner_of(alice) == owner_of(Principal("user:alice", "user", client_id="chatgpt"))
    assert owner_of(alice) != owner_of(Principal("user:alice", "user", client_id="claude"))
    assert owner_of(alice) != owner_of(Principal("user:alice", "user"))
    assert owner_of(alice) != owner_of(Principal("user:alice", "api_key", client_id="chatgpt"))
    assert owner_of(None) is None


def test_a_new_session_keeps_what_the_handshake_declared_and_logs_at_info() -> None:
    store = MemorySessionStore()
    caps = {"sampling": {}, "elicitation": {"url": {}}}
    session = store.open("2025-06-18", caps, {"name": "c", "version": "2"})
    assert session.version == "2025-06-18"
    assert session.client_caps == caps
    assert session.client_info == {"name": "c", "version": "2"}
    assert session.log_level == "info"  # notifications at info and above flow until logging/setLevel


def test_a_session_keeps_the_events_of_its_32_most_recent_streams_for_replay() -> None:
    session = MemorySessionStore().open("2025-11-25", {}, None)
    logs = [session.new_stream() for _ in range(32)]
    assert session.streams is not None and list(session.streams) == [log.id for log in logs]
    newest = session.new_stream()
    assert list(session.streams) == [log.id for log in logs[1:]] + [newest.id]


def test_sessions_idle_for_half_an_hour_expire_by_default(clock: Clock) -> None:
    store = MemorySessionStore()
    sid = new(store)
    clock.now += 1800
    assert store.lookup(sid) is not None
    clock.now += 1800.5
    assert store.lookup(sid) is None


def test_a_session_idle_exactly_the_limit_is_still_live_and_not_swept(clock: Clock) -> None:
    # "Unused this long is ended" counts from the limit on: a request at exactly the limit still finds it.
    store = MemorySessionStore(idle_seconds=60)
    first, second = new(store), new(store)
    clock.now += 60
    new(store)  # creating sweeps only sessions idle for longer than the limit
    assert len(store) == 3
    assert store.lookup(first) is not None and store.lookup(second) is not None


def test_among_principals_holding_the_most_a_full_store_evicts_the_creators_own_session_first() -> None:
    store = MemorySessionStore(max_sessions=4)
    a1 = store.open("2025-11-25", {}, None, owner="a").id
    b1 = store.open("2025-11-25", {}, None, owner="b").id
    store.open("2025-11-25", {}, None, owner="b")
    a2 = store.open("2025-11-25", {}, None, owner="a").id
    assert store.lookup(a1) is not None  # the store's least recently used session is now b's
    store.open("2025-11-25", {}, None, owner="a")  # a and b hold two each: a gives up its own oldest
    assert store.lookup(a2) is None
    assert store.lookup(b1) is not None and store.lookup(a1) is not None
    assert (store.count("a"), store.count("b")) == (2, 2)


def test_the_owner_digest_is_the_same_in_every_version() -> None:
    # A fleet's sealed session ids carry it: a rolling upgrade that changed it would cut every client off from its
    # session (each replica would answer "unknown session" to the principal that opened it).
    alice = Principal("user:alice", "user", client_id="chatgpt")
    assert owner_of(alice) == hashlib.sha256(b"user\x00user:alice\x00chatgpt").hexdigest()
    assert owner_of(Principal("key:ci", "api_key")) == hashlib.sha256(b"api_key\x00key:ci\x00").hexdigest()


@pytest.mark.anyio
async def test_the_async_store_interface_opens_finds_touches_and_ends_sessions(clock: Clock) -> None:
    store = MemorySessionStore(idle_seconds=60)
    caps = {"roots": {"listChanged": True}}
    session = await store.create("2025-06-18", caps, {"name": "c", "version": "3"}, "alice")
    assert (session.version, session.client_caps, session.client_info) == (
        "2025-06-18",
        caps,
        {"name": "c", "version": "3"},
    )
    assert session.owner == "alice" and store.count("alice") == 1
    clock.now += 50
    assert await store.get(session.id) is session
    assert session.last_seen == clock.now
    await store.save(session)  # the object is the state: nothing to write, nothing changes
    assert await store.get(session.id) is session and len(store) == 1
    assert await store.get("unknown") is None
    assert await store.delete(session.id) is True
    assert await store.get(session.id) is None
    assert await store.delete(session.id) is False
    assert len(store) == 0 and store.count("alice") == 0


def test_a_notification_reaches_the_open_get_stream_and_is_dropped_without_one() -> None:
    session = MemorySessionStore().open("2025-11-25", {}, None)
    message = {"jsonrpc": "2.0", "method": "notifications/tools/list_changed"}
    assert session.notify(message) is False  # no GET stream open: the client is not listening
    queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=2)
    session.standalone = queue
    assert session.notify(message) is True
    assert (
        queue.get_nowait() == b'event: message\ndata: {"jsonrpc":"2.0","method":"notifications/tools/list_changed"}\n\n'
    )
    assert session.notify(message) is True and session.notify(message) is True
    assert session.notify(message) is False  # the stream is full: dropped, not queued
    assert queue.qsize() == 2


@pytest.mark.anyio
async def test_subscriptions_and_the_level_change_on_a_single_node() -> None:
    session = MemorySessionStore().open("2025-11-25", {}, None)
    await session.unsubscribe("kanban://board")  # nothing subscribed yet: nothing to do, no error
    assert session.subscriptions is None
    await session.subscribe("kanban://board")
    await session.subscribe("kanban://board")
    await session.subscribe("kanban://card/1")
    assert session.subscriptions == {"kanban://board", "kanban://card/1"}
    await session.unsubscribe("kanban://card/2")
    await session.unsubscribe("kanban://card/1")
    assert session.subscriptions == {"kanban://board"}
    await session.set_level("debug")
    assert session.log_level == "debug"


def test_a_new_streams_event_log_is_made_for_the_session_that_opens_it() -> None:
    # A fleet's factory keys the log by the session's shared id (patchbay.fleet.events): it must be given the session.
    session = MemorySessionStore().open("2025-11-25", {}, None)
    given: list[Session] = []

    def factory(opening: Session) -> EventLog:
        given.append(opening)
        return EventLog()

    session.events = factory
    log = session.new_stream()
    assert given == [session]
    assert session.streams == {log.id: log}
