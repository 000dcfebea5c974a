"""``patchbay audit tail | search | export`` over a real SQLite trail, and their errors for bad input."""

from __future__ import annotations

import csv
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from patchbay.cli import app
from patchbay.cli.audit import CSV_COLUMNS
from patchbay.gate.audit_store import write_now
from patchbay.store import create_engine, upgrade

ENV = {"COLUMNS": "200", "NO_COLOR": "1"}
HOUR = 3600.0


def call(seq_hint: int, ts: float, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "call",
        "ts": ts,
        "method": "tools/call",
        "name": "crm_query",
        "subject": "user:ada",
        "username": "ada",
        "client_id": "client-1",
        "client_name": "ChatGPT",
        "outcome": "ok",
        "request_ref": f"req{seq_hint}",
        "latency_ms": 1.5,
        "result_bytes": 120,
        "arguments": {"n": seq_hint},
        **fields,
    }


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "patchbay.toml"
    path.write_text('[store]\nurl = "sqlite:///audit.db"\n')
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    now = time.time()
    records = [
        call(1, now - 3 * HOUR, outcome="error", detail="boom"),
        call(2, now - 50 * 60, name="crm_close_ticket", outcome="tool_error"),
        call(3, now - 40 * 60, subject="user:bob", username="bob", name="crmXquery"),
        call(4, now - 30 * 60, client_id="client-2", client_name="Claude", outcome="denied"),
        {"kind": "event", "ts": now - 20 * 60, "method": "auth.sign_in", "subject": "user:ada", "outcome": "ok"},
        call(6, now - 10 * 60, name='=HYPERLINK("http://evil")', outcome="tool_error"),
    ]
    engine = create_engine(url)
    try:
        for one in records:
            write_now(engine, [one])
    finally:
        engine.dispose()
    return path


def run(config: Path, *args: str) -> Any:
    return CliRunner().invoke(app, ["audit", *args, "--config", str(config)], env=ENV)


def seqs(output: str) -> list[int]:
    return [int(line.split()[1].lstrip("#")) for line in output.splitlines() if line.strip()]


def test_tail_prints_the_newest_records_oldest_first(config: Path) -> None:
    result = run(config, "tail", "-n", "3")
    assert result.exit_code == 0, result.output
    assert seqs(result.output) == [4, 5, 6]
    line = result.output.splitlines()[0]
    assert "tools/call" in line and "crm_query" in line and "Claude" in line and "denied" in line


def test_tail_json_prints_each_record_as_stored(config: Path) -> None:
    result = run(config, "tail", "-n", "2", "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["method"] for r in records] == ["auth.sign_in", "tools/call"]
    assert records[0]["chain_algorithm"] == "pb-sha256-chain-v1"


def test_search_combines_user_tool_since_and_outcome(config: Path) -> None:
    result = run(config, "search", "--user", "ada", "--tool", "crm_*", "--since", "1h", "--outcome", "tool_error")
    assert result.exit_code == 0, result.output
    assert seqs(result.output) == [2]


def test_search_tool_pattern_treats_underscore_literally(config: Path) -> None:
    result = run(config, "search", "--tool", "crm_q*")
    assert seqs(result.output) == [1, 4]  # not crmXquery (seq 3)


def test_search_by_client_name_or_id_and_by_kind(config: Path) -> None:
    assert seqs(run(config, "search", "--client", "Claude").output) == [4]
    assert seqs(run(config, "search", "--client", "client-2").output) == [4]
    assert seqs(run(config, "search", "--kind", "event").output) == [5]
    assert seqs(run(config, "search", "--user", "user:bob").output) == [3]


def test_search_until_and_iso_times(config: Path) -> None:
    assert seqs(run(config, "search", "--until", "2h").output) == [1]
    assert seqs(run(config, "search", "--since", "2000-01-01", "--until", "2000-01-02T00:00:00Z").output) == []


def test_search_limit_stops_early(config: Path) -> None:
    assert seqs(run(config, "search", "--limit", "2").output) == [1, 2]


def test_export_jsonl_is_the_stored_records_in_order(config: Path, tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    result = run(config, "export", "--format", "jsonl", "--output", str(target))
    assert result.exit_code == 0, result.output
    assert "exported 6 records" in result.output
    assert target.stat().st_mode & 0o777 == 0o600
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert [r.get("request_ref") for r in records] == ["req1", "req2", "req3", "req4", None, "req6"]
    assert records[0]["detail"] == "boom"


def test_export_csv_has_the_fixed_columns_and_defuses_formulas(config: Path) -> None:
    result = run(config, "export", "--format", "csv", "--since", "1h")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert list(rows[0].keys()) == list(CSV_COLUMNS)
    assert [row["seq"] for row in rows] == ["2", "3", "4", "5", "6"]
    assert rows[0]["name"] == "crm_close_ticket" and rows[0]["outcome"] == "tool_error"
    assert rows[0]["latency_ms"] == "1.5" and rows[0]["username"] == "ada"
    assert rows[-1]["name"] == '\'=HYPERLINK("http://evil")'
    assert len(rows[0]["hash"]) == 64 and rows[0]["time"].endswith("Z")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["search", "--since", "yesterday"], "--since"),
        (["search", "--until", "5 hours"], "--until"),
        (["search", "--outcome", "erorr"], "tool_error"),
        (["search", "--kind", "calls"], "--kind"),
        (["export", "--format", "xml"], "--format"),
        (["tail", "-n", "0"], "-n"),
        (["search", "--limit", "0"], "--limit"),
    ],
)
def test_bad_input_exits_2_naming_the_option(config: Path, args: list[str], expected: str) -> None:
    result = run(config, *args)
    assert result.exit_code == 2, result.output
    assert expected in result.output


def test_export_to_an_unwritable_path_exits_2(config: Path, tmp_path: Path) -> None:
    result = run(config, "export", "--output", str(tmp_path / "missing" / "out.jsonl"))
    assert result.exit_code == 2
    assert "cannot write" in result.output


def test_tail_follow_prints_records_written_after_it_started(config: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "patchbay", "audit", "tail", "-f", "-n", "1", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **ENV},
        # A run started in the background by a non-interactive shell (`make mutate &`) inherits SIGINT ignored:
        # give the command the default handler, as a terminal would, so Ctrl-C below stops it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stdout or ()], daemon=True)
    reader.start()
    try:
        assert "#6" in lines.get(timeout=30)
        engine = create_engine(f"sqlite:///{config.parent / 'audit.db'}")
        try:
            write_now(engine, [call(7, time.time(), name="followed_tool")])
        finally:
            engine.dispose()
        followed = lines.get(timeout=30)
        assert "#7" in followed and "followed_tool" in followed
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
