"""Appending to the audit chain: the indexed copies of each record, its time stamp, and the chain head."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from patchbay import settings as settings_mod
from patchbay.gate import audit_chain
from patchbay.gate.audit_models import NAME_LENGTH, SUBJECT_LENGTH
from patchbay.gate.audit_store import admin_event, columns_of, write_now
from patchbay.gate.audit_verify import verify
from patchbay.store import create_engine, upgrade


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture
def engine(db: Path) -> Iterator[Engine]:
    upgrade(f"sqlite:///{db}")
    engine = create_engine(f"sqlite:///{db}")
    yield engine
    engine.dispose()


def _rows(db: Path, columns: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as connection:
        return list(connection.execute(f"SELECT {columns} FROM audit_records ORDER BY seq"))


def test_long_values_are_cut_in_their_columns_and_kept_whole_in_the_body(engine: Engine, db: Path) -> None:
    record = {
        "kind": "call",
        "method": "tools/call",
        "name": "n" * 2000,
        "subject": "s" * 2000,
        "client_name": "c" * 300,
    }
    write_now(engine, [record, {"kind": "event", "method": "m", "request_ref": 7}])
    ((name, subject, client, ref, body), (_, _, _, number, _)) = _rows(
        db, "name, subject, client_name, request_ref, body"
    )
    assert (name, subject, client, ref) == ("n" * NAME_LENGTH, "s" * SUBJECT_LENGTH, "c" * 200, None)
    assert number == "7"
    assert json.loads(body)["name"] == "n" * 2000
    assert verify(engine).intact


def test_a_record_without_a_method_has_an_empty_method_column() -> None:
    row = columns_of({"kind": "event", "ts": 5, "subject": None})
    assert (row["method"], row["subject"], row["ts"], row["kind"]) == ("", None, 5.0, "event")
    assert columns_of({"kind": "event", "ts": 5, "name": "add"})["method"] == ""  # whatever else it has


def test_a_boolean_latency_is_no_duration() -> None:
    assert columns_of({"kind": "call", "ts": 1, "latency_ms": True})["duration_ms"] is None
    assert columns_of({"kind": "call", "ts": 1, "latency_ms": 2})["duration_ms"] == 2.0


def test_records_are_stamped_with_the_time_unless_they_carry_one(engine: Engine, db: Path) -> None:
    before = time.time()
    write_now(engine, [{"kind": "event", "method": "a"}, {"kind": "event", "method": "b", "ts": 42.0}])
    (first, second) = [ts for (ts,) in _rows(db, "ts")]
    assert before <= first <= time.time()
    assert second == 42.0


def test_the_chain_head_moves_with_each_commit(engine: Engine, db: Path) -> None:
    heads = write_now(engine, [{"kind": "event", "method": "a"}, {"kind": "event", "method": "b"}])
    assert [seq for seq, _ in heads] == [1, 2]
    assert write_now(engine, []) == []
    (third,) = write_now(engine, [{"kind": "event", "method": "c"}])
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT seq, hash FROM audit_chain_head").fetchall() == [third]
    ((prev, body, digest),) = _rows(db, "prev_hash, body, hash")[2:]
    assert third == (3, digest) and prev == heads[1][1] and digest == audit_chain.link(prev, 3, body)


def test_a_store_whose_head_row_and_records_were_deleted_starts_a_new_chain(engine: Engine, db: Path) -> None:
    write_now(engine, [{"kind": "event", "method": "a"}])
    with sqlite3.connect(db) as connection:
        connection.execute("DELETE FROM audit_records")
        connection.execute("DELETE FROM audit_chain_head")
    ((seq, digest),) = write_now(engine, [{"kind": "event", "method": "b"}])
    assert seq == 1
    assert _rows(db, "prev_hash") == [(audit_chain.GENESIS,)]
    with sqlite3.connect(db) as connection:
        assert connection.execute("SELECT id, seq, hash FROM audit_chain_head").fetchall() == [(1, 1, digest)]


def test_admin_events_are_recorded_only_while_auditing_is_on(tmp_path: Path) -> None:
    (tmp_path / "patchbay.toml").write_text('[store]\nurl = "sqlite:///audit.db"\n[audit]\nenabled = false\n')
    off = settings_mod.load(tmp_path / "patchbay.toml", env={})
    admin_event(off, "users.add", username="ada")
    assert not (tmp_path / "audit.db").exists()
    (tmp_path / "patchbay.toml").write_text('[store]\nurl = "sqlite:///audit.db"\n')
    on = settings_mod.load(tmp_path / "patchbay.toml", env={})
    admin_event(on, "users.add", username="ada")
    ((body,),) = _rows(tmp_path / "audit.db", "body")
    event = json.loads(body)
    assert (event["kind"], event["method"], event["username"], event["via"]) == ("event", "users.add", "ada", "cli")
    # Only the trail's own tables are made: recording an event migrates no other part of the store.
    with sqlite3.connect(tmp_path / "audit.db") as connection:
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert tables == {"audit_anchor", "audit_chain_head", "audit_records", "patchbay_schema_version"}
