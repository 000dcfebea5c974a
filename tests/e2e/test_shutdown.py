"""Graceful shutdown: SIGTERM while a tool call is in flight lets the call finish, then the process exits 0."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import anyio
import mcp_types as types
import pytest
from mcp.client import Client

from tests.e2e.conftest import FIXTURES, STOP_TIMEOUT, run_scenario
from tests.support.servers import run_patchbay

pytestmark = pytest.mark.e2e

SLOW_CONFIG = FIXTURES / "slow.toml"  # slow_echo: progress 0, ~1 s of work, progress 1, result


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
def test_sigterm_lets_an_in_flight_tool_call_finish_then_exits_0(tmp_path: Path, era: str) -> None:
    events: list[str] = []

    with run_patchbay(SLOW_CONFIG, log_dir=tmp_path) as server:

        async def scenario() -> types.CallToolResult:
            started = anyio.Event()
            outcome: list[types.CallToolResult] = []

            async def on_progress(value: float, total: float | None, message: str | None) -> None:
                events.append(f"progress {message}")
                if message == "started":
                    started.set()

            async def call(client: Client) -> None:
                result = await client.call_tool("slow_echo", {"text": "still here"}, progress_callback=on_progress)
                outcome.append(result)
                events.append("result")

            async with Client(server.url, mode=era) as client:
                # The SDK validates a structured result against the tool's outputSchema and lists the tools first if
                # it has not yet: do that now, so nothing but the call itself is sent after SIGTERM.
                await client.list_tools()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(call, client)
                    with anyio.fail_after(10):
                        await started.wait()
                    server.proc.send_signal(signal.SIGTERM)
                    events.append("SIGTERM")
            return outcome[0]

        result = run_scenario(scenario)
        try:
            returncode = server.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"patchbay still running {STOP_TIMEOUT} s after SIGTERM:\n{server.log_tail()}")
        log = server.log_tail()

    assert events == ["progress started", "SIGTERM", "progress done", "result"]
    assert result.is_error is False, result
    assert result.content == [types.TextContent(type="text", text="echo: still here")]
    assert returncode == 0, f"exit status {returncode} after a graceful SIGTERM (negative = killed by signal):\n{log}"
