"""A real `patchbay serve` killed with SIGKILL in the middle of a load run loses no audit record that mattered:
every call whose response the client received has its record, and every write that ran has its intent record
(issue 12: "Crash")."""

from __future__ import annotations

import asyncio
import os
import random
import signal
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


def _config(folder: Path) -> Path:
    config = folder / "patchbay.toml"
    config.write_text(
        f"""
[server]
name = "crash"

[store]
url = "sqlite:///{folder / "store.db"}"

[audit]
# Reads answered only once their record is committed (the default window lets a read's record trail its
# response by up to 50 ms, which a SIGKILL in that window would lose: docs/audit.md).
read_window_ms = 0

[[connectors]]
name = "a"
type = "python"
path = "{TOOLS}"
prefix = ""
""",
        encoding="utf-8",
    )
    return config


async def _load(server: RunningServer, kill_after: int) -> set[Any]:
    """Calls from CLIENTS concurrent clients (reads and writes) until the server dies; returns the ids of the
    calls whose response arrived. The server is killed once kill_after responses have arrived."""
    answered: set[Any] = set()

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
            result = response.json().get("result") if response.status_code == 200 else None
            assert result is not None and not result.get("isError"), response.text
            answered.add(request_id)
            if len(answered) >= kill_after and server.proc.poll() is None:
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


def test_after_a_sigkill_every_answered_call_and_every_write_that_ran_is_in_the_trail(tmp_path: Path) -> None:
    kill_after = random.randint(50, 600)  # a random moment in the run
    effects = tmp_path / "effects.log"
    with run_patchbay(_config(tmp_path), env={"PATCHBAY_TEST_EFFECTS": str(effects)}, log_dir=tmp_path) as server:
        answered = run_scenario(lambda: _load(server, kill_after), timeout=120)
        assert server.proc.wait(10) == -signal.SIGKILL, "the server was not killed mid-run"
    assert len(answered) >= kill_after

    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.connect() as connection:
        bodies = [orjson.loads(b) for b in connection.execute(text("SELECT body FROM audit_records")).scalars()]
    engine.dispose()
    done = {b["jsonrpc_id"] for b in bodies if b.get("phase") == "done"}
    intents = {b["arguments"]["name"] for b in bodies if b.get("phase") == "intent"}
    assert answered <= done, f"{len(answered - done)} answered calls have no record"
    ran = set(effects.read_text(encoding="utf-8").split()) if effects.exists() else set()
    assert ran <= intents, f"{len(ran - intents)} writes ran without an intent record"
    assert ran, "no write ran before the kill"
