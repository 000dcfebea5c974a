"""A fleet loses nothing when a replica dies or Redis goes away (tests/support/fleet.py: three replicas behind
HAProxy round-robin, shared PostgreSQL and Redis).

- SIGKILL one replica during a c=32 load of both eras: no 2026 request fails after one retry, no 2025 session is
  ever "not found", and every call whose answer arrived has its audit record in PostgreSQL.
- Redis stopped, then started again: 2026 requests keep working throughout, 2025 requests that need Redis get the
  clear error at once (every request is bounded by a client timeout and none reaches it), /readyz says degraded
  while it is down and ok after, and sessions carry on.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest

from tests.support.fleet import (
    SERVED_BY,
    Fleet,
    legacy_headers,
    message_of,
    modern_request,
    open_session,
    run_fleet,
    tool_text,
)
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

WORKERS = 32  # half of them 2026-07-28 clients, half 2025 sessions
CALLS = 30  # per worker
VICTIM = 1
REQUEST_TIMEOUT = 10.0  # a request that takes longer has hung
# A client whose request broke backs off before it retries. At once, the retry can reach the killed replica in the
# moment its socket still accepts connections while the kernel tears it down (a 502 the balancer may not retry).
RETRY_BACKOFF = 0.5
REDIS_DOWN = "(Redis) is unreachable"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with run_fleet(tmp_path_factory.mktemp("fleet-failures")) as running:
        yield running


@pytest.fixture(scope="module")
def api_key(fleet: Fleet) -> str:
    return fleet.api_key("failures")


@dataclass
class Tally:
    """What the load saw: answered request refs, and every failure by kind."""

    answered: set[str] = field(default_factory=set)
    retried: int = 0
    failed: list[str] = field(default_factory=list)  # failed again after one retry
    not_found: list[str] = field(default_factory=list)  # a 2025 session the fleet no longer knew
    done: int = 0
    served_by: set[str] = field(default_factory=set)


class Load:
    """One worker's calls: a 2026 client (no session) or a 2025 session, echo calls with an X-Request-Id each."""

    def __init__(self, fleet: Fleet, http: httpx2.AsyncClient, tally: Tally, worker: int, session: str | None) -> None:
        self.fleet, self.http, self.tally, self.worker, self.session = fleet, http, tally, worker, session

    async def run(self, killed: anyio.Event, kill_at: int) -> None:
        for n in range(CALLS):
            await self.call(n)
            self.tally.done += 1
            if self.tally.done == kill_at:
                killed.set()

    async def call(self, n: int) -> None:
        for attempt in range(2):  # one retry, as a client whose connection broke would
            ref = f"w{self.worker}n{n}a{attempt}{secrets.token_hex(3)}"
            try:
                reply = await self.send(n, ref)
            except httpx2.HTTPError as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            else:
                if reply.status_code == 404:
                    self.tally.not_found.append(f"{self.session}: {reply.text}")
                    return
                if reply.status_code == 200:
                    self.tally.served_by.add(reply.headers.get(SERVED_BY, ""))
                    assert tool_text(message_of(reply)) == f"{self.worker}:{n}", reply.text
                    self.tally.answered.add(ref)
                    return
                outcome = f"HTTP {reply.status_code} from {reply.headers.get(SERVED_BY)}: {reply.text[:200]}"
            if attempt == 0:
                self.tally.retried += 1
                await anyio.sleep(RETRY_BACKOFF)
        self.tally.failed.append(outcome)

    async def send(self, n: int, ref: str) -> httpx2.Response:
        params = {"name": "echo", "arguments": {"text": f"{self.worker}:{n}"}}
        if self.session is None:
            body, headers = modern_request("tools/call", params, rid=n)
        else:
            body = {"jsonrpc": "2.0", "id": n + 1, "method": "tools/call", "params": params}
            headers = legacy_headers(self.session)
        return await self.http.post(self.fleet.url, json=body, headers={**headers, "x-request-id": ref})


def test_a_replica_killed_mid_load_costs_no_request_no_session_and_no_audit_record(fleet: Fleet, api_key: str) -> None:
    tally = Tally()

    async def scenario() -> None:
        limits = httpx2.Limits(max_connections=WORKERS * 2)
        auth = {"authorization": f"Bearer {api_key}"}
        async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False, headers=auth, limits=limits) as http:
            sessions = [await open_session(http, fleet.url) for _ in range(WORKERS // 2)]
            workers = [Load(fleet, http, tally, i, None) for i in range(WORKERS // 2)]
            workers += [Load(fleet, http, tally, WORKERS // 2 + i, s) for i, s in enumerate(sessions)]
            killed = anyio.Event()

            async def kill() -> None:
                await killed.wait()
                await anyio.to_thread.run_sync(fleet.kill, VICTIM)

            async with anyio.create_task_group() as tasks:
                tasks.start_soon(kill)
                for worker in workers:
                    tasks.start_soon(worker.run, killed, WORKERS * CALLS // 4)

    try:
        anyio.run(scenario)
        assert not fleet.replicas[VICTIM].running
    finally:
        fleet.restart(VICTIM)

    assert tally.not_found == [], tally.not_found[:5]
    assert tally.failed == [], tally.failed[:5]
    assert len(tally.answered) == WORKERS * CALLS
    assert tally.served_by == fleet.names  # the victim served its share before it died

    async def recorded() -> bool:
        return tally.answered <= await anyio.to_thread.run_sync(fleet.audit_refs)

    try:
        anyio.run(until, recorded, "every answered call's audit record is in PostgreSQL")
    except AssertionError:
        missing = tally.answered - fleet.audit_refs()
        raise AssertionError(f"{len(missing)} audit records lost, e.g. {sorted(missing)[:5]}") from None


async def readyz(http: httpx2.AsyncClient, base: str) -> tuple[int, dict[str, Any]]:
    reply = await http.get(f"{base}/readyz")
    return reply.status_code, dict(reply.json())


async def all_ready(fleet: Fleet, http: httpx2.AsyncClient, *, redis_ok: bool) -> bool:
    for replica in fleet.replicas:
        status, body = await readyz(http, replica.base_url)
        if (status == 200) != redis_ok or body.get("redis", {}).get("ok") is not redis_ok:
            return False
    return True


@dataclass
class Steady:
    """2026 requests through the balancer, one after another until told to stop; every outcome kept."""

    outcomes: list[str] = field(default_factory=list)
    stop: anyio.Event = field(default_factory=anyio.Event)

    async def run(self, http: httpx2.AsyncClient, url: str) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            body, headers = modern_request("tools/call", {"name": "echo", "arguments": {"text": f"s{n}"}}, rid=n)
            try:
                reply = await http.post(url, json=body, headers=headers)
                self.outcomes.append("ok" if reply.status_code == 200 and tool_text(message_of(reply)) == f"s{n}"
                                     else f"HTTP {reply.status_code}: {reply.text[:200]}")  # fmt: skip
            except httpx2.HTTPError as exc:
                self.outcomes.append(f"{type(exc).__name__}: {exc}")


async def set_level(http: httpx2.AsyncClient, url: str, session: str) -> httpx2.Response:
    body = {"jsonrpc": "2.0", "id": 7, "method": "logging/setLevel", "params": {"level": "debug"}}
    return await http.post(url, json=body, headers=legacy_headers(session))


async def echo_in_session(http: httpx2.AsyncClient, url: str, session: str, text: str) -> str:
    body = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": text}}}
    reply = await http.post(url, json=body, headers=legacy_headers(session))
    assert reply.status_code == 200, reply.text
    return tool_text(message_of(reply))


def clear_redis_error(reply: httpx2.Response) -> bool:
    """HTTP 503, or a JSON-RPC error, saying the fleet's Redis is unreachable (docs: the shared contract)."""
    if reply.status_code == 503:
        return REDIS_DOWN in reply.text
    error = message_of(reply).get("error") if reply.status_code == 200 else None
    return isinstance(error, dict) and REDIS_DOWN in str(error.get("message"))


def test_redis_stopped_and_restarted_degrades_2025_sessions_clearly_and_never_2026_requests(
    fleet: Fleet, api_key: str
) -> None:
    steady = Steady()

    async def scenario() -> None:
        auth = {"authorization": f"Bearer {api_key}"}
        async with httpx2.AsyncClient(timeout=REQUEST_TIMEOUT, trust_env=False, headers=auth) as http:
            session = await open_session(http, fleet.url)
            assert (await set_level(http, fleet.url, session)).status_code == 200
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(steady.run, http, fleet.url)
                await during_the_outage(fleet, http, session)
                steady.stop.set()
            # Afterwards the session carries on, on every replica, Redis-backed requests included.
            for replica in fleet.replicas:
                assert await echo_in_session(http, replica.url, session, replica.name) == replica.name
            await until(lambda: _level_set(http, fleet.url, session), "logging/setLevel works again once Redis is back")

    try:
        anyio.run(scenario)
    finally:
        with contextlib.suppress(RuntimeError):
            fleet.start_redis()  # a failed test leaves Redis running for the next one

    assert steady.outcomes and set(steady.outcomes) == {"ok"}, [o for o in steady.outcomes if o != "ok"][:5]


async def during_the_outage(fleet: Fleet, http: httpx2.AsyncClient, session: str) -> None:
    await anyio.to_thread.run_sync(fleet.stop_redis)
    await until(lambda: all_ready(fleet, http, redis_ok=False), "every replica's /readyz says Redis is down")
    for replica in fleet.replicas:
        # A request that needs Redis (the session's log level is shared state) fails fast and says why; the
        # client timeout bounds it, and a timeout would raise here.
        refused = await set_level(http, replica.url, session)
        assert clear_redis_error(refused), (replica.name, refused.status_code, refused.text)
        assert "redis://" not in refused.text and fleet.redis.password not in refused.text
        # Plain request/response in an existing session needs no Redis: the session id is sealed.
        assert await echo_in_session(http, replica.url, session, "down") == "down"
    fresh = await open_session(http, fleet.url)  # initialize needs no Redis either
    assert await echo_in_session(http, fleet.url, fresh, "fresh") == "fresh"
    await anyio.to_thread.run_sync(fleet.start_redis)
    await until(lambda: all_ready(fleet, http, redis_ok=True), "every replica's /readyz is ok again")


async def _level_set(http: httpx2.AsyncClient, url: str, session: str) -> bool:
    reply = await set_level(http, url, session)
    return reply.status_code == 200 and "error" not in message_of(reply)
