"""The audit recorder against a real SQLite file: redaction, the writer's batching and ordering, failure modes."""

from __future__ import annotations

import asyncio
import decimal
import gc
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, event, make_url, text
from sqlalchemy.pool import QueuePool

from patchbay.auth.principal import Principal
from patchbay.errors import ConfigError
from patchbay.gate import audit_chain
from patchbay.gate.audit import AuditRecorder, build_recorder, principal_fields
from patchbay.gate.audit_redact import REDACTED, TRUNCATED_KEY, Redactor
from patchbay.gate.calls import Call
from patchbay.protocol.scope import CallScope
from patchbay.settings import AuditSettings, from_dict
from patchbay.store import create_engine, upgrade, write_path
from patchbay.store.writes import is_memory

pytestmark = pytest.mark.anyio

SCHEMA = {
    "type": "object",
    "properties": {
        "query": {"type": "string"},
        "pin": {"type": "string", "format": "password"},
        "blob": {"type": "string", "writeOnly": True},
        "nested": {
            "type": "object",
            "properties": {"inner_secret": {"type": "string", "format": "password"}},
        },
        "rows": {"type": "array", "items": {"type": "object", "properties": {"pw": {"writeOnly": True}}}},
    },
}


def _scope(request_id: Any = 1) -> CallScope:
    ada = Principal("user:ada", "user", roles=frozenset({"sales", "admin"}), username="ada", client_id="c1")
    return CallScope("legacy", "2025-06-18", request_id, "tools/call", {}, principal=ada)


def _call(name: str = "crm_search", *, write: bool = False, request_id: Any = 1, **arguments: Any) -> Call:
    return Call("tools/call", name, _scope(request_id), arguments, time.perf_counter(), time.time(), write=write)


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as connection:
        return list(
            connection.execute(text("SELECT seq, body, prev_hash, hash, outcome FROM audit_records ORDER BY seq"))
        )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'audit.db'}")
    upgrade(engine, "audit@head")
    yield engine
    engine.dispose()


@pytest.fixture
async def recorder(store: Engine) -> AsyncIterator[AuditRecorder]:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=10_000, read_window_ms=0))
    recorder.schemas = lambda name: SCHEMA
    yield recorder
    await asyncio.to_thread(recorder._drain)


@pytest.fixture
def blocked(store: Engine) -> Iterator[threading.Event]:
    """Holds the store's one writer busy until the event is set (then every queued record commits)."""
    started, release = threading.Event(), threading.Event()

    def hold(connection: Any) -> None:
        started.set()
        release.wait(10)

    write_path(store).submit(hold)
    assert started.wait(10)
    yield release
    release.set()


def test_password_writeonly_and_named_fields_are_redacted_at_any_depth() -> None:
    redact = Redactor(["api_key", "Authorization"], 4096)
    arguments = {
        "query": "q3 pipeline",
        "pin": "1234",
        "blob": "s3cr3t-bytes",
        "nested": {"inner_secret": "x", "API-KEY": "k", "keep": 1},
        "rows": [{"pw": "p", "n": 2}],
        "headers": {"authorization": "Bearer abc"},
    }
    assert redact(arguments, SCHEMA) == {
        "query": "q3 pipeline",
        "pin": REDACTED,
        "blob": REDACTED,
        "nested": {"inner_secret": REDACTED, "API-KEY": REDACTED, "keep": 1},
        "rows": [{"pw": REDACTED, "n": 2}],
        "headers": {"authorization": REDACTED},
    }
    assert arguments["pin"] == "1234"  # the call's own arguments are untouched


def test_arguments_over_the_cap_are_cut_to_a_marker_after_redaction() -> None:
    redact = Redactor(["token"], 64)
    kept = redact({"token": "t" * 500, "note": "short"}, None)
    assert kept == {"token": REDACTED, "note": "short"}
    cut = redact({"note": "é" * 100, "token": "never-shown"}, None)
    assert set(cut) == {TRUNCATED_KEY, "bytes"}
    assert cut["bytes"] == len(orjson.dumps({"note": "é" * 100, "token": REDACTED}))
    assert len(cut[TRUNCATED_KEY].encode()) <= 64 and "never-shown" not in cut[TRUNCATED_KEY]


def test_secrets_declared_for_any_property_or_by_a_boolean_schema_are_handled() -> None:
    redact = Redactor(["token"], 4096)
    schema = {
        "type": "object",
        "properties": {"open": True, "tags": {"type": "array"}},
        "additionalProperties": {"type": "string", "format": "password"},
    }
    arguments = {"open": "kept", "tags": [{"token": "t"}, "x"], "anything": "hidden", 7: {"token": "t"}}
    assert redact(arguments, schema) == {
        "open": "kept",
        "tags": [{"token": REDACTED}, "x"],
        "anything": REDACTED,
        7: REDACTED,
    }
    assert redact({"tags": [{"token": "t"}], 7: "seven"}, None) == {"tags": [{"token": REDACTED}], 7: "seven"}


def test_a_schema_that_is_a_mapping_but_no_dict_still_marks_secrets() -> None:
    redact = Redactor([], 4096)
    secret = MappingProxyType({"format": "password"})
    assert redact({"pw": "hunter2"}, MappingProxyType({"properties": {"pw": secret}})) == {"pw": REDACTED}


def test_properties_that_are_no_object_are_no_schema() -> None:
    assert Redactor(["token"], 4096)({"a": 1, "token": "t"}, {"properties": ["a"]}) == {"a": 1, "token": REDACTED}


def test_arguments_exactly_at_the_cap_are_kept_whole() -> None:
    arguments = {"note": "x" * 10}
    size = len(orjson.dumps(arguments))
    assert Redactor([], size)(arguments, None) == arguments
    assert Redactor([], size - 1)(arguments, None) == {
        TRUNCATED_KEY: orjson.dumps(arguments)[: size - 1].decode(),
        "bytes": size,
    }


def test_the_cut_is_taken_from_compact_json_whatever_the_values() -> None:
    # A value JSON has no type for is written as its str (Python tools may pass one), a non-string key as text.
    cut = Redactor([], 24)({"price": decimal.Decimal("1.50"), 3: "three", "note": "y" * 50}, None)
    assert cut == {
        TRUNCATED_KEY: '{"price":"1.50","3":"thr',
        "bytes": len('{"price":"1.50","3":"three","note":"' + "y" * 50 + '"}'),
    }


def test_integers_beyond_64_bits_are_capped_as_the_standard_library_writes_them() -> None:
    arguments = {"big": 2**70, "name": "é" * 20, "price": decimal.Decimal("1.50")}
    text = json.dumps(arguments, default=str, ensure_ascii=False).encode()
    assert Redactor([], len(text))(arguments, None) == arguments
    assert Redactor([], 50)(arguments, None) == {TRUNCATED_KEY: text[:50].decode(errors="ignore"), "bytes": len(text)}


async def test_concurrent_records_get_consecutive_seqs_in_arrival_order_on_an_unbroken_chain(
    recorder: AuditRecorder, store: Engine
) -> None:
    calls = [_call(request_id=i, query=f"q{i}") for i in range(120)]
    assert await asyncio.gather(*(recorder.finish(call) for call in calls)) == [None] * 120
    rows = _rows(store)
    assert [row.seq for row in rows] == list(range(1, 121))
    assert [orjson.loads(row.body)["jsonrpc_id"] for row in rows] == list(range(120))
    prev = audit_chain.GENESIS
    for row in rows:
        assert row.prev_hash == prev and row.hash == audit_chain.link(prev, row.seq, row.body)
        prev = row.hash
    with store.connect() as connection:
        assert tuple(connection.execute(text("SELECT seq, hash FROM audit_chain_head")).one()) == (120, prev)


async def test_records_queued_during_a_commit_share_the_next_commit(
    recorder: AuditRecorder, store: Engine, blocked: threading.Event
) -> None:
    commits: list[int] = []
    event.listen(write_path(store).engine, "commit", lambda connection: commits.append(1))
    waiting = [asyncio.create_task(recorder.finish(_call(request_id=i))) for i in range(50)]
    await _until(lambda: recorder.health()["queued"] == 49)  # one batch waits behind the busy writer
    blocked.set()
    await asyncio.gather(*waiting)
    assert len(commits) == 3  # the blocker's, the first record's, then the other 49 together
    assert len(_rows(store)) == 50


async def test_a_record_holds_who_called_what_and_the_outcome_but_no_secret(
    recorder: AuditRecorder, store: Engine
) -> None:
    call = _call(write=True, query="acme", pin="9876-SECRET")
    assert await recorder.intent(call) is None
    call.outcome, call.result_bytes = "tool_error", 42
    await recorder.finish(call)
    intent, done = (orjson.loads(row.body) for row in _rows(store))
    assert intent["outcome"] == "intent" and intent["arguments"] == {"query": "acme", "pin": REDACTED}
    assert intent["subject"] == "user:ada" and intent["roles"] == ["admin", "sales"] and intent["client_id"] == "c1"
    assert done["intent_seq"] == 1 and done["outcome"] == "tool_error" and done["result_bytes"] == 42
    assert "arguments" not in done and done["latency_ms"] >= 0
    raw = b"".join(path.read_bytes() for path in Path(store.url.database or "").parent.glob("audit.db*"))
    assert b"9876-SECRET" not in raw


async def test_a_write_is_refused_and_never_runs_when_the_store_is_read_only(tmp_path: Path, store: Engine) -> None:
    read_only = create_engine(f"sqlite:///file:{tmp_path / 'audit.db'}?mode=ro&uri=true")
    recorder = AuditRecorder(read_only, AuditSettings(timeout_ms=2000))
    call = _call(write=True, query="x")
    refusal = await recorder.intent(call)
    assert refusal is not None and refusal["isError"] is True
    message = refusal["content"][0]["text"]
    assert message.startswith("Cannot record this call: the audit store cannot be written (")
    assert "readonly database" in message and message.endswith("nothing was run.")
    assert call.outcome == "unrecorded"
    assert recorder.health()["ok"] is False and "readonly" in recorder.health()["detail"]
    # Reads go on (serve_reads, the default), their lost records counted.
    assert await recorder.intent(_call()) is None
    assert await recorder.finish(_call()) is None
    assert recorder.health()["lost"] >= 2
    read_only.dispose()


async def test_with_refuse_all_reads_are_refused_too_while_records_cannot_be_stored(
    tmp_path: Path, store: Engine
) -> None:
    read_only = create_engine(f"sqlite:///file:{tmp_path / 'audit.db'}?mode=ro&uri=true")
    recorder = AuditRecorder(read_only, AuditSettings(on_failure="refuse_all", read_window_ms=0))
    refused = await recorder.finish(_call())
    assert refused is not None and "nothing was run" in refused["content"][0]["text"]
    assert await recorder.intent(_call()) is not None  # and the next read is refused before it runs
    read_only.dispose()


async def test_a_write_waits_at_most_timeout_ms_for_a_locked_store_then_recording_resumes(
    tmp_path: Path, store: Engine
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=200))
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        call = _call(write=True)
        refusal = await recorder.intent(call)
        assert refusal is not None and "did not answer within 200 ms" in refusal["content"][0]["text"]
        assert recorder.health()["ok"] is False
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await recorder.intent(_call(write=True)) is None
    assert recorder.health()["ok"] is True
    outcomes = [row.outcome for row in _rows(store)]
    assert outcomes == ["intent", "intent"]  # the refused call's late intent, then the next call's


async def test_a_full_queue_refuses_writes_instead_of_waiting(store: Engine, blocked: threading.Event) -> None:
    recorder = AuditRecorder(store, AuditSettings(queue_size=10, timeout_ms=5000, read_window_ms=0))
    waiting = [asyncio.create_task(recorder.finish(_call(request_id=i))) for i in range(11)]
    await _until(lambda: recorder.health()["queued"] == 10)
    for lost in (1, 2):
        refusal = await recorder.intent(_call(write=True))
        assert refusal is not None and refusal["content"][0]["text"] == (
            "Cannot record this call: the audit queue is full (the store is too slow); nothing was run."
        )
        assert recorder.health()["lost"] == lost
    blocked.set()
    await asyncio.gather(*waiting)
    assert len(_rows(store)) == 11


async def test_a_read_is_answered_before_its_commit_only_while_the_writer_keeps_up(
    store: Engine, blocked: threading.Event
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    queued_at = time.monotonic()
    await recorder.finish(_call(request_id="first"))  # nothing is old: answered at once, its record queued
    assert recorder.health()["written"] == 0 and not _rows(store)
    await _until(lambda: time.monotonic() - queued_at > 0.05)  # that record is now older than the window
    late = asyncio.create_task(recorder.finish(_call(request_id="late")))
    await asyncio.sleep(0)
    assert not late.done()  # this read waits for its commit ...
    await late  # ... at most the window, then it is answered and counted
    assert recorder.health()["late"] == 1
    blocked.set()
    await _until(lambda: len(_rows(store)) == 2)


async def test_events_are_recorded_without_waiting(recorder: AuditRecorder, store: Engine) -> None:
    recorder.event("auth.sign_in", subject="user:ada", username="ada", outcome="ok")
    await _until(lambda: recorder.health()["written"] == 1)
    body = orjson.loads(_rows(store)[0].body)
    assert body["kind"] == "event" and body["method"] == "auth.sign_in" and body["username"] == "ada"


async def _until(condition: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.005)


async def test_an_argument_json_tools_choke_on_is_recorded_and_costs_no_other_record(
    recorder: AuditRecorder, store: Engine
) -> None:
    huge = _call(write=True, n=2**70)
    assert await asyncio.gather(recorder.intent(huge), recorder.intent(_call(write=True, n=1))) == [None, None]
    recorded = sorted(str(orjson.loads(row.body)["arguments"]["n"]) for row in _rows(store))
    assert recorded == ["1", str(2**70)]


async def test_arguments_too_deep_to_redact_are_recorded_as_unrecordable_and_cost_no_other_record(
    recorder: AuditRecorder, store: Engine
) -> None:
    # A client may nest an object argument deeper than the redactor can walk (orjson parses 1,024 levels): the
    # record keeps who called what, its arguments become a marker naming why, and its batch commits whole.
    deep: dict[str, Any] = {}
    for _ in range(5000):
        deep = {"d": deep}
    calls = _call(write=True, request_id=1, filter=deep), _call(write=True, request_id=2, pin="1234", n=1)
    assert await asyncio.gather(*(recorder.intent(call) for call in calls)) == [None, None]
    bodies = {body["jsonrpc_id"]: body for body in (orjson.loads(row.body) for row in _rows(store))}
    assert bodies[1]["arguments"] == {"[unrecordable]": "RecursionError"}
    assert bodies[1]["name"] == "crm_search" and bodies[1]["username"] == "ada"
    assert bodies[2]["arguments"] == {"pin": REDACTED, "n": 1}


@pytest.mark.parametrize(
    ("error", "shown"),
    [(OSError(), "OSError"), (OSError("d" * 300 + "\n[SQL: INSERT INTO audit_records ...]"), "d" * 200)],
)
async def test_a_failed_write_names_its_cause_in_one_line_of_at_most_200_characters(
    store: Engine, error: OSError, shown: str
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=5000))
    pool = write_path(store).engine.pool

    def fail(*_args: Any) -> None:
        raise error

    event.listen(pool, "checkout", fail)
    try:
        refusal = await recorder.intent(_call(write=True))
    finally:
        event.remove(pool, "checkout", fail)
    assert refusal is not None
    reason = f"the audit store cannot be written ({shown})"
    assert refusal["content"][0]["text"] == f"Cannot record this call: {reason}; nothing was run."
    assert recorder.health()["detail"] == reason


async def test_a_store_that_cannot_be_opened_is_named_by_the_drivers_message_alone(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'audit.db'}")
    recorder = AuditRecorder(engine, AuditSettings())
    recorder.source = "patchbay.toml"
    try:
        with pytest.raises(ConfigError) as refused:
            await recorder.open()
    finally:
        engine.dispose()
    # SQLAlchemy's wrapper adds the driver's class and the SQL; the message names only the driver's cause.
    assert str(refused.value) == (
        "[audit] records every call in the store, which cannot be used: unable to open database file. Fix [store] "
        "url, or set [audit] enabled = false to serve without an audit trail."
    )
    assert (refused.value.file, refused.value.key) == ("patchbay.toml", "store.url")


async def test_opening_a_new_store_makes_only_the_audit_trails_tables(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'new.db'}")
    recorder = AuditRecorder(engine, AuditSettings())
    await recorder.open()
    await recorder.aclose()
    with engine.connect() as connection:
        tables = set(connection.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
    engine.dispose()
    assert tables == {"audit_anchor", "audit_chain_head", "audit_records", "patchbay_schema_version"}


def _catalog() -> Any:
    return SimpleNamespace(tools={"crm_search": SimpleNamespace(input_schema=SCHEMA)})


def test_a_server_without_sign_in_or_store_keeps_its_trail_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = from_dict({"server": {"name": "t"}}, source="patchbay.toml", base_dir=tmp_path)
    with caplog.at_level(logging.INFO, logger="patchbay.audit"):
        recorder = build_recorder(settings, _catalog())
    assert recorder is not None
    try:
        assert is_memory(recorder.engine.url) and recorder.engine.url.get_backend_name() == "sqlite"
        assert recorder.pruner is None and recorder.checkpointer is None
        assert recorder.settings is settings.audit and recorder.source == "patchbay.toml"
        assert recorder.schemas("crm_search") is SCHEMA and recorder.schemas("unknown") is None
        assert "audit: no [store] configured; the audit trail is kept in memory only" in caplog.messages
    finally:
        recorder.engine.dispose()


@pytest.mark.parametrize(
    "table", [{"auth": {"mode": "oauth"}}, {"store": {"url": "sqlite:///trail.db"}}], ids=["sign-in", "store"]
)
def test_a_server_with_sign_in_or_a_store_keeps_its_trail_in_the_store_file(tmp_path: Path, table: Any) -> None:
    (tmp_path / "audit.key").write_bytes(b"k" * 32)
    audit = {"checkpoint_file": "checkpoints.jsonl", "checkpoint_key_file": "audit.key", "keep_days": 30}
    settings = from_dict({"server": {"name": "t"}, "audit": audit, **table}, base_dir=tmp_path)
    recorder = build_recorder(settings, _catalog())
    assert recorder is not None
    try:
        assert recorder.engine.url.database == make_url(settings.store_url).database
        assert not is_memory(recorder.engine.url) and recorder.checkpointer is not None
        pruner = recorder.pruner
        assert pruner.engine is recorder.engine and pruner.keep_days == 30
        assert pruner.interval == settings.audit.prune_interval_seconds
        assert pruner.checkpoints == tmp_path / "checkpoints.jsonl" and pruner.key == b"k" * 32
        assert recorder.schemas("crm_search") is SCHEMA
    finally:
        recorder.engine.dispose()


def test_no_recorder_is_built_when_the_trail_is_off(tmp_path: Path) -> None:
    settings = from_dict({"server": {"name": "t"}, "audit": {"enabled": False}}, base_dir=tmp_path)
    assert build_recorder(settings, _catalog()) is None


async def test_a_programmatic_call_gets_one_request_ref_of_12_hex_digits_for_its_records(
    recorder: AuditRecorder, store: Engine
) -> None:
    call = _call(write=True)
    assert call.scope.request_ref is None  # no HTTP request id (stdio, tests)
    assert await recorder.intent(call) is None
    await recorder.finish(call)
    refs = {orjson.loads(row.body)["request_ref"] for row in _rows(store)}
    assert len(refs) == 1 and re.fullmatch(r"[0-9a-f]{12}", refs.pop())


async def test_reads_answered_inside_the_window_share_one_commit_with_their_secrets_redacted(store: Engine) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    recorder.schemas = lambda name: SCHEMA
    commits: list[int] = []
    event.listen(write_path(store).engine, "commit", lambda connection: commits.append(1))
    # Back to back, with no await between: the second finds the first still queued, and neither waits.
    await recorder.finish(_call(request_id="a", pin="1234"))
    await recorder.finish(_call(request_id="b", pin="5678"))
    assert recorder.health()["written"] == 0 and recorder.health()["queued"] == 2
    await _until(lambda: recorder.health()["written"] == 2)
    assert len(commits) == 1
    assert [orjson.loads(row.body)["arguments"]["pin"] for row in _rows(store)] == [REDACTED, REDACTED]


async def test_records_nobody_waits_for_are_written_after_their_linger_every_time(store: Engine) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    for n in range(1, 4):
        await recorder.finish(_call(request_id=n))  # answered at once; the record lingers, then goes alone
        await _until(lambda n=n: recorder.health()["written"] == n)


async def test_a_read_waits_for_its_commit_once_a_lingering_record_is_older_than_the_window(store: Engine) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    await recorder.finish(_call(request_id="first"))  # queued, to linger 10 ms
    queued_by = time.monotonic()
    while time.monotonic() - queued_by < 0.05:  # the event loop stays busy: the linger's timer cannot fire
        pass
    assert recorder.health()["written"] == 0
    await recorder.finish(_call(request_id="second"))
    health = recorder.health()
    assert health["written"] == 2 or health["late"] == 1  # it waited for the commit (or its window ran out)


async def test_a_failing_checkpoint_is_logged_and_recording_goes_on(
    recorder: AuditRecorder, store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    class Failing:
        def maybe(self, seq: int, digest: str) -> None:
            raise OSError("disk full")

    recorder.checkpointer = Failing()
    with caplog.at_level(logging.ERROR, logger="patchbay.audit"):
        assert await recorder.intent(_call(write=True)) is None
    failed = [r for r in caplog.records if r.getMessage() == "audit: checkpoint at seq 1 failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    assert recorder.health()["ok"] is True and len(_rows(store)) == 1


async def test_a_read_inside_the_window_is_answered_at_once_while_a_commit_is_under_way(
    store: Engine, blocked: threading.Event
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=1000, timeout_ms=5000))
    await recorder.finish(_call(request_id="a"))
    await _until(lambda: recorder.health()["queued"] == 0)  # its commit is under way (the writer is held)
    for request_id in ("b", "c"):  # "c" finds one record queued behind the commit
        assert await recorder.finish(_call(request_id=request_id)) is None
    assert recorder.health()["queued"] == 2 and recorder.health()["late"] == 0
    blocked.set()
    await _until(lambda: recorder.health()["written"] == 3)


async def test_a_write_refused_for_its_intent_records_its_completion_without_waiting(
    tmp_path: Path, store: Engine
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=1000))
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        call = _call(write=True)
        assert await recorder.intent(call) is not None
        assert (call.outcome, call.detail) == ("unrecorded", "the audit store did not answer within 1000 ms")
        assert await recorder.finish(call) is None
        assert recorder.health()["late"] == 0  # nothing waited for the completion record
    finally:
        other.execute("ROLLBACK")
        other.close()
    await _until(lambda: [row.outcome for row in _rows(store)] == ["intent", "unrecorded"])


async def test_with_refuse_all_a_read_is_refused_naming_why_its_record_failed(tmp_path: Path, store: Engine) -> None:
    read_only = create_engine(f"sqlite:///file:{tmp_path / 'audit.db'}?mode=ro&uri=true")
    recorder = AuditRecorder(read_only, AuditSettings(on_failure="refuse_all", read_window_ms=0))
    try:
        for hook in (recorder.finish, recorder.intent):  # the record failed; then refused before it runs
            call = _call()
            refusal = await hook(call)
            reason = recorder.health()["detail"]
            assert reason.startswith("the audit store cannot be written (") and (call.outcome, call.detail) == (
                "unrecorded",
                reason,
            )
            assert refusal is not None and refusal["content"][0]["text"] == (
                f"Cannot record this call: {reason}; nothing was run."
            )
    finally:
        read_only.dispose()


async def test_a_late_read_waits_only_its_window_and_a_write_waits_for_its_commit(
    store: Engine, blocked: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    await recorder.finish(_call(request_id="first"))  # answered at once; its commit waits for the held writer
    queued_at = time.monotonic()  # after the record was queued: it is at least this old
    await _until(lambda: time.monotonic() - queued_at > 0.05)  # that record is now older than the window
    with caplog.at_level(logging.DEBUG, logger="patchbay.audit"):
        for _ in range(2):
            assert await recorder.finish(_call(request_id="late")) is None
    assert recorder.health()["ok"] is True  # a read's window passing is no failure of the store
    write = asyncio.create_task(recorder.finish(_call(write=True)))
    started = time.monotonic()
    await _until(lambda: time.monotonic() - started > 0.2)  # four read windows
    assert not write.done()
    blocked.set()
    assert await write is None
    health = recorder.health()
    assert health["late"] == 2 and health["ok"] is True
    assert (
        caplog.messages.count(
            "audit: tools/call crm_search answered before its record was stored: "
            "the audit store did not answer within 50 ms"
        )
        == 2
    )


async def test_a_closing_checkpoint_that_fails_is_logged(store: Engine, caplog: pytest.LogCaptureFixture) -> None:
    class Failing:
        def flush(self) -> None:
            raise OSError("disk full")

    recorder = AuditRecorder(store, AuditSettings(), checkpointer=Failing())
    with caplog.at_level(logging.ERROR, logger="patchbay.audit"):
        await recorder.aclose()
    assert caplog.messages == ["audit: could not write the closing checkpoint: disk full"]


async def test_a_calls_records_hold_its_request_and_timing(recorder: AuditRecorder, store: Engine) -> None:
    scope = CallScope("modern", "2026-07-28", 9, "tools/call", {}, client_info={"name": "cli", "version": "1"})
    scope.request_ref, scope.transport = "req-7", "streamable_http"
    started = time.perf_counter() - 1000  # the call ran for 1000 s: a latency 0.1% off would be 1 s off
    write = Call("tools/call", "crm_update", scope, {"pin": "1"}, started, time.time() - 100, write=True)
    write.decision = SimpleNamespace(effect="allow", rule="staff-writes")
    read = Call("tools/call", "crm_search", scope, {"pin": "2"}, started, time.time())
    read.outcome, read.detail = "tool_error", "no such customer"
    assert await recorder.intent(write) is None
    before, clock = time.time(), time.perf_counter()
    await recorder.finish(read)
    after, elapsed = time.time(), time.perf_counter() - started
    intent, done = (orjson.loads(row.body) for row in _rows(store))
    assert intent["ts"] == write.at and before <= done["ts"] <= after
    for record in (intent, done):
        assert record["request_ref"] == "req-7" and record["method"] == "tools/call"
        assert record["transport"] == "streamable_http" and record["protocol_version"] == "2026-07-28"
        assert record["client_info"] == {"name": "cli", "version": "1"}
    assert intent["write"] is True and done["write"] is False
    assert intent["decision"] == {"effect": "allow", "rule": "staff-writes"}
    assert done["arguments"] == {"pin": REDACTED}  # a read has no intent record: its arguments are here
    assert done["outcome"] == "tool_error" and done["detail"] == "no such customer"
    latency = done["latency_ms"]
    assert isinstance(latency, float) and round(latency, 3) == latency
    assert (clock - started) * 1000 <= latency <= elapsed * 1000


def test_who_called_is_recorded_from_a_principal_or_any_other_caller() -> None:
    assert principal_fields(None) == {"subject": None}
    ada = Principal("user:ada", "user", roles=frozenset({"sales", "admin"}), username="ada", client_name="CLI")
    assert principal_fields(ada) == {
        "subject": "user:ada",
        "principal_kind": "user",
        "username": "ada",
        "client_id": None,
        "client_name": "CLI",
        "roles": ["admin", "sales"],
    }
    # A caller that is no Principal (a plain name from a custom transport) is recorded by its text.
    assert principal_fields("svc-batch") == {
        "subject": "svc-batch",
        "principal_kind": None,
        "username": None,
        "client_id": None,
        "client_name": None,
        "roles": [],
    }


@pytest.mark.parametrize(("url", "kept"), [("file", 11_000), ("sqlite://", 10_000)], ids=["file", "memory"])
async def test_only_an_in_memory_trail_keeps_just_its_newest_10000_records(tmp_path: Path, url: str, kept: int) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'trail.db'}" if url == "file" else url)
    recorder = AuditRecorder(engine, AuditSettings(queue_size=20_000))
    await recorder.open()
    try:
        for n in range(11_000):
            recorder.event("test.event", n=n)
        await _until(lambda: recorder.health()["written"] == 11_000, seconds=60)

        def count() -> tuple[int, int]:
            with engine.connect() as connection:
                return tuple(connection.execute(text("SELECT count(*), min(seq) FROM audit_records")).one())

        assert await asyncio.to_thread(count) == (kept, 11_001 - kept)
    finally:
        await recorder.aclose()


async def test_a_recorder_closed_while_its_store_is_stuck_counts_what_is_left_and_keeps_no_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A pool of real connections, as PostgreSQL has, on one shared in-memory database (the recorder's own thread).
    engine = create_engine(
        "sqlite:///file:audit-close?mode=memory&cache=shared&uri=true",
        poolclass=QueuePool,
        connect_args={"check_same_thread": False, "uri": True},
    )
    keep = engine.raw_connection()  # the shared database lives while a connection is open
    upgrade(engine, "audit@head")
    recorder = AuditRecorder(engine, AuditSettings(timeout_ms=100, read_window_ms=0))
    stuck = threading.Event()
    writers: list[Any] = []

    def answer_once_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # The writer's first checkout hangs until aclose gave up waiting and queued its next job behind this batch.
        if threading.current_thread().name.startswith("patchbay-audit") and not writers:
            writers.append(dbapi_connection)
            stuck.set()
            deadline = time.monotonic() + 10
            while recorder._thread._work_queue.qsize() < 1:  # type: ignore[union-attr]
                assert time.monotonic() < deadline
                time.sleep(0.001)

    event.listen(engine.pool, "checkout", answer_once_closed)
    try:
        recorder.event("test.first")
        assert await asyncio.to_thread(stuck.wait, 10)
        recorder.event("test.second")  # queued behind the stuck batch, whose connection would be kept for it
        with caplog.at_level(logging.ERROR, logger="patchbay.audit"):
            await recorder.aclose()
        await asyncio.to_thread(recorder._thread.shutdown, True)  # type: ignore[union-attr]
        recorder.event("test.third")  # after close: counted, never written
        with pytest.raises(sqlite3.ProgrammingError, match="closed"):
            writers[0].execute("SELECT 1")  # back in the pool before it was disposed
        assert [orjson.loads(row.body)["method"] for row in _rows(engine)] == ["test.first"]
        assert recorder.health()["lost"] == 2
        assert caplog.messages == [
            "audit: 1 records not stored: the audit store did not answer within 100 ms of the server stopping"
        ]
    finally:
        keep.close()
        engine.dispose()


async def test_a_read_still_waiting_when_the_recorder_closes_is_told_why_and_counted_with_the_lost(
    store: Engine, blocked: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=1000, timeout_ms=100, queue_size=10))
    await recorder.finish(_call(request_id="first"))  # answered at once; its commit waits for the held writer
    queued_at = time.monotonic()
    await _until(lambda: recorder.health()["queued"] == 0)  # that commit is under way
    await _until(lambda: time.monotonic() - queued_at > 1)  # and now older than the read window
    late = asyncio.create_task(recorder.finish(_call(request_id="late")))  # waits up to the window, 1 s
    await _until(lambda: recorder.health()["queued"] == 1)
    for n in range(10):  # nine fill the queue, the tenth is lost
        recorder.event("test.event", n=n)
    assert recorder.health()["lost"] == 1
    with caplog.at_level(logging.DEBUG, logger="patchbay.audit"):
        close = asyncio.create_task(recorder.aclose())  # gives the held writer 100 ms
        assert await late is None  # a read keeps its answer (serve_reads) ...
        blocked.set()  # the commit under way ends, so the store can be disposed
        await close
    reason = "the audit store did not answer within 100 ms of the server stopping"
    assert caplog.messages == [
        f"audit: 10 records not stored: {reason}",
        f"audit: tools/call crm_search answered before its record was stored: {reason}",  # ... told why
    ]
    health = recorder.health()
    assert (health["lost"], health["late"], health["queued"]) == (11, 1, 0)


async def test_a_call_after_the_recorder_closed_is_refused_and_counted(store: Engine) -> None:
    recorder = AuditRecorder(store, AuditSettings())
    await recorder.aclose()
    write = _call(write=True)
    refusal = await recorder.intent(write)
    assert refusal is not None and refusal["content"][0]["text"] == (
        "Cannot record this call: the audit trail is closed; nothing was run."
    )
    assert (write.outcome, write.detail) == ("unrecorded", "the audit trail is closed")
    assert recorder.health()["lost"] == 1 and not _rows(store)


async def test_a_failing_store_is_logged_once_until_it_records_again(
    tmp_path: Path, store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=5000))
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute(
        "CREATE TRIGGER refuse BEFORE INSERT ON audit_records "
        "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
    )
    reason = "the audit store cannot be written (database or disk is full)"
    try:
        with caplog.at_level(logging.WARNING, logger="patchbay.audit"):
            for _ in range(3):
                refusal = await recorder.intent(_call(write=True))
                assert refusal is not None and refusal["content"][0]["text"] == (
                    f"Cannot record this call: {reason}; nothing was run."
                )
            assert recorder.health()["detail"] == reason
            other.execute("DROP TRIGGER refuse")
            assert await recorder.intent(_call(write=True)) is None
    finally:
        other.close()
    assert caplog.messages == [f"audit: 1 records not stored: {reason}", "audit: recording again"]
    health = recorder.health()
    assert (health["ok"], health["lost"], health["written"]) == (True, 3, 1)


async def test_a_stuck_store_is_logged_once_when_a_write_gives_up_on_it(
    tmp_path: Path, store: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=200))
    other = sqlite3.connect(tmp_path / "audit.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holding the write lock
    try:
        with caplog.at_level(logging.WARNING, logger="patchbay.audit"):
            for _ in range(2):
                assert await recorder.intent(_call(write=True)) is not None
            other.execute("ROLLBACK")
            assert await recorder.intent(_call(write=True)) is None  # committed after the two late intents
    finally:
        other.close()
    assert caplog.messages == ["audit: the audit store did not answer within 200 ms", "audit: recording again"]
    assert recorder.health()["written"] == 3


async def test_a_read_waits_for_its_commit_behind_a_write_committing_for_longer_than_the_window(
    store: Engine, blocked: threading.Event
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=50, timeout_ms=5000))
    write = asyncio.create_task(recorder.finish(_call(write=True)))
    await asyncio.sleep(0)  # the write's record is queued and its commit started (the writer is held)
    started = time.monotonic()
    await _until(lambda: time.monotonic() - started > 0.05)  # that commit is older than the window
    assert await recorder.finish(_call(request_id="read")) is None
    assert recorder.health()["late"] == 1  # the read waited its window for its commit, then was answered
    assert not write.done()
    blocked.set()
    assert await write is None
    await _until(lambda: recorder.health()["written"] == 2)


async def test_a_recorder_closed_on_a_stuck_store_logs_how_long_it_waited(
    store: Engine, blocked: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=600))
    recorder.event("test.first")
    await _until(lambda: recorder.health()["queued"] == 0)  # its commit waits for the held writer
    recorder.event("test.second")
    with caplog.at_level(logging.ERROR, logger="patchbay.audit"):
        close = asyncio.create_task(recorder.aclose())
        await _until(lambda: recorder.health()["lost"] == 1)  # aclose gave up on the queued record
        blocked.set()
        await close
    assert caplog.messages == [
        "audit: 1 records not stored: the audit store did not answer within 600 ms of the server stopping"
    ]


async def test_a_write_that_gave_up_on_its_record_leaves_no_unread_error_behind(
    store: Engine, blocked: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    # The write stops waiting after timeout_ms; its record, still queued at close, is lost. Nobody reads that error
    # any more, so asyncio must not log it as "Future exception was never retrieved" once the future is collected.
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=100))
    recorder.event("test.first")
    await _until(lambda: recorder.health()["queued"] == 0)  # its commit waits for the held writer
    assert await recorder.intent(_call(write=True)) is not None  # gave up after 100 ms; its record stays queued
    with caplog.at_level(logging.ERROR):
        close = asyncio.create_task(recorder.aclose())
        await _until(lambda: recorder.health()["lost"] == 1)  # the write's future is given the error
        blocked.set()
        await close
        gc.collect()
    assert "Future exception was never retrieved" not in caplog.text


async def test_the_closing_checkpoint_covers_every_record_queued_before_the_close(
    tmp_path: Path, store: Engine, blocked: threading.Event
) -> None:
    file = tmp_path / "checkpoints.jsonl"
    checkpointer = audit_chain.Checkpointer(key=b"k" * 32, file=file, log=False, every=1_000_000, seconds=3600)
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=10_000), checkpointer=checkpointer)
    for n in range(1025):  # one record's commit waits for the held writer; two full batches queue behind it
        recorder.event("test.event", n=n)
    blocked.set()
    await recorder.aclose()  # waits for the last batch's commit, then checkpoints the head
    assert (recorder.health()["written"], recorder.health()["lost"]) == (1025, 0)
    found = [c for _, c in audit_chain.read_checkpoints(file.read_text().splitlines())]
    assert [c["seq"] for c in found if isinstance(c, dict)] == [1025]


async def test_a_waiter_whose_event_loop_has_closed_does_not_stop_the_writer(
    store: Engine, blocked: threading.Event
) -> None:
    # A call made on another event loop (a thread's asyncio.run) gives up on its commit, and that loop closes before
    # the commit ends: nobody is left to tell, and the records after it are still written.
    recorder = AuditRecorder(store, AuditSettings(timeout_ms=1000))
    refusal = await asyncio.to_thread(asyncio.run, recorder.intent(_call(write=True)))
    assert refusal is not None  # its commit still waits for the held writer
    blocked.set()
    assert await recorder.intent(_call(write=True)) is None


async def test_a_recorder_built_in_code_names_no_config_file_when_its_store_cannot_be_opened(tmp_path: Path) -> None:
    # build_recorder names the config file; a recorder built in code (tests, an embedding program) has none.
    engine = create_engine(f"sqlite:///{tmp_path / 'missing' / 'audit.db'}")
    recorder = AuditRecorder(engine, AuditSettings())
    try:
        with pytest.raises(ConfigError) as refused:
            await recorder.open()
    finally:
        engine.dispose()
    assert (refused.value.file, refused.value.key) == ("<config>", "store.url")


async def test_an_in_memory_batch_that_fails_part_way_leaves_none_of_its_rows() -> None:
    # An in-memory store's batches run on the recorder's own thread, which begins and commits each one itself: a
    # batch whose chain head cannot be moved after its rows went in takes those rows back with it.
    engine = create_engine(
        "sqlite:///file:audit-whole?mode=memory&cache=shared&uri=true",
        poolclass=QueuePool,
        connect_args={"check_same_thread": False, "uri": True},
    )
    keep = engine.raw_connection()  # the shared database lives while a connection is open
    other: Any = keep.driver_connection
    upgrade(engine, "audit@head")
    recorder = AuditRecorder(engine, AuditSettings(timeout_ms=5000, read_window_ms=0))
    try:
        other.execute(
            "CREATE TRIGGER stuck BEFORE UPDATE ON audit_chain_head BEGIN SELECT RAISE(ABORT, 'head is stuck'); END"
        )
        refusal = await recorder.intent(_call(write=True))
        assert refusal is not None and refusal["content"][0]["text"] == (
            "Cannot record this call: the audit store cannot be written (head is stuck); nothing was run."
        )
        assert _rows(engine) == []  # no row of the failed batch, though its INSERT had run
        other.execute("DROP TRIGGER stuck")
        assert await recorder.intent(_call(write=True)) is None
        assert [row.seq for row in _rows(engine)] == [1]
    finally:
        await recorder.aclose()
        keep.close()
        engine.dispose()


@pytest.mark.parametrize(("window_ms", "linger"), [(20, 0.005), (1000, 0.01)], ids=["quarter", "at-most-10-ms"])
async def test_a_record_nobody_waits_for_lingers_a_quarter_of_the_read_window_and_at_most_10_ms(
    store: Engine, monkeypatch: pytest.MonkeyPatch, window_ms: int, linger: float
) -> None:
    # A read answered at once leaves its record queued for the linger: well inside the window the record may trail
    # the response by, and short enough that a record still goes within 10 ms with a long window.
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=window_ms, timeout_ms=5000))
    loop = asyncio.get_running_loop()
    delays: list[float] = []
    call_later = loop.call_later

    def spy(delay: float, callback: Any, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        if callback == recorder._flush:
            delays.append(delay)
        return call_later(delay, callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_later", spy)
    assert await recorder.finish(_call()) is None
    assert delays == [pytest.approx(linger)]
    await _until(lambda: recorder.health()["written"] == 1)


async def test_a_late_read_is_told_the_window_it_waited_to_the_millisecond(
    store: Engine, blocked: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = AuditRecorder(store, AuditSettings(read_window_ms=600, timeout_ms=5000))
    await recorder.finish(_call(request_id="first"))  # answered at once; its commit waits for the held writer
    queued_at = time.monotonic()  # after the record was queued: it is at least this old
    await _until(lambda: time.monotonic() - queued_at > 0.6)  # that record is now older than the window
    with caplog.at_level(logging.DEBUG, logger="patchbay.audit"):
        assert await recorder.finish(_call(request_id="late")) is None
    assert caplog.messages == [
        "audit: tools/call crm_search answered before its record was stored: "
        "the audit store did not answer within 600 ms"
    ]
    blocked.set()
    await _until(lambda: recorder.health()["written"] == 2)


async def test_an_in_memory_trail_is_written_by_one_thread_of_its_own_batch_after_batch() -> None:
    # docs/performance.md: the records are written on the one writer thread. An in-memory store's batches run on
    # the recorder's own thread; the batch started as the last one ends (records queued during its commit) too.
    engine = create_engine(
        "sqlite:///file:audit-one-thread?mode=memory&cache=shared&uri=true",
        poolclass=QueuePool,
        connect_args={"check_same_thread": False, "uri": True},
    )
    keep = engine.raw_connection()  # the shared database lives while a connection is open
    upgrade(engine, "audit@head")
    writers: set[str] = set()
    held, release = threading.Event(), threading.Event()

    def seen(sql: str) -> None:
        if sql.startswith("INSERT INTO audit_records"):
            writers.add(threading.current_thread().name)

    def trace_and_hold_first(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        dbapi_connection.set_trace_callback(seen)
        if threading.current_thread() is not threading.main_thread() and not held.is_set():
            held.set()
            assert release.wait(10)

    event.listen(engine.pool, "checkout", trace_and_hold_first)
    recorder = AuditRecorder(engine, AuditSettings(timeout_ms=5000, read_window_ms=0))
    try:
        recorder.event("test.first")
        assert await asyncio.to_thread(held.wait, 10)  # the first batch waits for its connection
        for n in range(3):
            recorder.event("test.next", n=n)  # queued during that commit: the next batch, started as it ends
        release.set()
        await _until(lambda: recorder.health()["written"] == 4)
        assert writers == {"patchbay-audit_0"}
    finally:
        release.set()
        await recorder.aclose()
        keep.close()
        engine.dispose()
