"""What one replica decides holds on every replica of a fleet at once (tests/support/fleet.py: three replicas
behind HAProxy, shared PostgreSQL and Redis): a revoked token, an approved manifest, a rate limit's budget.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import anyio.to_thread
import httpx2
import pytest

from tests.support.fleet import (
    Fleet,
    legacy_headers,
    message_of,
    modern_request,
    open_session,
    run_fleet,
)
from tests.support.forms import next_form
from tests.support.user_tokens import user_token
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

PASSWORD = "a fleet-wide pass phrase"
TOOLS_CHANGED = "notifications/tools/list_changed"
RATE = 300  # the fleet's [[limits]] budget of the `limited` tool per minute (run_fleet's default)
DEADLINE = 20.0
NEW_TOOL = '''

@tool(read_only=True, open_world=False)
async def fleet_new() -> str:
    """A tool added while the fleet runs; served once approved."""
    return "new"
'''


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with run_fleet(tmp_path_factory.mktemp("fleet-notices"), rate=RATE) as running:
        for name, role in (("alice", "staff"), ("ops", "admin")):
            added = running.cli("users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD + "\n")
            assert added.returncode == 0, added.stderr
        yield running


@pytest.fixture(scope="module")
def api_key(fleet: Fleet) -> str:
    return fleet.api_key("notices")


async def tools_list_status(http: httpx2.AsyncClient, url: str, token: str) -> int:
    body, headers = modern_request("tools/list", {})
    reply = await http.post(url, json=body, headers={**headers, "authorization": f"Bearer {token}"})
    return reply.status_code


def test_a_token_revoked_on_one_replica_is_refused_by_every_replica_within_a_second(fleet: Fleet) -> None:
    async def scenario() -> None:
        name = f"revocation {secrets.token_hex(4)}"
        token = await user_token(fleet.base_url, "alice", PASSWORD, client_name=name)
        [(client_id,)] = fleet.pg.fetch(f"SELECT client_id FROM auth_clients WHERE name = '{name}'", fleet.database)
        async with httpx2.AsyncClient(timeout=10, trust_env=False) as http:
            for replica in fleet.replicas:
                for _ in range(2):  # the second answer comes from the replica's verified-token cache
                    assert await tools_list_status(http, replica.url, token) == 200
            revoked = await http.post(
                f"{fleet.replicas[0].base_url}/revoke", data={"token": token, "client_id": str(client_id)}
            )
            assert revoked.status_code == 200, revoked.text
            waiting = list(fleet.replicas)
            try:
                with anyio.fail_after(1.0):  # one second from the revocation's answer, for all of them together
                    while waiting:
                        waiting = [r for r in waiting if not await _refused(http, r.url, token)]
                        await anyio.sleep(0.01)
            except TimeoutError:
                raise AssertionError(f"still accepted after 1 s by {[r.name for r in waiting]}") from None

    anyio.run(scenario)


async def _refused(http: httpx2.AsyncClient, url: str, token: str) -> bool:
    return await tools_list_status(http, url, token) == 401


class Stream:
    """The JSON-RPC messages of one SSE response, read as they arrive."""

    def __init__(self, response: httpx2.Response) -> None:
        self.lines = response.aiter_lines()

    async def methods_until(self, wanted: str) -> list[str]:
        """Every message's method up to and including ``wanted``; fails after DEADLINE seconds."""
        seen: list[str] = []
        data: list[str] = []
        with anyio.fail_after(DEADLINE):
            async for line in self.lines:
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    text, data = "\n".join(data).strip(), []
                    if text:  # a priming event carries an id and no message
                        seen.append(str(json.loads(text).get("method")))
                        if seen[-1] == wanted:
                            return seen
        raise AssertionError(f"the stream ended after {seen}")


@contextlib.asynccontextmanager
async def streams_on_other_replicas(fleet: Fleet, http: httpx2.AsyncClient) -> AsyncIterator[list[Stream]]:
    """A 2025 session's GET stream held directly on each replica but the first, and a 2026 subscriptions/listen
    stream on the second; each has answered a request first, so it is open."""
    async with contextlib.AsyncExitStack() as stack:
        streams: list[Stream] = []
        for replica in fleet.replicas[1:]:
            session = await open_session(http, replica.url)
            get = await stack.enter_async_context(
                http.stream("GET", replica.url, headers={**legacy_headers(session), "accept": "text/event-stream"})
            )
            assert get.status_code == 200, await get.aread()
            streams.append(Stream(get))
        body, headers = modern_request("subscriptions/listen", {"notifications": {"toolsListChanged": True}})
        listen = await stack.enter_async_context(http.stream("POST", fleet.replicas[1].url, json=body, headers=headers))
        assert listen.status_code == 200
        acknowledged = Stream(listen)
        assert await acknowledged.methods_until("notifications/subscriptions/acknowledged")
        streams.append(acknowledged)
        yield streams


async def approve_everything_in_the_console(http: httpx2.AsyncClient, base: str) -> None:
    """Sign in to replica ``base``'s console as an admin and approve all pending changes, as a person would."""
    page = await http.get(f"{base}/admin/changes")
    login = next_form(page.text)
    assert page.status_code == 401 and login is not None and login.has_password, page.text
    signed = await http.post(
        f"{base}{login.action}" if login.action.startswith("/") else login.action,
        data=login.filled("ops", PASSWORD, ""),
        follow_redirects=True,
    )
    assert signed.status_code == 200 and "fleet_new" in signed.text, signed.text
    csrf = re.search(r'name="csrf" value="([^"]+)"', signed.text)
    everything = re.search(r'name="all" value="([0-9a-f]+)"', signed.text)
    assert csrf is not None and everything is not None, signed.text
    decided = await http.post(
        f"{base}/admin/changes/decide",
        data={"csrf": csrf.group(1), "decision": "approve", "all": everything.group(1)},
        headers={"origin": base},
    )
    assert decided.status_code == 303, decided.text


def pending_names(fleet: Fleet) -> set[str]:
    shown = fleet.cli("manifest", "diff", "--json")
    return {c["name"] for c in json.loads(shown.stdout)["changes"]} if shown.stdout.strip() else set()


async def proposed(fleet: Fleet) -> bool:
    return "fleet_new" in await anyio.to_thread.run_sync(pending_names, fleet)


def test_a_manifest_approval_on_one_replica_notifies_streams_held_on_the_others(fleet: Fleet, api_key: str) -> None:
    async def scenario() -> None:
        auth = {"authorization": f"Bearer {api_key}"}
        async with httpx2.AsyncClient(timeout=DEADLINE, trust_env=False, headers=auth) as http:
            async with streams_on_other_replicas(fleet, http) as streams:
                fleet.tools.write_text(fleet.tools.read_text(encoding="utf-8") + NEW_TOOL, encoding="utf-8")
                await until(lambda: proposed(fleet), "the replicas propose fleet_new for review", every=0.2)
                async with httpx2.AsyncClient(timeout=DEADLINE, trust_env=False) as browser:
                    await approve_everything_in_the_console(browser, fleet.replicas[0].base_url)
                for stream in streams:
                    await stream.methods_until(TOOLS_CHANGED)
            for replica in fleet.replicas:
                body, headers = modern_request("tools/list", {})
                listed = message_of(await http.post(replica.url, json=body, headers=headers))
                assert "fleet_new" in {t["name"] for t in listed["result"]["tools"]}, (replica.name, listed)

    anyio.run(scenario)


def test_a_rate_limit_admits_its_budget_across_all_replicas(fleet: Fleet, api_key: str) -> None:
    attempts = RATE + RATE // 5
    outcomes: list[str] = []
    served: set[str] = set()

    async def one(http: httpx2.AsyncClient, n: int) -> None:
        body, headers = modern_request("tools/call", {"name": "limited", "arguments": {}}, rid=n)
        reply = await http.post(fleet.url, json=body, headers=headers)
        assert reply.status_code == 200, reply.text
        served.add(reply.headers.get("x-served-by", ""))
        result: dict[str, Any] = message_of(reply)["result"]
        outcomes.append("admitted" if not result["isError"] else result["content"][0]["text"])

    async def hammer() -> float:
        auth = {"authorization": f"Bearer {api_key}"}
        limiter = anyio.CapacityLimiter(16)
        started = time.monotonic()
        async with httpx2.AsyncClient(timeout=30, trust_env=False, headers=auth) as http:

            async def bounded(n: int) -> None:
                async with limiter:
                    await one(http, n)

            async with anyio.create_task_group() as tasks:
                for n in range(attempts):
                    tasks.start_soon(bounded, n)
        return time.monotonic() - started

    elapsed = anyio.run(hammer)

    assert served == fleet.names  # the load really spread over the fleet
    admitted = outcomes.count("admitted")
    refused = [o for o in outcomes if o != "admitted"]
    assert all("rate limited by fleet-rate" in text for text in refused), set(refused)
    # GCRA: the burst (= the budget) at once, then one more every 60/RATE s while the hammering lasted.
    refill = RATE * elapsed / 60
    assert RATE * 0.98 <= admitted <= RATE * 1.02 + refill, (admitted, elapsed)
