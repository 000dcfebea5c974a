"""``[audit] synchronous``: "full" makes the audit writer's SQLite connection sync every commit (PRAGMA
synchronous=FULL), "normal" leaves it at the store's NORMAL."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection

from patchbay.errors import ConfigError
from patchbay.gate.audit import AuditRecorder
from patchbay.gate.calls import Call
from patchbay.protocol.scope import CallScope
from patchbay.settings import AuditSettings, from_dict
from patchbay.store import create_engine, write_path

# sqlite.org/pragma.html#pragma_synchronous: 1 NORMAL, 2 FULL.
LEVELS = {"normal": 1, "full": 2}


def _writer_level(connection: Connection) -> int:
    return int(connection.exec_driver_sql("PRAGMA synchronous").scalar_one())


async def _record_and_read_level(tmp_path: Path, synchronous: str) -> int:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    recorder = AuditRecorder(engine, AuditSettings(synchronous=synchronous, read_window_ms=0))  # type: ignore[arg-type]
    await recorder.open()
    try:
        scope = CallScope("legacy", "2025-11-25", 1, "tools/call", {})
        call = Call("tools/call", "lookup", scope, {}, time.perf_counter(), time.time(), write=True)
        assert await recorder.intent(call) is None  # committed through the writer's connection
        return await asyncio.to_thread(write_path(engine).run_sync, _writer_level)
    finally:
        await recorder.aclose()


@pytest.mark.parametrize("synchronous", ["normal", "full"])
def test_the_audit_writers_connection_syncs_as_configured(tmp_path: Path, synchronous: str) -> None:
    assert asyncio.run(_record_and_read_level(tmp_path, synchronous)) == LEVELS[synchronous]


def test_an_unknown_synchronous_level_is_refused_naming_the_allowed_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        from_dict({"audit": {"synchronous": "extra"}}, source="patchbay.toml", base_dir=tmp_path)
    message = str(refused.value)
    assert "patchbay.toml" in message and "audit.synchronous" in message
    assert "'normal'" in message and "'full'" in message
