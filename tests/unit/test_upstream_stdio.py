"""The upstream client over stdio, against a real child process (tests/fixtures/upstream_stdio_server.py): era
detection, progress and sampling routed to their call, cancellation sent upstream, garbage and oversized lines,
and a crash failing the call in flight."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from patchbay.upstream import Target, UpstreamPool, UpstreamTimeout, UpstreamUnavailable
from patchbay.upstream.process import ProcessSpec

pytestmark = pytest.mark.anyio
SERVER = Path(__file__).resolve().parents[1] / "fixtures" / "upstream_stdio_server.py"
CLIENT = {"name": "patchbay-test", "version": "0"}


class Child:
    """The part of the supervisor the transport uses, over a plain subprocess (the supervisor has its own tests)."""

    def __init__(self, name: str, spec: ProcessSpec) -> None:
        self.spec = spec
        self.proc: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.proc is None or self.proc.returncode is not None:
            self.starts += 1
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        assert self.proc.stdout is not None and self.proc.stdin is not None
        return self.proc.stdout, self.proc.stdin

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()

    async def wait_exit(self) -> int | None:
        return await self.proc.wait() if self.proc is not None else None

    def stderr_tail(self) -> str:
        return "fixture: crashing on purpose" if self.proc is not None and self.proc.returncode == 7 else ""

    def touch(self) -> None:
        pass


@pytest.fixture
async def children() -> AsyncIterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        await child.stop()


def pool_for(era: str, children: list[Child], notes: list[tuple[str, dict[str, Any]]] | None = None) -> UpstreamPool:
    def factory(name: str, spec: ProcessSpec) -> Child:
        child = Child(name, spec)
        children.append(child)
        return child

    async def on_notification(method: str, params: dict[str, Any]) -> None:
        if notes is not None:
            notes.append((method, params))

    spec = ProcessSpec(argv=(sys.executable, str(SERVER), era), start_timeout=10)
    return UpstreamPool(
        "fixture",
        Target("stdio", process=spec, max_message_bytes=64 * 1024),
        client_info=CLIENT,
        capabilities={"sampling": {}},
        on_notification=on_notification,
        process_factory=factory,
    )


async def stats(pool: UpstreamPool, identity: str = "") -> dict[str, int]:
    answer = await pool.call("tools/call", {"name": "stats"}, identity=identity, timeout=5)
    counts: dict[str, int] = json.loads(answer["content"][0]["text"])
    return counts


async def test_a_handshake_era_server_is_probed_once_then_initialised_per_session(children: list[Child]) -> None:
    pool = pool_for("legacy", children)
    try:
        session = await pool.session()
        assert (session.protocol_version, session.modern) == ("2025-11-25", False)
        assert session.server_info == {"name": "fixture", "version": "1"}
        for _ in range(3):
            assert (await pool.call("tools/call", {"name": "echo", "arguments": {"text": "hi"}}, timeout=5))["content"][
                0
            ]["text"] == "hi"
        assert await stats(pool) == {"initialize": 1, "server/discover": 1}
        # A second identity gets its own process; the era is known, so it is not probed again.
        assert await stats(pool, "user:2") == {"initialize": 1, "server/discover": 0}
        assert len(children) == 2
    finally:
        await pool.close()


async def test_a_2026_server_is_discovered_and_never_initialised(children: list[Child]) -> None:
    pool = pool_for("modern", children)
    try:
        session = await pool.session()
        assert (session.protocol_version, session.modern) == ("2026-07-28", True)
        assert await stats(pool) == {"initialize": 0, "server/discover": 1}
    finally:
        await pool.close()


async def test_progress_and_logs_reach_their_call_and_sampling_is_answered_by_it(children: list[Child]) -> None:
    notes: list[tuple[str, dict[str, Any]]] = []
    pool = pool_for("legacy", children, notes)
    progress: list[dict[str, Any]] = []
    asked: list[str] = []

    async def on_progress(params: dict[str, Any]) -> None:
        progress.append(params)

    async def on_request(method: str, params: dict[str, Any]) -> dict[str, Any]:
        asked.append(method)
        return {"role": "assistant", "content": {"type": "text", "text": "from the model"}, "model": "m"}

    try:
        params = {"name": "progress", "_meta": {"progressToken": "downstream-token"}}
        await pool.call("tools/call", params, timeout=5, on_progress=on_progress)
        assert [p["progress"] for p in progress] == [1, 2]
        assert all(p["progressToken"] != "downstream-token" for p in progress)  # our own token upstream
        # On stdio a log message is not tied to a call: it goes to the pool's handler.
        assert ("notifications/message", {"level": "info", "data": "working"}) in notes
        answer = await pool.call("tools/call", {"name": "sample"}, timeout=5, on_request=on_request)
        assert answer["content"][0]["text"] == "from the model" and asked == ["sampling/createMessage"]
    finally:
        await pool.close()


async def test_sampling_without_a_handler_is_answered_method_not_found(children: list[Child]) -> None:
    pool = pool_for("legacy", children)
    try:
        answer = await pool.call("tools/call", {"name": "sample"}, timeout=5)
        assert answer["content"][0]["text"] == "no text"  # the fixture got an error, not a result
    finally:
        await pool.close()


async def test_a_timeout_cancels_the_request_upstream_with_its_own_id(children: list[Child]) -> None:
    pool = pool_for("legacy", children)
    try:
        session = await pool.session()
        with pytest.raises(UpstreamTimeout, match=r"within 0\.2 s"):
            await session.request("tools/call", {"name": "hang"}, timeout=0.2)
        hung_id = session._next_id - 1
        deadline = asyncio.get_running_loop().time() + 5
        while True:
            answer = await pool.call("tools/call", {"name": "cancelled"}, timeout=5)
            if json.loads(answer["content"][0]["text"]) == [hung_id]:
                break
            assert asyncio.get_running_loop().time() < deadline, "notifications/cancelled never arrived"
            await asyncio.sleep(0.02)
        assert session.pending == {}
    finally:
        await pool.close()


async def test_cancelling_the_awaiting_task_cancels_upstream(children: list[Child]) -> None:
    pool = pool_for("legacy", children)
    try:
        session = await pool.session()
        task = asyncio.ensure_future(session.request("tools/call", {"name": "hang"}, timeout=30))
        await asyncio.sleep(0)  # one turn of the loop: the request is written before its first wait
        (hung_id,) = session.pending
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        answer = await session.request("tools/call", {"name": "cancelled"}, timeout=5)
        assert json.loads(answer["content"][0]["text"]) == [hung_id]  # stdio keeps order: it came first
    finally:
        await pool.close()


async def test_garbage_lines_are_skipped_and_counted(children: list[Child]) -> None:
    pool = pool_for("legacy", children)
    try:
        answer = await pool.call("tools/call", {"name": "garbage"}, timeout=5)
        assert answer["content"][0]["text"] == "after garbage"
        session = await pool.session()
        assert session.channel.garbage_lines == 2  # type: ignore[attr-defined]
    finally:
        await pool.close()


async def test_an_oversized_line_ends_the_session_and_the_next_call_gets_a_fresh_process(
    children: list[Child],
) -> None:
    pool = pool_for("legacy", children)
    try:
        with pytest.raises(UpstreamUnavailable, match="larger than 65536 bytes"):
            await pool.call("tools/call", {"name": "huge", "arguments": {"bytes": 200_000}}, timeout=5)
        assert (await pool.call("tools/call", {"name": "echo", "arguments": {"text": "ok"}}, timeout=5))["content"][0][
            "text"
        ] == "ok"
        assert len(children) == 2
    finally:
        await pool.close()


async def test_a_crash_fails_the_call_in_flight_with_the_exit_code_and_keeps_stderr_for_operators_only(
    children: list[Child],
) -> None:
    pool = pool_for("legacy", children)
    try:
        with pytest.raises(UpstreamUnavailable, match=r"exited with code 7") as failed:
            await pool.call("tools/call", {"name": "crash"}, timeout=5)
        # The error reaches the client: the child's stderr is not in it, but kept for /readyz's operator part.
        assert "crashing on purpose" not in str(failed.value)
        assert "crashing on purpose" in pool.stderr_tail()
        ok, reason = pool.health()
        assert "crashing on purpose" not in reason
        # The next call restarts the process through the supervisor and initialises again.
        assert await stats(pool) == {"initialize": 1, "server/discover": 0}
        assert children[0].starts == 2 and ok
    finally:
        await pool.close()


async def _stopped_as_idle(process: Any) -> None:
    deadline = time.monotonic() + 30
    while process.pid is not None:
        assert time.monotonic() < deadline, "the idle child was not stopped"
        await asyncio.sleep(0.05)


async def test_a_call_silent_for_longer_than_idle_shutdown_keeps_its_process_and_idle_shutdown_follows() -> None:
    # The real supervisor: a slow tool writes nothing for longer than idle_shutdown; its child must not be stopped
    # as idle under the call. Once calls end (answered, or given up on), the child is stopped as idle after all.
    made: list[Any] = []

    def factory(name: str, spec: ProcessSpec) -> Any:
        from patchbay.upstream.process import StdioProcess

        made.append(StdioProcess(name, spec))
        return made[-1]

    spec = ProcessSpec(argv=(sys.executable, str(SERVER), "legacy"), start_timeout=10, idle_shutdown=0.3)
    pool = UpstreamPool(
        "fixture",
        Target("stdio", process=spec),
        client_info=CLIENT,
        capabilities={},
        on_notification=lambda method, params: asyncio.sleep(0),
        process_factory=factory,
    )
    try:
        await pool.session()
        pid = made[0].pid
        answer = await pool.call("tools/call", {"name": "slow", "arguments": {"seconds": 1.2}}, timeout=10)
        assert answer["content"][0]["text"] == "slept"
        assert made[0].pid == pid
        await _stopped_as_idle(made[0])
        with pytest.raises(UpstreamTimeout):  # a call given up on releases its hold too
            await pool.call("tools/call", {"name": "hang"}, timeout=0.2)
        await _stopped_as_idle(made[-1])
    finally:
        await pool.close()
