"""The sql connector against a real SQLite file, driven through the real dispatcher the way a client calls it.

Every refused statement is followed by a check that the database is byte-for-byte the same (its full dump).
"""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jsonschema
import pytest
from sqlalchemy import event as sa_event

from patchbay.app import Runtime
from patchbay.connectors.sql import SqlConnector, results, service
from patchbay.connectors.sql.demo_crm import ensure_crm
from patchbay.errors import ConfigError, ConnectorError, ToolError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict

pytestmark = pytest.mark.anyio

ACTIONS: list[dict[str, Any]] = [
    {
        "name": "close_ticket",
        "description": "Close a ticket.",
        "sql": "UPDATE tickets SET status = 'closed', resolution = :resolution WHERE id = :id",
        "params": {"id": "integer", "resolution": {"type": "string", "max_length": 200}},
        "idempotent": True,
    },
    {
        "name": "delete_ticket",
        "description": "Delete a ticket.",
        "sql": "DELETE FROM tickets WHERE id = :id",
        "params": {"id": "integer"},
    },
    {
        "name": "add_note",
        "description": "Add a note.",
        "sql": "INSERT INTO notes (body, kind, due, urgent, score) VALUES (:body, :kind, :due, :urgent, :score)",
        "params": {
            "body": "string",
            "kind": {"type": "string", "enum": ["call", "mail"]},
            "due": {"type": "date", "required": False},
            "urgent": "boolean",
            "score": {"type": "number", "minimum": 0, "maximum": 10},
        },
    },
]
LONG = "x" * 5000
UNICODE = "Zoë — 東京 😀 'quoted' \"double\" | pipe\nnewline"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_db(path: Path) -> Path:
    ensure_crm(path)
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT, kind TEXT, due DATE, urgent BOOLEAN, score REAL)"
        )
        conn.execute("INSERT INTO notes (body, kind) VALUES (?, NULL)", (UNICODE,))
        conn.execute("INSERT INTO notes (body, kind) VALUES (?, 'long')", (LONG,))
        conn.execute("INSERT INTO notes (body, kind) VALUES (NULL, NULL)")
        conn.execute("CREATE TABLE secrets (id INTEGER PRIMARY KEY, token TEXT)")
        conn.execute("INSERT INTO secrets (token) VALUES ('hunter2')")
        conn.execute("CREATE TABLE pairs (a INTEGER, b TEXT, note TEXT, PRIMARY KEY (a, b))")
        conn.execute("INSERT INTO pairs VALUES (1, 'x', 'one-x')")
        conn.execute("CREATE TABLE big (n INTEGER PRIMARY KEY, label TEXT)")
        conn.execute(
            "INSERT INTO big WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 20000) "
            "SELECT n, 'row ' || n FROM s"
        )
    conn.close()
    return path


def dump(path: Path) -> str:
    """Schema and every row: equal dumps mean nothing changed."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return "\n".join(conn.iterdump())


def runtime_for(tmp_path: Path, db: Path, **options: Any) -> Runtime:
    connector = {"name": "crm", "type": "sql", "prefix": "", "url": f"sqlite:///{db}", "actions": ACTIONS}
    connector.update({"exclude_tables": ["secrets"], "statement_timeout_ms": 2000, **options})
    connector = {k: v for k, v in connector.items() if v is not None}  # None: leave the key out
    data = {"store": {"url": f"sqlite:///{tmp_path / 'patchbay.db'}"}, "connectors": [connector]}
    return Runtime(from_dict(data, source="<test>", base_dir=tmp_path))


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return make_db(tmp_path / "crm.db")


@pytest.fixture
async def rt(tmp_path: Path, db: Path) -> AsyncIterator[Runtime]:
    runtime = runtime_for(tmp_path, db, max_value_chars=100)
    await runtime.start()
    yield runtime
    await runtime.stop()


def _scope() -> CallScope:
    return CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})


@functools.cache
def _validator(schema: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema))


async def call(rt: Runtime, name: str, **arguments: Any) -> dict[str, Any]:
    result: dict[str, Any] = await rt.dispatcher.dispatch(
        "tools/call", {"name": name, "arguments": arguments}, _scope()
    )
    if not result["isError"]:
        schema = next(t for t in rt.catalog.tools_wire if t["name"] == name)["outputSchema"]
        _validator(json.dumps(schema)).validate(result["structuredContent"])
    return result


async def ok(rt: Runtime, name: str, **arguments: Any) -> Any:
    result = await call(rt, name, **arguments)
    assert result["isError"] is False, result["content"]
    return result["structuredContent"]


async def fails(rt: Runtime, name: str, **arguments: Any) -> str:
    result = await call(rt, name, **arguments)
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    assert "Traceback" not in text and "reference" not in text, text  # a precise error, not a crash
    return text


# -- tool list ----------------------------------------------------------------------------------------------


async def test_tools_carry_explicit_annotations_from_their_declaration(rt: Runtime) -> None:
    tools = {t["name"]: t for t in rt.catalog.tools_wire}
    assert set(tools) == {"list_tables", "describe_table", "query", "fetch_record", *(a["name"] for a in ACTIONS)}
    for name in ("list_tables", "describe_table", "query", "fetch_record"):
        assert tools[name]["annotations"]["readOnlyHint"] is True
        assert tools[name]["annotations"]["openWorldHint"] is False
    close, delete, add = tools["close_ticket"], tools["delete_ticket"], tools["add_note"]
    assert close["annotations"] | {"title": None} == {
        "readOnlyHint": False,
        "destructiveHint": False,
        "idempotentHint": True,
        "openWorldHint": False,
        "title": None,
    }
    assert delete["annotations"]["destructiveHint"] is True and delete["annotations"]["readOnlyHint"] is False
    assert add["inputSchema"]["properties"]["kind"]["enum"] == ["call", "mail"]
    assert add["inputSchema"]["properties"]["due"]["type"] == ["string", "null"]
    assert set(add["inputSchema"]["required"]) == {"body", "kind", "urgent", "score"}
    assert all(t.get("outputSchema") for t in tools.values())


# -- reads --------------------------------------------------------------------------------------------------


async def test_list_and_describe_show_only_visible_tables(rt: Runtime) -> None:
    listed = await ok(rt, "list_tables")
    names = [t["name"] for t in listed["tables"]]
    assert names == ["big", "customers", "notes", "orders", "pairs", "tickets"]
    described = await ok(rt, "describe_table", table="tickets")
    columns = {c["name"]: c for c in described["columns"]}
    assert columns["id"]["primary_key"] is True and columns["closed_on"]["nullable"] is True
    assert described["foreign_keys"] == [
        {"columns": ["customer_id"], "references": "main.customers", "referenced_columns": ["id"]}
    ]
    assert described["row_estimate"] == 6
    assert "secrets" in await fails(rt, "describe_table", table="secrets")


async def test_query_returns_columns_rows_and_a_text_table(rt: Runtime) -> None:
    result = await call(rt, "query", sql="SELECT id, status FROM tickets WHERE priority = 'high' ORDER BY id")
    assert result["structuredContent"]["columns"] == ["id", "status"]
    assert result["structuredContent"]["rows"] == [[1, "open"], [5, "open"]]
    assert result["structuredContent"]["truncated"] is False
    text = result["content"][0]["text"]
    assert "| id | status |" in text and "| 5 | open |" in text


async def test_pages_cover_the_result_exactly_once(rt: Runtime) -> None:
    seen: list[int] = []
    offset: int | None = 0
    while offset is not None:
        page = await ok(rt, "query", sql="SELECT n FROM big WHERE n <= 25 ORDER BY n", limit=10, offset=offset)
        seen += [row[0] for row in page["rows"]]
        offset = page["next_offset"]
    assert seen == list(range(1, 26))


async def test_a_limit_in_the_statement_is_kept_not_replaced_by_the_page_cap(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT n FROM big ORDER BY n LIMIT 5", limit=100)
    assert page["rows"] == [[1], [2], [3], [4], [5]] and page["truncated"] is False
    union = await ok(rt, "query", sql="SELECT n FROM big WHERE n < 3 UNION ALL SELECT n FROM big WHERE n < 3 LIMIT 3")
    assert union["rows"] == [[1], [2], [1]]


async def test_the_statement_is_read_in_sqlites_dialect(rt: Runtime) -> None:
    # docs/sql.md: parsed (and run) in the database's dialect. Generic SQL refuses SQLite's backtick quoting and
    # reads "/" as true division (CAST(7 AS REAL) / 2, 3.5), and renders SQLite's two-argument max() and strftime()
    # as GREATEST() and TIME_TO_STR(), which SQLite does not have.
    sql = "SELECT `n`, 7 / 2 AS half, max(`n`, 2) AS at_least_2, strftime('%Y', '2020-06-01') AS year FROM big"
    page = await ok(rt, "query", sql=f"{sql} ORDER BY `n` LIMIT 1")
    assert page["rows"] == [[1, 3, 2, "2020"]]
    text = await fails(rt, "query", sql="SELECT n FROM big WHERE")
    assert text.startswith("Refused: the statement does not parse as sqlite SQL:"), text


async def test_reading_the_result_stops_once_the_fetch_runs_past_the_statement_timeout(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fake monotonic clock: the query starts at 100.0 s, and its fetch reads the clock at the statement timeout
    # (2000 ms, runtime_for's) and then one millisecond past it. No real time is measured.
    monkeypatch.setattr(service, "time", SimpleNamespace(monotonic=lambda: 100.0))
    fetch_at = SimpleNamespace(monotonic=lambda: 102.0)
    monkeypatch.setattr(results, "time", fetch_at)
    assert (await ok(rt, "query", sql="SELECT n FROM big WHERE n <= 3 ORDER BY n"))["rows"] == [[1], [2], [3]]
    fetch_at.monotonic = lambda: 102.001
    text = await fails(rt, "query", sql="SELECT n FROM big WHERE n <= 3 ORDER BY n")
    assert text == "reading the result took longer than the time limit; ask for fewer rows or a smaller offset"


async def test_huge_results_stop_at_the_page_and_the_row_cap(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT * FROM big")
    assert page["row_count"] == 100 and page["truncated"] is True and page["next_offset"] == 100
    assert "limit" in await fails(rt, "query", sql="SELECT * FROM big", limit=501)
    biggest = await ok(rt, "query", sql="SELECT * FROM big a CROSS JOIN big b", limit=500)
    assert biggest["row_count"] == 500 and biggest["truncated"] is True


async def test_long_values_are_cut_with_a_note(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT body FROM notes WHERE kind = 'long'")
    value = page["rows"][0][0]
    assert value == "x" * 100 + "…"
    assert "5,000 characters" in page["notes"][0]


async def test_unicode_and_nulls_round_trip(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT body, kind, due FROM notes WHERE id IN (1, 3) ORDER BY id")
    assert page["rows"] == [[UNICODE, None, None], [None, None, None]]
    record = await ok(rt, "fetch_record", table="notes", key=1)
    assert record["record"]["body"] == UNICODE and record["record"]["kind"] is None
    text = (await call(rt, "query", sql="SELECT body, kind FROM notes WHERE id = 1"))["content"][0]["text"]
    assert "東京 😀" in text and "| NULL |" in text and "\\| pipe\\nnewline" in text
    unicode_sql = await ok(rt, "query", sql="SELECT 'é' || '東' AS \"naïve\"")
    assert unicode_sql == {**unicode_sql, "columns": ["naïve"], "rows": [["é東"]]}


async def test_fetch_record_by_simple_and_composite_keys(rt: Runtime) -> None:
    found = await ok(rt, "fetch_record", table="customers", key="2")
    assert found["found"] is True and found["record"]["name"] == "Björn Lindqvist"
    missing = await ok(rt, "fetch_record", table="customers", key=999)
    assert missing["found"] is False and missing["record"] is None
    pair = await ok(rt, "fetch_record", table="pairs", key={"a": 1, "b": "x"})
    assert pair["record"]["note"] == "one-x"
    assert "composite" in await fails(rt, "fetch_record", table="pairs", key=1)
    assert "['a', 'b']" in await fails(rt, "fetch_record", table="pairs", key={"a": 1})


async def test_fetch_record_answers_in_text_with_its_key_and_cut_values(rt: Runtime) -> None:
    long = await call(rt, "fetch_record", table="notes", key="2")
    assert long["structuredContent"]["key"] == {"id": 2}
    cut = "1 value(s) longer than 100 characters were cut (ending in …): row 0 body (5,000 characters)."
    assert long["structuredContent"]["notes"] == [f"{cut} Select a substring of the column to read the rest."]
    lines = long["content"][0]["text"].splitlines()
    assert lines[:3] == ["main.notes {'id': 2}", "| column | value |", "|---|---|"]
    assert f"| body | {'x' * 100}… |" in lines and lines[-1].startswith(cut)
    missing = await call(rt, "fetch_record", table="customers", key=999)
    assert missing["structuredContent"]["key"] == {"id": 999}
    assert missing["content"][0]["text"] == "No row in main.customers with key {'id': 999}."


async def test_describe_table_names_every_column_of_a_composite_foreign_key(rt: Runtime, db: Path) -> None:
    with sqlite3.connect(db) as conn:  # created after start-up: describe_table looks again for a new table
        conn.execute(
            "CREATE TABLE pair_notes (id INTEGER PRIMARY KEY, a INTEGER, b TEXT, "
            "FOREIGN KEY (a, b) REFERENCES pairs (a, b))"
        )
    described = (await call(rt, "describe_table", table="pair_notes"))["content"][0]["text"].splitlines()
    assert described[-2:] == ["a, b → main.pairs(a, b)", "Rows: about 0 (count)."]


async def test_list_and_describe_answer_in_text_too(rt: Runtime, tmp_path: Path, db: Path) -> None:
    listed = (await call(rt, "list_tables"))["content"][0]["text"].splitlines()
    assert listed[:3] == ["| schema | name | type | comment |", "|---|---|---|---|", "| main | big | table | NULL |"]
    assert listed[-1] == "| main | tickets | table | NULL |" and len(listed) == 2 + 6
    described = (await call(rt, "describe_table", table="tickets"))["content"][0]["text"].splitlines()
    assert described[:4] == [
        "Table main.tickets",
        "| column | type | nullable | primary key | comment |",
        "|---|---|---|---|---|",
        "| id | INTEGER | yes | yes | NULL |",
    ]
    assert "| customer_id | INTEGER | no |  | NULL |" in described
    assert described[-2:] == ["customer_id → main.customers(id)", "Rows: about 6 (count)."]
    empty = runtime_for(tmp_path, db, include_tables=["nothing_here"])
    await empty.start()
    try:
        result = await call(empty, "list_tables")
        assert result["structuredContent"] == {"tables": []}
        assert result["content"][0]["text"] == "No tables are available."
    finally:
        await empty.stop()


ROW_ACTIONS: list[dict[str, Any]] = [
    {
        "name": "close_and_show",
        "description": "Close tickets up to an id and show them.",
        "sql": "UPDATE tickets SET status = 'closed' WHERE id <= :id RETURNING id, status",
        "params": {"id": "integer"},
    },
    {
        "name": "labels",
        "description": "Labels from a row on.",
        "sql": "SELECT n, label || ' and some more words' AS label FROM big WHERE n >= :n ORDER BY n",
        "params": {"n": "integer"},
    },
]


def _recorder(ran_on: list[str], name: str) -> Any:
    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "big" in statement:
            ran_on.append(name)

    return record


async def test_actions_that_return_rows_show_them_capped_at_max_rows_and_cut(tmp_path: Path, db: Path) -> None:
    runtime = runtime_for(tmp_path, db, max_value_chars=16, max_rows=3, page_size=3, actions=ROW_ACTIONS)
    await runtime.start()
    try:
        result = await call(runtime, "close_and_show", id=4)
        assert result["structuredContent"] == {
            "action": "close_and_show",
            "affected_rows": 4,
            "columns": ["id", "status"],
            "rows": [[1, "closed"], [2, "closed"], [3, "closed"]],
            "notes": [],
        }
        text = result["content"][0]["text"].splitlines()
        assert text[:3] == ["close_and_show: 4 row(s) affected.", "| id | status |", "|---|---|"]
        assert "| 1 | closed |" in text and "| 4 | closed |" not in text
        # An action takes no offset: the text says rows were left out instead of pointing at an argument.
        assert "More rows were returned; only the first 3 are shown (max_rows)." in text
        assert not any("offset" in line for line in text)
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:  # committed, all four rows
            assert conn.execute("SELECT count(*) FROM tickets WHERE id <= 4 AND status = 'closed'").fetchone() == (4,)
        conn.close()
        connector = runtime.connectors[0]
        assert isinstance(connector, SqlConnector) and connector._db is not None
        engines = {"read": connector._db._read, "write": connector._db._write}
        ran_on: list[str] = []
        listeners = {name: _recorder(ran_on, name) for name in engines}
        for name, engine in engines.items():
            sa_event.listen(engine, "before_cursor_execute", listeners[name])
        try:
            read = await call(runtime, "labels", n=1)
        finally:
            for name, engine in engines.items():
                sa_event.remove(engine, "before_cursor_execute", listeners[name])
        assert ran_on == ["read"]  # a read-only action runs behind the read-only wall (docs/sql.md)
        labels = read["structuredContent"]
        assert labels["affected_rows"] is None and [row[0] for row in labels["rows"]] == [1, 2, 3]
        assert labels["rows"][0][1] == "row 1 and some m…" and "longer than 16 characters" in labels["notes"][0]
        assert read["content"][0]["text"].splitlines()[:2] == ["| n | label |", "|---|---|"]  # nothing "affected"
    finally:
        await runtime.stop()


# -- refusals -----------------------------------------------------------------------------------------------

SMUGGLED = [
    "SELECT 1; DROP TABLE tickets",
    "SELECT * FROM tickets; DELETE FROM tickets",
    "DELETE FROM tickets",
    "UPDATE tickets SET status = 'hacked'",
    "WITH x AS (UPDATE tickets SET status = 'hacked' RETURNING *) SELECT * FROM x",
    "WITH x AS (DELETE FROM tickets RETURNING id) SELECT * FROM x",
    "SELECT * INTO stolen FROM tickets",
    "CREATE TABLE stolen AS SELECT * FROM tickets",
    "PRAGMA writable_schema = 1",
    "PRAGMA query_only = 0",
    "ATTACH DATABASE '{attach}' AS evil",
    "SELECT load_extension('/tmp/evil.so')",
    "VACUUM INTO '{attach}'",
    "DROP TABLE tickets",
    "INSERT INTO tickets (customer_id) VALUES (1)",
    "BEGIN; DELETE FROM tickets; COMMIT",
    "SELECT * FROM secrets",
    "SELECT * FROM tickets WHERE id IN (SELECT id FROM secrets)",
    "SELECT * FROM sqlite_master",
    "SELECT * FROM other.tickets",
]


@pytest.mark.parametrize("sql", SMUGGLED)
async def test_writes_smuggled_through_query_are_refused_and_change_nothing(
    rt: Runtime, db: Path, tmp_path: Path, sql: str
) -> None:
    before = dump(db)
    attach = tmp_path / "evil.db"
    text = await fails(rt, "query", sql=sql.format(attach=attach))
    assert text.startswith("Refused:")
    assert dump(db) == before
    assert not attach.exists()
    assert "hunter2" not in text


async def test_database_refuses_writes_even_when_the_parser_is_bypassed(rt: Runtime, db: Path, tmp_path: Path) -> None:
    connector = rt.connectors[0]
    assert isinstance(connector, SqlConnector) and connector._db is not None
    before = dump(db)
    attach = tmp_path / "evil.db"
    for sql in (
        "DELETE FROM tickets",
        "UPDATE tickets SET status = 'hacked'",
        "DROP TABLE tickets",
        "PRAGMA query_only = 0",
        f"ATTACH DATABASE '{attach}' AS evil",
        "CREATE TEMP TABLE t AS SELECT 1",
    ):
        with pytest.raises(ToolError) as refused:
            connector._db.read(lambda conn, sql=sql: conn.exec_driver_sql(sql))
        assert "refused" in refused.value.message
    assert dump(db) == before
    assert not attach.exists()


async def test_a_runaway_query_is_stopped_by_the_timeout(tmp_path: Path, db: Path) -> None:
    runtime = runtime_for(tmp_path, db, statement_timeout_ms=200)
    await runtime.start()
    try:
        endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r"
        text = await fails(runtime, "query", sql=endless)
        assert "time limit of 200 ms" in text
        assert (await ok(runtime, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[6]]
    finally:
        await runtime.stop()


async def test_query_runs_the_checked_statement_not_the_callers_text(rt: Runtime, db: Path) -> None:
    # SQLite folds only ASCII letters in names, so the caller's own text ("ärenden") names no table there; the
    # checked statement names the visible table Ärenden (matched case-insensitively), schema-qualified and quoted.
    with sqlite3.connect(db) as conn:
        conn.execute('CREATE TABLE "Ärenden" (id INTEGER PRIMARY KEY, rubrik TEXT)')
        conn.executemany('INSERT INTO "Ärenden" VALUES (?, ?)', [(1, "Faktura"), (2, "Inloggning")])
    conn.close()
    with sqlite3.connect(db) as raw, pytest.raises(sqlite3.OperationalError, match="no such table"):
        raw.execute("SELECT id FROM ärenden")  # the caller's text, as the database would read it
    raw.close()
    page = await ok(rt, "query", sql="SELECT id, rubrik FROM ärenden /* comment */ ORDER BY id")
    assert page["rows"] == [[1, "Faktura"], [2, "Inloggning"]]


# Writes that return rows: run past the parser on a writable connection, each would change the data and commit.
WRITES_WITH_ROWS = [
    "DELETE FROM tickets RETURNING id",
    "UPDATE tickets SET status = 'hacked' RETURNING id",
    "INSERT INTO notes (body) VALUES ('planted') RETURNING id",
    "REPLACE INTO notes (id, body) VALUES (1, 'replaced') RETURNING id",
    "INSERT INTO notes (body) SELECT subject FROM tickets RETURNING id",
]


@pytest.mark.parametrize("sql", WRITES_WITH_ROWS)
async def test_the_parser_alone_keeps_writes_out_when_the_database_would_take_them(
    rt: Runtime, db: Path, monkeypatch: pytest.MonkeyPatch, sql: str
) -> None:
    connector = rt.connectors[0]
    assert isinstance(connector, SqlConnector) and connector._db is not None
    database = connector._db
    # Take the second wall away: reads run on the writer, which commits. The first write shows it really does.
    monkeypatch.setattr(database, "read", database.write)
    planted = "UPDATE notes SET kind = 'wall down' WHERE id = 3 RETURNING id"
    database.read(lambda conn: conn.exec_driver_sql(planted).all())
    before = dump(db)
    assert "wall down" in before
    result = await call(rt, "query", sql=sql)
    assert dump(db) == before
    assert result["isError"] is True and "structuredContent" not in result
    assert result["content"][0]["text"].startswith("Refused:")  # the parser's refusal (docs/sql.md), not the database's


# -- injection through every parameter ----------------------------------------------------------------------

INJECTIONS = ["1; DROP TABLE tickets", "1 OR 1=1", "' OR '1'='1", "tickets; DROP TABLE tickets; --", "1)--", "\x00"]


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injection_through_every_read_parameter_changes_nothing(rt: Runtime, db: Path, payload: str) -> None:
    before = dump(db)
    await fails(rt, "query", sql="SELECT * FROM tickets", limit=payload)
    await fails(rt, "query", sql="SELECT * FROM tickets", offset=payload)
    await fails(rt, "describe_table", table=payload)
    await fails(rt, "fetch_record", table=payload, key=1)
    found = await call(rt, "fetch_record", table="tickets", key=payload)
    # Checked against the key column's type before any SQL is built: refused as a value, never looked up.
    assert found["isError"] is True and "structuredContent" not in found
    assert found["content"][0]["text"] == f"the key value {payload!r} does not fit column id (INTEGER)"
    await fails(rt, "fetch_record", table="pairs", key={"a": payload, "b": payload, "c": 1})
    assert dump(db) == before


@pytest.mark.parametrize("payload", INJECTIONS)
async def test_injection_through_action_parameters_is_stored_as_data(rt: Runtime, db: Path, payload: str) -> None:
    before = dump(db)
    await fails(rt, "close_ticket", id=payload, resolution="x")
    await fails(rt, "delete_ticket", id=payload)
    assert dump(db) == before
    closed = await ok(rt, "close_ticket", id=2, resolution=payload)
    assert closed["affected_rows"] == 1
    record = await ok(rt, "fetch_record", table="tickets", key=2)
    assert record["record"]["resolution"] == payload  # stored literally: a value, never SQL
    assert (await ok(rt, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[6]]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"kind": "call", "urgent": True, "score": 1}, "'body' is required"),
        ({"body": 5, "kind": "call", "urgent": True, "score": 1}, "'body' must be a string"),
        ({"body": "b", "kind": "fax", "urgent": True, "score": 1}, "one of 'call', 'mail'"),
        ({"body": "b", "kind": "call", "urgent": "yes", "score": 1}, "'urgent' must be true or false"),
        ({"body": "b", "kind": "call", "urgent": True, "score": 11}, "at most 10"),
        ({"body": "b", "kind": "call", "urgent": True, "score": True}, "'score' must be a number"),
        ({"body": "b", "kind": "call", "urgent": True, "score": 1, "due": "tomorrow"}, "YYYY-MM-DD"),
        ({"body": "b", "kind": "call", "urgent": True, "score": 1, "extra": 1}, "unknown parameter(s) extra"),
    ],
)
async def test_action_arguments_are_validated_before_anything_runs(
    rt: Runtime, db: Path, arguments: dict[str, Any], message: str
) -> None:
    before = dump(db)
    assert message in await fails(rt, "add_note", **arguments)
    assert dump(db) == before


async def test_actions_write_in_a_transaction_and_report_affected_rows(rt: Runtime, db: Path) -> None:
    added = await ok(rt, "add_note", body=UNICODE, kind="mail", due="2030-01-02", urgent=False, score=2.5)
    assert added["affected_rows"] == 1
    row = await ok(rt, "query", sql="SELECT body, due, urgent, score FROM notes WHERE kind = 'mail'")
    assert row["rows"] == [[UNICODE, "2030-01-02", 0, 2.5]]
    assert (await ok(rt, "delete_ticket", id=6))["affected_rows"] == 1
    assert (await ok(rt, "delete_ticket", id=6))["affected_rows"] == 0
    too_long = await fails(rt, "close_ticket", id=1, resolution="y" * 201)
    assert "longer than 200" in too_long


# -- configuration and start-up -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message", "key"),
    [
        ({"actions": [{**ACTIONS[0], "params": {"id": "integer"}}]}, "used but not declared: resolution", "actions"),
        (
            {"actions": [{**ACTIONS[1], "sql": "DELETE FROM tickets WHERE id = :id; DROP TABLE tickets"}]},
            "one stat",
            "actions",
        ),
        ({"url": "sqlite:///${PB_TEST_UNSET_VARIABLE}"}, "PB_TEST_UNSET_VARIABLE is not set", "url"),
        ({"url": None, "url_file": "missing-secret"}, "url_file: cannot read", "url_file"),
        ({"url": "oracle://scott:tiger@db/x"}, "use sqlite, postgresql, mysql or mariadb", "url"),
    ],
)
async def test_bad_configuration_refuses_to_start_naming_file_and_key(
    tmp_path: Path, db: Path, options: dict[str, Any], message: str, key: str
) -> None:
    runtime = runtime_for(tmp_path, db, **options)
    # A configuration error is never "down, retrying": every start mode refuses it.
    with pytest.raises(ConfigError) as failed:
        await runtime.start(on_failure="retry")
    text = str(failed.value)
    assert message in text
    assert text.startswith("<test>: connectors[crm]: ") and f": {key}" in text, text
    assert failed.value.file == "<test>" and (failed.value.key or "").startswith("connectors[0]")
    assert "tiger" not in text


async def test_a_missing_sqlite_file_is_named_with_its_key_and_retried_not_refused(tmp_path: Path, db: Path) -> None:
    runtime = runtime_for(tmp_path, db, url="sqlite:///does/not/exist.db")
    with pytest.raises(ConnectorError) as failed:
        await runtime.start()  # strict: the message a `serve --strict` prints
    missing = tmp_path / "does" / "not" / "exist.db"
    assert f"the SQLite file {missing} (connectors[crm].url) does not exist" in str(failed.value)
    await runtime.start(on_failure="report")
    try:
        assert runtime.supervisor.down == ["crm"] and runtime.catalog.tools == {}
        assert "does not exist" in runtime.supervisor.status["crm"].detail
        assert not missing.exists()  # read-only: never created by trying
    finally:
        await runtime.stop()


async def test_url_from_a_secret_file_and_the_environment(
    tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "crm-url").write_text(f"sqlite:///{db}\n")
    from_file = runtime_for(tmp_path, db, url=None, url_file="crm-url")
    monkeypatch.setenv("PB_TEST_CRM_PATH", str(db))
    from_env = runtime_for(tmp_path, db, url="sqlite:///${PB_TEST_CRM_PATH}")
    for runtime in (from_file, from_env):
        await runtime.start()
        try:
            assert (await ok(runtime, "query", sql="SELECT count(*) FROM customers"))["rows"] == [[6]]
        finally:
            await runtime.stop()


async def test_an_unreachable_server_is_reported_without_the_password(tmp_path: Path, db: Path) -> None:
    runtime = runtime_for(tmp_path, db, url="postgresql://reader:Sup3r%2FSecret@127.0.0.1:9/crm", actions=[])
    with pytest.raises(ConnectorError) as failed:
        await runtime.start()
    message = str(failed.value)
    assert "reader:***@127.0.0.1:9/crm" in message
    assert "Sup3r" not in message and "Secret" not in message


def test_options_reject_ambiguous_sources() -> None:
    from pydantic import ValidationError

    from patchbay.connectors.sql import SqlOptions

    with pytest.raises(ValidationError, match="exactly one of 'url'"):
        SqlOptions.model_validate({"url": "sqlite:///a.db", "url_file": "x"})
    with pytest.raises(ValidationError, match="page_size"):
        SqlOptions.model_validate({"url": "sqlite:///a.db", "page_size": 600})
    with pytest.raises(ValidationError, match="built-in tool"):
        SqlOptions.model_validate({"url": "sqlite:///a.db", "actions": [{**ACTIONS[1], "name": "query"}]})


# -- key values checked against the key column's type ---------------------------------------------------------

TYPED_KEYS = [
    "CREATE TABLE days (day DATE PRIMARY KEY, label TEXT)",
    "INSERT INTO days VALUES ('2026-03-01', 'spring')",
    "CREATE TABLE ratios (r REAL PRIMARY KEY, label TEXT)",
    "INSERT INTO ratios VALUES (1.5, 'one and a half'), (3.0, 'three')",
    "CREATE TABLE codes (code TEXT PRIMARY KEY, label TEXT)",
    "INSERT INTO codes VALUES ('5', 'five')",
    "CREATE TABLE amounts (amount NUMERIC PRIMARY KEY, label TEXT)",
    "INSERT INTO amounts VALUES (7, 'seven')",
    "CREATE TABLE loose (a INTEGER, b TEXT)",
]


async def _label(rt: Runtime, table: str, key: Any) -> Any:
    found = await ok(rt, "fetch_record", table=table, key=key)
    return found["record"]["label"] if found["found"] else None


async def test_fetch_record_turns_each_key_into_its_column_type(rt: Runtime, db: Path) -> None:
    with sqlite3.connect(db) as conn:
        for statement in TYPED_KEYS:
            conn.execute(statement)
    assert await _label(rt, "days", "2026-03-01") == "spring"  # an ISO date string, parsed as a date
    assert await _label(rt, "ratios", "1.5") == "one and a half"  # a numeric string for a REAL key
    assert await _label(rt, "ratios", 3) == "three"  # an integer for a REAL key
    assert await _label(rt, "codes", 5) == "five"  # a number for a TEXT key
    assert await _label(rt, "amounts", 7) == await _label(rt, "amounts", "7") == "seven"  # a NUMERIC key (Decimal)
    nulled = await ok(rt, "fetch_record", table="pairs", key={"a": None, "b": "x"})  # looked up (IS NULL), not refused
    assert nulled["found"] is False and nulled["key"] == {"a": None, "b": "x"}
    for table, key, shown in [("days", "March", "'March'"), ("days", 20260301, "20260301"), ("ratios", "x", "'x'")]:
        column, kind = ("day", "DATE") if table == "days" else ("r", "REAL")
        assert await fails(rt, "fetch_record", table=table, key=key) == (
            f"the key value {shown} does not fit column {column} ({kind})"
        )
    assert await fails(rt, "fetch_record", table="loose", key=1) == (
        "main.loose has no primary key; use query with a WHERE clause instead"
    )


async def test_fetch_record_takes_every_64_bit_key_and_refuses_wider_ones(rt: Runtime) -> None:
    for edge in (-(2**63), 2**63 - 1):
        assert (await ok(rt, "fetch_record", table="customers", key=edge))["found"] is False
    for wide in (-(2**63) - 1, 2**63):
        assert await fails(rt, "fetch_record", table="customers", key=wide) == (
            f"the key value {wide} does not fit column id (INTEGER)"
        )
    long = "9" * 400  # what the refusal echoes of a value is bounded
    refusal = await fails(rt, "fetch_record", table="customers", key=long)
    assert len(refusal) == 300 and refusal.startswith("the key value '999")


async def test_query_asks_the_database_for_no_more_rows_than_the_page_needs(rt: Runtime) -> None:
    connector = rt.connectors[0]
    assert isinstance(connector, SqlConnector) and connector._db is not None
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    engine = connector._db._read
    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        page = await ok(rt, "query", sql="SELECT n FROM big ORDER BY n", limit=10, offset=20)
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    assert page["rows"][0] == [21] and page["next_offset"] == 30
    # The page (rows 21-30) and one more row, to know whether more follow: never the whole table.
    assert [s for s in sent if "big" in s] == ['SELECT n FROM "main"."big" ORDER BY n LIMIT 31']


async def test_an_unknown_table_is_refused_with_a_sentence(rt: Runtime) -> None:
    text = await fails(rt, "describe_table", table="nowhere")
    assert text == "No table 'nowhere' is available; call list_tables to see them"  # a sentence: capital first
