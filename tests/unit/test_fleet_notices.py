"""Control-plane notices between replicas: two Runtimes with their own Fleet play two replicas sharing one SQLite
store and one real redis-server; their manifest polls are set far apart, so only a notice can be this quick."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from tests.support.redis_server import TIMEOUT_MS
from tests.support.waiting import until

from patchbay.app import Runtime
from patchbay.catalog.manifest import apply
from patchbay.catalog.manifest_store import read_snapshot, record_version
from patchbay.fleet.notices import DoctorReports, share_runtime
from patchbay.settings import from_dict
from patchbay.store import create_engine

pytestmark = pytest.mark.anyio

TOOLS = '''
from patchbay import tool


@tool(read_only=True)
def lookup(id: int) -> str:
    """Look a customer up by id."""
    return f"v1:{id}"
'''


def config(folder: Path, redis_url: str, prefix: str) -> dict[str, Any]:
    return {
        "server": {"secret": "s" * 40},
        "redis": {"url": redis_url, "key_prefix": prefix, "timeout_ms": TIMEOUT_MS},
        "store": {"url": f"sqlite:///{folder / 'store.db'}"},
        "manifest": {"mode": "review", "poll_seconds": 60},
        "connectors": [{"name": "py", "type": "python", "path": str(folder / "tools.py"), "prefix": ""}],
    }


@contextlib.asynccontextmanager
async def replicas(
    folder: Path, redis_url: str, prefix: str, approvals: tuple[Any, Any] = (None, None)
) -> AsyncIterator[list[Runtime]]:
    (folder / "tools.py").write_text(TOOLS, encoding="utf-8")
    started: list[Runtime] = []
    try:
        for held in approvals:
            runtime = Runtime(from_dict(config(folder, redis_url, prefix), base_dir=folder))
            assert runtime.fleet is not None
            runtime.dispatcher.approvals = held
            share_runtime(runtime.fleet, runtime)  # as create_app does
            await runtime.fleet.start()
            started.append(runtime)
            await runtime.start()
        for runtime in started:
            await until(runtime.fleet.bus.subscribed.is_set, "the bus to subscribe")  # type: ignore[union-attr]
        yield started
    finally:
        for runtime in started:
            await runtime.stop()
            await runtime.fleet.stop()  # type: ignore[union-attr]


def description(runtime: Runtime) -> str:
    return str(next(t["description"] for t in runtime.catalog.tools_wire if t["name"] == "lookup"))


async def test_a_manifest_approval_on_one_replica_is_served_by_the_other_without_waiting_for_its_poll(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    async with replicas(tmp_path, redis_url, redis_prefix) as (a, b):
        path = tmp_path / "tools.py"
        path.write_text(TOOLS.replace("Look a customer up by id.", "Look up; also email it."), encoding="utf-8")
        for runtime in (a, b):
            await runtime.reload()
        await a.keeper.check()  # type: ignore[union-attr]  # records the proposal
        seen_at_b: list[str] = []
        b.hub.add(lambda method, params: seen_at_b.append(method))
        assert description(b) == "Look a customer up by id."

        engine = create_engine(a.settings.store_url)
        snapshot = read_snapshot(engine)
        assert snapshot is not None
        entries = apply(snapshot.entries, a.catalog.manifest.pending)  # type: ignore[union-attr]
        record_version(engine, entries, previous=snapshot.version, by="ada", mode="review", note="~lookup")
        engine.dispose()
        await a.keeper.check()  # what the console's approve does after recording: A loads it, then tells the fleet

        await until(lambda: description(b) == "Look up; also email it.", "B to serve the approved definition")
    assert "notifications/tools/list_changed" in seen_at_b


async def test_an_approval_decided_on_one_replica_completes_the_elicitation_waiting_on_the_other(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from patchbay.gate.approval_notify import ElicitationWaits

    class Session:
        def __init__(self) -> None:
            self.sent: list[dict[str, Any]] = []

        def notify(self, message: dict[str, Any]) -> bool:
            self.sent.append(message)
            return True

    async def never(ids: list[str]) -> dict[str, str]:
        return dict.fromkeys(ids, "pending")  # the store's poll would never see it decided

    waits = {name: ElicitationWaits(never, poll_seconds=60) for name in "ab"}
    # What share_runtime needs of patchbay.gate.approvals.Approvals: its elicitation waits.
    held = tuple(type("Approvals", (), {"elicitations": waits[name]})() for name in "ab")
    async with replicas(tmp_path, redis_url, redis_prefix, (held[0], held[1])):
        session = Session()
        waits["b"].add("apr_123", session)

        waits["a"].decided("apr_123")

        await until(lambda: session.sent, "B's waiting session to be told")
        waits["a"].close()
        waits["b"].close()
    assert session.sent == [
        {"jsonrpc": "2.0", "method": "notifications/elicitation/complete", "params": {"elicitationId": "apr_123"}}
    ]


async def test_the_connect_pages_doctor_report_is_readable_from_another_replica(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    from patchbay.console.connect_doctor import CheckRow, ClientVerdict, DoctorOutcome

    outcome = DoctorOutcome(
        "https://mcp.example.com/mcp",
        (ClientVerdict("ChatGPT", False, (CheckRow("https", "reach", "fail", "plain http", "use https"),)),),
        counts={"fail": 1},
    )
    async with replicas(tmp_path, redis_url, redis_prefix) as (a, b):
        await DoctorReports(a.fleet).put("user:ada", outcome)
        assert await DoctorReports(b.fleet).get("user:ada") == outcome
        assert await DoctorReports(b.fleet).get("user:bob") is None
