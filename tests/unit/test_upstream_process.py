"""The stdio supervisor with real child processes (tests/fixtures/stdio_child.py started with this Python)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from tests.support.waiting import until

from patchbay.upstream.process import (
    ProcessSpec,
    ProcessUnavailable,
    StdioProcess,
    kill_all,
)

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).resolve().parents[1] / "fixtures" / "stdio_child.py"
DEADLINE = 20.0


def spec(mode: str, *args: str, **overrides: Any) -> ProcessSpec:
    # -I -S: a child starts in a few milliseconds, which keeps the 200-cycle test short.
    base = ProcessSpec(argv=(sys.executable, "-I", "-S", str(CHILD), mode, *args), stop_grace=2.0)
    return replace(base, **overrides)


class FakeClock:
    """Backoff waits return at once and move time forward; the test reads what was waited."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.slept: list[float] = []

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.t += seconds


@asynccontextmanager
async def supervised(process_spec: ProcessSpec, **kwargs: Any) -> AsyncIterator[StdioProcess]:
    process = StdioProcess("child", process_spec, **kwargs)
    try:
        yield process
    finally:
        await process.stop()


async def start_and_wait_exit(process: StdioProcess) -> None:
    """One run of a child that exits by itself (the crashing fixture): started, and waited for until it ends."""
    await process.start()
    await asyncio.wait_for(process.wait_exit(), DEADLINE)


def alive(pid: int) -> bool:
    """Running (a zombie is dead: it only waits to be reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children_of_this_process() -> list[tuple[int, str]]:
    """(pid, state) of every process whose parent is this test process, zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == os.getpid():
            found.append((int(entry.name), fields[0]))
    return found


NewChildren = Callable[[], list[tuple[int, str]]]


@pytest.fixture
def new_children() -> NewChildren:
    """Children of this process started since the test began: in the whole suite, other tests' session servers
    (PostgreSQL, MariaDB, a conformance server) are children of this process too."""
    before = {pid for pid, _ in children_of_this_process()}
    return lambda: [(pid, state) for pid, state in children_of_this_process() if pid not in before]


async def roundtrip(process: StdioProcess, text: str) -> str:
    reader, writer = await process.start()
    writer.write(text.encode() + b"\n")
    await writer.drain()
    line = await asyncio.wait_for(reader.readline(), DEADLINE)
    return line.decode().rstrip("\n")


async def test_nothing_starts_before_the_first_call_then_the_child_answers() -> None:
    async with supervised(spec("echo")) as process:
        assert process.state == "idle"
        assert process.pid is None
        assert await roundtrip(process, "hello") == "hello"
        assert process.state == "running"
        pid = process.pid
        assert pid is not None and alive(pid)
        assert os.getpgid(pid) == pid  # leads its own process group
        assert await roundtrip(process, "again") == "again"
        assert process.pid == pid  # reused, not restarted


async def test_concurrent_first_calls_start_one_child() -> None:
    async with supervised(spec("echo")) as process:
        streams = await asyncio.gather(*(process.start() for _ in range(5)))
        assert len({id(reader) for reader, _ in streams}) == 1


async def test_a_crash_is_noticed_and_restarted_after_a_doubling_capped_backoff() -> None:
    clock = FakeClock()
    crashing = spec("crash", backoff_initial=1.0, backoff_max=4.0, max_restarts=10)
    async with supervised(crashing, clock=clock) as process:
        for _ in range(5):
            await process.start()
            assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == 3
            assert process.state == "backoff"
        assert clock.slept == [1.0, 2.0, 4.0, 4.0]
        assert process.next_start_delay() == 4.0
        status = process.status()
        assert status.restarts == 5
        assert status.last_exit_code == 3
        assert "exited with code 3" in status.reason
        # The reason reaches clients and the public /readyz: the child's stderr stays in stderr_tail (operators).
        assert "boom" not in status.reason and "boom: the fixture crashed on purpose" in status.stderr_tail


async def test_too_many_crashes_within_the_window_is_a_crash_loop_until_reset() -> None:
    clock = FakeClock()
    crashing = spec("crash", backoff_initial=0.1, max_restarts=2, restart_window=60.0)
    async with supervised(crashing, clock=clock) as process:
        for _ in range(3):
            await start_and_wait_exit(process)
        assert process.state == "crash_loop"
        with pytest.raises(ProcessUnavailable, match="failed 3 times within 60 s"):
            await process.start()
        assert process.pid is None

        process.reset()
        assert process.state == "idle"
        assert process.next_start_delay() == 0
        await start_and_wait_exit(process)
        assert process.state == "backoff"
        assert process.status().restarts == 1


async def test_a_stopped_supervisor_resumes_with_its_crash_history_unlike_reset() -> None:
    clock = FakeClock()
    crashing = spec("crash", backoff_initial=0.1, max_restarts=2, restart_window=60.0)
    async with supervised(crashing, clock=clock) as process:
        for _ in range(2):
            await start_and_wait_exit(process)
        await process.stop()  # the connector closed after a failed open
        with pytest.raises(ProcessUnavailable, match="is stopped"):
            await process.start()
        process.resume()  # and opened again
        assert (process.state, process.status().restarts) == ("backoff", 2)
        await start_and_wait_exit(process)
        await process.stop()
        process.resume()
        assert process.state == "crash_loop"
        with pytest.raises(ProcessUnavailable, match=r"^crash loop: .*failed 3 times within 60 s"):
            await process.start()


async def test_crashes_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    crashing = spec("crash", backoff_initial=0.1, max_restarts=1, restart_window=10.0)
    async with supervised(crashing, clock=clock) as process:
        for _ in range(4):
            await start_and_wait_exit(process)
            assert process.state == "backoff"
            clock.t += 11.0
        assert process.status().restarts == 0


async def test_an_idle_child_is_shut_down_and_started_again_on_demand() -> None:
    async with supervised(spec("echo", idle_shutdown=0.2)) as process:
        with process.in_use():
            assert await roundtrip(process, "one") == "one"
        first = process.pid
        assert first is not None
        await asyncio.wait_for(process.wait_exit(), DEADLINE)
        assert process.state == "idle"
        assert process.status().restarts == 0  # an idle stop is not a crash
        await until(lambda: not alive(first), "the idle child is gone")
        with process.in_use():
            assert await roundtrip(process, "two") == "two"
        assert process.pid not in (None, first)


async def test_a_child_that_ignores_term_is_killed_after_the_grace() -> None:
    async with supervised(spec("ignore-term", stop_grace=0.3)) as process:
        reader, _ = await process.start()
        assert await asyncio.wait_for(reader.readline(), DEADLINE) == b"ready\n"
        pid = process.pid
        assert pid is not None
        await process.stop()
        assert process.status().last_exit_code == -signal.SIGKILL
        assert process.state == "stopped"
        assert not alive(pid)
        with pytest.raises(ProcessUnavailable, match="stopped"):
            await process.start()


async def test_stop_ends_the_whole_process_group_grandchildren_too() -> None:
    async with supervised(spec("grandchild")) as process:
        reader, _ = await process.start()
        line = await asyncio.wait_for(reader.readline(), DEADLINE)
        grandchild = int(line.split()[1])
        assert alive(grandchild)
        await process.stop()
        await until(lambda: not alive(grandchild), "the grandchild (which ignores TERM) is gone")


async def test_a_crashed_childs_leftover_grandchild_is_killed() -> None:
    async with supervised(spec("grandchild")) as process:
        reader, _ = await process.start()
        grandchild = int((await asyncio.wait_for(reader.readline(), DEADLINE)).split()[1])
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == -signal.SIGKILL
        await until(lambda: not alive(grandchild), "the orphaned grandchild is gone")


async def test_a_stderr_flood_never_blocks_the_child_and_stays_within_the_cap() -> None:
    async with supervised(spec("flood", "8", stderr_bytes=4096)) as process:
        reader, _ = await process.start()
        # 8 MiB is far beyond a pipe's buffer: the child only gets here if stderr is drained all along.
        assert await asyncio.wait_for(reader.readline(), DEADLINE) == b"flooded\n"
        await until(lambda: process.stderr_tail().endswith("the end\n"), "the last stderr line arrived")
        tail = process.stderr_tail()
        assert len(tail.encode()) <= 4096 + 8  # each replaced byte grows by 2 when decoded
        assert "\ufffd" in tail  # invalid UTF-8 is replaced, not an error
        assert await roundtrip(process, "still answering") == "still answering"


async def test_no_zombie_or_leftover_process_after_200_start_stop_cycles(
    new_children: NewChildren,
) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    fds_before = open_fds()
    process = StdioProcess("child", spec("echo"))
    for cycle in range(200):
        process.reset()
        assert await roundtrip(process, f"cycle {cycle}") == f"cycle {cycle}"
        await process.stop()
    assert new_children() == []
    await until(lambda: open_fds() <= fds_before, "every pipe of every child is closed")


async def test_a_child_silent_past_the_start_timeout_is_killed_and_counted_as_a_failure() -> None:
    # idle_shutdown far below start_timeout: a child still starting is not idle, start_timeout is its limit.
    async with supervised(spec("silent", start_timeout=0.3, idle_shutdown=0.05)) as process:
        await process.start()
        assert process.state == "starting"
        await asyncio.wait_for(process.wait_exit(), DEADLINE)
        assert process.state == "backoff"
        assert "within start_timeout = 0.3 s" in process.status().reason


async def test_a_child_that_closes_stdout_is_noticed_and_stopped() -> None:
    async with supervised(spec("close-stdout", stop_grace=0.5)) as process:
        reader, _ = await process.start()
        assert await asyncio.wait_for(reader.readline(), DEADLINE) == b"ready\n"
        assert await asyncio.wait_for(reader.readline(), DEADLINE) == b""  # EOF at once
        await asyncio.wait_for(process.wait_exit(), DEADLINE)
        assert process.state == "backoff"
        assert "closed its stdout" in process.status().reason


async def test_a_child_killed_from_outside_is_noticed_at_once() -> None:
    async with supervised(spec("echo")) as process:
        await roundtrip(process, "hi")
        pid = process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == -signal.SIGKILL
        assert process.state == "backoff"
        assert "killed by SIGKILL" in process.status().reason


async def test_closing_stdin_ends_the_child_without_counting_a_crash() -> None:
    async with supervised(spec("echo")) as process:
        _, writer = await process.start()
        writer.close()
        assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == 0
        assert process.state == "idle"
        assert process.next_start_delay() == 0


async def test_env_additions_reach_the_child_and_never_show_in_stderr_or_logs(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("PATCHBAY_TEST_FROM_PARENT", "parent-value")
    secret = "s3cret-upstream-token"
    async with supervised(spec("env", "UPSTREAM_TOKEN", env={"UPSTREAM_TOKEN": secret})) as process:
        reader, _ = await process.start()
        assert await asyncio.wait_for(reader.readline(), DEADLINE) == secret.encode() + b"\n"
        await until(lambda: "token is" in process.stderr_tail(), "stderr arrived")
        assert secret not in process.stderr_tail()
        assert "token is ***" in process.stderr_tail()
    async with supervised(spec("env", "PATCHBAY_TEST_FROM_PARENT")) as process:
        assert await roundtrip(process, "x") == "parent-value"  # the first line is the variable's value
    assert secret not in caplog.text


async def test_a_command_that_cannot_run_gives_a_reason_a_person_can_act_on(tmp_path: Path) -> None:
    async with supervised(ProcessSpec(argv=(str(tmp_path / "no-such-server"),))) as process:
        with pytest.raises(ProcessUnavailable, match=r"command .*no-such-server.* not found"):
            await process.start()
        assert process.state == "backoff"
    async with supervised(spec("echo", cwd=tmp_path / "missing")) as process:
        with pytest.raises(ProcessUnavailable, match=r"working directory .*missing.* does not exist"):
            await process.start()


async def test_kill_all_kills_every_running_group() -> None:
    async with supervised(spec("ignore-term")) as process:
        reader, _ = await process.start()
        await asyncio.wait_for(reader.readline(), DEADLINE)
        kill_all()
        assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == -signal.SIGKILL


class HeldClock(FakeClock):
    """A backoff wait that lasts until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = asyncio.Event()
        self.release = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.waiting.set()
        await self.release.wait()
        await super().sleep(seconds)


async def test_stop_during_a_backoff_wait_fails_the_waiting_start_without_spawning(
    new_children: NewChildren,
) -> None:
    clock = HeldClock()
    process = StdioProcess("child", spec("crash"), clock=clock)
    await start_and_wait_exit(process)
    waiting = asyncio.ensure_future(process.start())
    await asyncio.wait_for(clock.waiting.wait(), DEADLINE)
    await process.stop()
    clock.release.set()
    with pytest.raises(ProcessUnavailable, match="stopped"):
        await asyncio.wait_for(waiting, DEADLINE)
    assert process.pid is None
    assert new_children() == []


def test_a_spec_without_a_program_or_with_negative_times_is_refused() -> None:
    with pytest.raises(ValueError, match="at least the program"):
        ProcessSpec(argv=())
    with pytest.raises(ValueError, match="times must be >= 0"):
        ProcessSpec(argv=("server",), stop_grace=-1)
    with pytest.raises(ValueError, match="idle_shutdown must be > 0"):
        ProcessSpec(argv=("server",), idle_shutdown=0)


async def test_a_cancelled_stop_still_kills_a_child_that_ignores_term(
    new_children: NewChildren,
) -> None:
    process = StdioProcess("child", spec("ignore-term", stop_grace=0.3))
    reader, _ = await process.start()
    assert await asyncio.wait_for(reader.readline(), DEADLINE) == b"ready\n"
    stopping = asyncio.ensure_future(process.stop())
    assert await asyncio.wait_for(reader.readline(), DEADLINE) == b"stdin closed\n"  # stop() has begun
    assert process.pid is not None
    stopping.cancel()
    assert await asyncio.wait_for(process.wait_exit(), DEADLINE) == -signal.SIGKILL
    assert new_children() == []


async def test_a_child_with_a_call_in_flight_is_not_shut_down_as_idle() -> None:
    idle = 0.05
    async with supervised(spec("echo", idle_shutdown=idle)) as process:
        loop = asyncio.get_running_loop()
        with process.in_use():
            assert await roundtrip(process, "start") == "start"
            pid = process.pid
            quiet_since = loop.time()
            await until(lambda: loop.time() > quiet_since + 10 * idle, "ten idle periods passed")
            assert process.pid == pid and process.state == "running"
        await asyncio.wait_for(process.wait_exit(), DEADLINE)  # released: now it is idle
        assert process.state == "idle"
