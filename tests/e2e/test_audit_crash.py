"""A real `patchbay serve` killed with SIGKILL in the middle of a load run loses no audit record that mattered:
every call whose response the client received has its record, and every write that ran has its intent record
(issue 12: "Crash")."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from pathlib import Path
from typing import Any

import httpx2
import orjson
from sqlalchemy import text

from patchbay.store import create_engine
from tests.e2e.conftest import run_scenario
from tests.support.servers import RunningServer, run_patchbay

TOOLS = Path(__file__).resolve().parents[1] / "unit" / "fixtures" / "audit_tools.py"
CLIENTS = 16
# Each client stops after this many calls, so the run ends by itself even if the kill never came.
CALLS_PER_CLIENT = 400


# The default [audit] read_window_ms (docs/audit.md): a read's record may trail its response by this much.
DEFAULT_WINDOW_S = 0.050


def _config(folder: Path, audit: str = "") -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "crash"

[store]
url = "sqlite:///{folder / "store.db"}"

[audit]
{audit}

[[connectors]]
name = "a"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


class Run:
    """What the clients saw: when (time.monotonic) each answered call's response arrived, and when the kill was."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.killed_at: float | None = None


async def _load(server: RunningServer, kill_after: int, run: Run | None = None) -> set[Any]:
    """Calls from CLIENTS concurrent clients (reads and writes) until the server dies; returns the ids of the
    calls whose response arrived. The server is killed once kill_after responses have arrived."""
    answered: set[Any] = set()
    run = run or Run()

    async def client(index: int, http: httpx2.AsyncClient) -> None:
        for n in range(CALLS_PER_CLIENT):
            request_id = f"c{index}-{n}"
            name, arguments = (
                ("remember", {"name": request_id, "pin": "0000"}) if n % 3 == 0 else ("lookup", {"q": request_id})
            )
            body = {"jsonrpc": "2.0", "id": request_id, "method": "tools/call"}
            body["params"] = {"name": name, "arguments": arguments, "_meta": _META}
            try:
                response = await http.post("/mcp", json=body, headers={**_HEADERS, "mcp-name": name})
            except httpx2.TransportError:
                return  # the server is gone
            arrived = time.monotonic()
            result = response.json().get("result") if response.status_code == 200 else None
            assert result is not None and not result.get("isError"), response.text
            answered.add(request_id)
            run.arrived[request_id] = arrived
            if len(answered) >= kill_after and server.proc.poll() is None:
                run.killed_at = time.monotonic()
                os.kill(server.proc.pid, signal.SIGKILL)

    async with httpx2.AsyncClient(base_url=server.base_url, timeout=10) as http:
        await asyncio.gather(*(client(i, http) for i in range(CLIENTS)))
    return answered


_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json, text/event-stream",
    "mcp-protocol-version": "2026-07-28",
    "mcp-method": "tools/call",
}
_META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "crash-test", "version": "1"},
}


def _trail(folder: Path) -> tuple[set[Any], set[Any]]:
    """The JSON-RPC ids of the calls with a completion record, and the names of the writes with an intent record."""
    engine = create_engine(f"sqlite:///{folder / 'store.db'}")
    with engine.connect() as connection:
        bodies = [orjson.loads(b) for b in connection.execute(text("SELECT body FROM audit_records")).scalars()]
    engine.dispose()
    done = {b["jsonrpc_id"] for b in bodies if b.get("phase") == "done"}
    intents = {b["arguments"]["name"] for b in bodies if b.get("phase") == "intent"}
    return done, intents


def _writes_that_ran(effects: Path) -> set[str]:
    return set(effects.read_text(encoding="utf-8").split()) if effects.exists() else set()


def test_after_a_sigkill_every_answered_call_and_every_write_that_ran_is_in_the_trail(tmp_path: Path) -> None:
    kill_after = random.randint(50, 600)  # a random moment in the run
    effects = tmp_path / "effects.log"
    # Reads answered only once their record is committed: nothing answered may be missing.
    config = _config(tmp_path, "read_window_ms = 0")
    with run_patchbay(config, env={"PATCHBAY_TEST_EFFECTS": str(effects)}, log_dir=tmp_path) as server:
        answered = run_scenario(lambda: _load(server, kill_after), timeout=120)
        assert server.proc.wait(10) == -signal.SIGKILL, "the server was not killed mid-run"
    assert len(answered) >= kill_after

    done, intents = _trail(tmp_path)
    assert answered <= done, f"{len(answered - done)} answered calls have no record"
    ran = _writes_that_ran(effects)
    assert ran <= intents, f"{len(ran - intents)} writes ran without an intent record"
    assert ran, "no write ran before the kill"


def test_at_the_default_read_window_only_reads_answered_within_the_window_before_a_sigkill_may_be_missing(
    tmp_path: Path,
) -> None:
    kill_after = random.randint(50, 600)
    effects = tmp_path / "effects.log"
    run = Run()
    with run_patchbay(_config(tmp_path), env={"PATCHBAY_TEST_EFFECTS": str(effects)}, log_dir=tmp_path) as server:
        answered = run_scenario(lambda: _load(server, kill_after, run), timeout=120)
        assert server.proc.wait(10) == -signal.SIGKILL, "the server was not killed mid-run"
    assert run.killed_at is not None and len(answered) >= kill_after

    done, intents = _trail(tmp_path)
    # Client-side times: a response arrives after the server sent it, so this errs on the server's side.
    due = {rid for rid, at in run.arrived.items() if at < run.killed_at - DEFAULT_WINDOW_S}
    assert due, "no response arrived more than the window before the kill"
    missing = due - done
    assert not missing, f"{len(missing)} calls answered more than the read window before the kill have no record"
    writes = {rid for rid in answered if int(rid.rsplit("-", 1)[1]) % 3 == 0}  # _load's every third call
    assert writes <= done, "a write was answered before its record was committed"
    ran = _writes_that_ran(effects)
    assert ran <= intents, f"{len(ran - intents)} writes ran without an intent record"
