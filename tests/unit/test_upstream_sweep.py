"""The pool's idle timer: sessions unused for ``idle_seconds`` are closed without any traffic (an HTTP session gets
its DELETE, a stdio child is stopped), a session with a call in flight is never closed under it, and the timer
runs only while the pool holds sessions and stops with the pool."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from tests.support.loopback_asgi import serving
from tests.support.waiting import until
from tests.unit.test_upstream_faults import Upstream
from tests.unit.test_upstream_stdio import SERVER, Child

from patchbay.upstream import Target, UpstreamPool
from patchbay.upstream.process import ProcessSpec

pytestmark = pytest.mark.anyio
CLIENT = {"name": "patchbay-test", "version": "0"}
IDLE = 0.3


async def ignore(method: str, params: dict[str, Any]) -> None:
    pass


async def test_an_idle_http_session_is_ended_without_traffic_and_the_timer_stops() -> None:
    state = Upstream()
    app = Starlette(routes=[Route("/mcp", state.mcp, methods=["GET", "POST", "DELETE"])])
    async with serving(app) as base:
        target = Target("http", url=f"{base}/mcp", protocol="2025-11-25")
        pool = UpstreamPool(
            "idle", target, client_info=CLIENT, capabilities={}, on_notification=ignore, idle_seconds=IDLE
        )
        try:
            await pool.call("tools/call", {"name": "echo"}, timeout=5)
            assert len(state.sessions) == 1 and pool._sweeper is not None
            await until(lambda: not state.sessions, "the idle session was ended with DELETE")
            await until(lambda: pool._sweeper is None, "the timer stopped with no session left")
            await pool.call("tools/call", {"name": "echo"}, timeout=5)  # a new session, and the timer again
            assert state.methods.count("initialize") == 2 and pool._sweeper is not None
            sweeper = pool._sweeper
        finally:
            await pool.close()
            state.release.set()
        assert pool._sweeper is None and sweeper.done()


def stdio_pool(children: list[Child]) -> UpstreamPool:
    def factory(name: str, spec: ProcessSpec) -> Child:
        children.append(Child(name, spec))
        return children[-1]

    spec = ProcessSpec(argv=(sys.executable, str(SERVER), "legacy"), idle_shutdown=None)
    return UpstreamPool(
        "idle",
        Target("stdio", process=spec),
        client_info=CLIENT,
        capabilities={},
        on_notification=ignore,
        idle_seconds=IDLE,
        process_factory=factory,
    )


async def test_an_idle_stdio_session_stops_its_process_without_traffic() -> None:
    children: list[Child] = []
    pool = stdio_pool(children)
    try:
        await pool.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, timeout=10)
        proc = children[0].proc
        assert proc is not None and proc.returncode is None
        await until(lambda: proc.returncode is not None, "the idle child was stopped")
    finally:
        await pool.close()


async def test_a_session_with_a_call_in_flight_is_not_closed_as_idle() -> None:
    children: list[Child] = []
    pool = stdio_pool(children)
    try:
        # The tool answers after 4 idle periods of silence; the timer fires meanwhile and must leave it alone.
        slow = {"name": "slow", "arguments": {"seconds": IDLE * 4}}
        answer = await pool.call("tools/call", slow, timeout=10)
        assert answer["content"][0]["text"] == "slept"
        assert len(children) == 1 and children[0].starts == 1
    finally:
        await pool.close()
