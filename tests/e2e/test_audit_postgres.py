"""The audit trail's evidence on a real PostgreSQL: verify, prune and the `patchbay audit` commands read it the same
way as a SQLite file, and a deleted record is caught there too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.gate import audit_chain
from patchbay.gate.audit_chain import read_checkpoints
from patchbay.gate.audit_retention import DAY, prune, read_anchor
from patchbay.gate.audit_store import write_now
from patchbay.gate.audit_verify import verify
from patchbay.store import create_engine, upgrade
from tests.support.postgres import PostgresServer

KEY = b"a postgres audit key, 32 bytes.."
START = 2_000_000.0


@pytest.fixture
def database(pg: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"audit_{request.node.name.removeprefix('test_')[:40]}"
    pg.execute(f'CREATE DATABASE "{name}"')
    yield pg.url(name)


def write(engine: Engine, checkpoints: Path, count: int) -> None:
    clock = [START]
    checkpointer = audit_chain.Checkpointer(key=KEY, file=checkpoints, log=False, every=4, clock=lambda: clock[0])
    for i in range(1, count + 1):
        record: dict[str, Any] = {"kind": "call", "ts": START + i, "method": "tools/call", "name": "crm_query"}
        (head,) = write_now(engine, [{**record, "subject": "user:ada", "outcome": "ok", "arguments": {"i": i}}])
        clock[0] = START + i + 0.1
        checkpointer.maybe(*head)


def test_verify_and_prune_on_postgresql(database: str, tmp_path: Path) -> None:
    upgrade(database)
    engine = create_engine(database)
    checkpoints = tmp_path / "checkpoints.jsonl"
    try:
        write(engine, checkpoints, 10)
        lines = checkpoints.read_text().splitlines()
        assert verify(engine, read_checkpoints(lines), key=KEY).intact
        assert prune(engine, 1, checkpoints=checkpoints, key=KEY, now=START + 6 + DAY) == 4
        anchor = read_anchor(engine)
        assert anchor is not None and anchor.seq == 4
        report = verify(engine, read_checkpoints(lines), key=KEY, keep_days=1, now=START + 6 + DAY)
        assert report.intact, report.findings
        assert (report.first_seq, report.last_seq) == (5, 10)
        with engine.begin() as connection:
            connection.execute(text("DELETE FROM audit_records WHERE seq = 6"))
        found = {(f.problem, f.seq) for f in verify(engine, read_checkpoints(lines), key=KEY).findings}
        assert ("missing", 7) in found
    finally:
        engine.dispose()


def test_audit_commands_read_a_postgresql_store(database: str, tmp_path: Path) -> None:
    upgrade(database)
    engine = create_engine(database)
    try:
        write(engine, tmp_path / "checkpoints.jsonl", 5)
    finally:
        engine.dispose()
    config = tmp_path / "patchbay.toml"
    config.write_text(f'[store]\nurl = "{database}"\n[audit]\ncheckpoint_file = "checkpoints.jsonl"\n')
    env = {"COLUMNS": "200", "NO_COLOR": "1", "PATCHBAY_AUDIT_KEY": KEY.decode()}
    runner = CliRunner()
    exported = runner.invoke(app, ["audit", "export", "--config", str(config)], env=env)
    assert exported.exit_code == 0, exported.output
    assert [json.loads(line)["arguments"]["i"] for line in exported.output.splitlines()] == [1, 2, 3, 4, 5]
    searched = runner.invoke(app, ["audit", "search", "--user", "ada", "--tool", "crm_*", "-c", str(config)], env=env)
    assert searched.exit_code == 0 and len(searched.output.splitlines()) == 5
    verified = runner.invoke(app, ["audit", "verify", "--json", "--config", str(config)], env=env)
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.output)["checkpoints"] == 1
