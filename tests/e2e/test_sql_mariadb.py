"""The sql connector against a real MariaDB server started for this module (mysql:// URLs, the pymysql driver).

The MariaDB twin of test_sql_postgres.py: every refused statement is followed by a check that the data (every
row, the sequence, the list of tables) is unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from patchbay.app import Runtime
from patchbay.connectors.sql import SqlConnector
from patchbay.errors import ToolError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict
from tests.support.mariadb import PASSWORD, MariadbMissing, MariadbServer, mariadb_server

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
PASSWORD_ENV = "PB_TEST_MARIADB_PASSWORD"
BIG_ROWS = 50_000
SCHEMA = f"""
CREATE TABLE customers (
    id int AUTO_INCREMENT PRIMARY KEY, name varchar(200) NOT NULL COMMENT 'Display name', note text
) COMMENT 'People and companies we sell to';
CREATE TABLE tickets (
    id int AUTO_INCREMENT PRIMARY KEY, customer_id int, subject text NOT NULL,
    status varchar(20) NOT NULL DEFAULT 'open', resolution text,
    FOREIGN KEY (customer_id) REFERENCES customers(id)
);
CREATE TABLE secrets (id int PRIMARY KEY, token text);
CREATE TABLE big (n int PRIMARY KEY, label text);
CREATE SEQUENCE counter;
INSERT INTO customers (name, note) VALUES ('Zoë 東京 😀', NULL), ('Plain', 'has a note'), ('Third', NULL);
INSERT INTO tickets (customer_id, subject) VALUES (1, 'SSO broken'), (2, 'Invoice wrong'), (3, 'Slow dashboard');
INSERT INTO secrets VALUES (1, 'hunter2');
SET SESSION max_recursive_iterations = {BIG_ROWS + 1};
INSERT INTO big WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {BIG_ROWS})
    SELECT n, CONCAT('row ', n) FROM s;
ANALYZE TABLE customers, tickets, big;
"""
ACTIONS = [
    {
        "name": "close_ticket",
        "description": "Close a ticket.",
        "sql": "UPDATE tickets SET status = 'closed', resolution = :resolution WHERE id = :id",
        "params": {"id": "integer", "resolution": "string"},
    },
    {
        "name": "delete_ticket",
        "description": "Delete a ticket.",
        "sql": "DELETE FROM tickets WHERE id = :id",
        "params": {"id": "integer"},
    },
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def maria() -> Iterator[MariadbServer]:
    try:
        running = mariadb_server()
        server = running.__enter__()
    except MariadbMissing as exc:
        pytest.fail(str(exc))
    try:
        server.execute("CREATE DATABASE crm CHARACTER SET utf8mb4")
        server.execute(SCHEMA, database="crm")
        yield server
    finally:
        running.__exit__(None, None, None)


def snapshot(maria: MariadbServer) -> Any:
    return (
        maria.fetch("SELECT * FROM customers ORDER BY id", "crm"),
        maria.fetch("SELECT id, customer_id, subject, status, resolution FROM tickets ORDER BY id", "crm"),
        maria.fetch("SELECT * FROM secrets", "crm"),
        maria.fetch("SELECT count(*), sum(n) FROM big", "crm"),
        maria.fetch("SELECT next_not_cached_value FROM counter", "crm"),
        maria.fetch("SELECT table_name FROM information_schema.tables WHERE table_schema = 'crm' ORDER BY 1"),
    )


def connector_config(maria: MariadbServer, **options: Any) -> dict[str, Any]:
    return {
        "name": "crm",
        "type": "sql",
        "prefix": "",
        "url": maria.url("crm", with_password=False),
        "password_env": PASSWORD_ENV,
        "exclude_tables": ["secrets", "counter"],
        "statement_timeout_ms": 1500,
        "max_value_chars": 200,
        "actions": ACTIONS,
        **options,
    }


@pytest.fixture
async def rt(maria: MariadbServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    data = {"store": {"url": f"sqlite:///{tmp_path / 'p.db'}"}, "connectors": [connector_config(maria)]}
    runtime = Runtime(from_dict(data, source="<test>", base_dir=tmp_path))
    await runtime.start()
    yield runtime
    await runtime.stop()


async def call(rt: Runtime, name: str, **arguments: Any) -> dict[str, Any]:
    scope = CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={})
    result: dict[str, Any] = await rt.dispatcher.dispatch("tools/call", {"name": name, "arguments": arguments}, scope)
    assert PASSWORD not in json.dumps(result)
    return result


async def ok(rt: Runtime, name: str, **arguments: Any) -> Any:
    result = await call(rt, name, **arguments)
    assert result["isError"] is False, result["content"]
    return result["structuredContent"]


async def fails(rt: Runtime, name: str, **arguments: Any) -> str:
    result = await call(rt, name, **arguments)
    assert result["isError"] is True, result
    text: str = result["content"][0]["text"]
    assert "reference" not in text, text  # a precise error, not an unexpected failure
    return text


async def test_reads_describe_query_and_fetch(rt: Runtime) -> None:
    tables = await ok(rt, "list_tables")
    assert [t["name"] for t in tables["tables"]] == ["big", "customers", "tickets"]
    assert {t["schema"] for t in tables["tables"]} == {"crm"}
    assert tables["tables"][1]["comment"] == "People and companies we sell to"
    described = await ok(rt, "describe_table", table="crm.customers")
    assert described["columns"][1]["comment"] == "Display name" and described["primary_key"] == ["id"]
    tickets = await ok(rt, "describe_table", table="tickets")
    assert tickets["foreign_keys"][0]["references"].endswith("customers")
    big = await ok(rt, "describe_table", table="big")
    # InnoDB's table_rows is a sampled estimate, not a count.
    assert big["row_estimate_source"] == "statistics" and BIG_ROWS / 2 < big["row_estimate"] < BIG_ROWS * 2
    page = await ok(rt, "query", sql="SELECT name, note FROM customers ORDER BY id", limit=2)
    assert page["rows"] == [["Zoë 東京 😀", None], ["Plain", "has a note"]] and page["next_offset"] == 2
    assert (await ok(rt, "query", sql="SELECT name FROM customers WHERE name LIKE '%東京%'"))["rows"] == [
        ["Zoë 東京 😀"]
    ]
    record = await ok(rt, "fetch_record", table="customers", key="1")
    assert record["record"] == {"id": 1, "name": "Zoë 東京 😀", "note": None}


async def test_backslashes_and_quotes_in_literals_reach_the_database_unchanged(rt: Runtime) -> None:
    # MySQL reads a backslash in a string literal as an escape: the regenerated SQL must say the same thing.
    page = await ok(rt, "query", sql=r"SELECT 'a\\b', 'it''s', 'x\'y', CONCAT('%', 'd')")
    assert page["rows"] == [["a\\b", "it's", "x'y", "%d"]]


async def test_huge_results_are_paged_and_capped(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT * FROM big ORDER BY n", offset=49_990, limit=500)
    assert page["row_count"] == 10 and page["truncated"] is False and page["rows"][0] == [49_991, "row 49991"]
    wide = await ok(rt, "query", sql="SELECT a.n, b.n FROM big a CROSS JOIN big b", limit=500)
    assert wide["row_count"] == 500 and wide["truncated"] is True
    long = await ok(rt, "query", sql="SELECT REPEAT('é', 10000) AS long_text")
    assert long["rows"][0][0] == "é" * 200 + "…" and "10,000 characters" in long["notes"][0]


SMUGGLED = [
    "SELECT 1; DROP TABLE tickets",
    "SELECT * FROM tickets; DELETE FROM tickets",
    "SELECT 1 /*!; DELETE FROM tickets */",
    "SELECT /*M!100000 SLEEP(5), */ 1",
    "SELECT * FROM tickets INTO OUTFILE '/tmp/pb-stolen.csv'",
    "SELECT * FROM tickets INTO DUMPFILE '/tmp/pb-stolen.bin'",
    "SELECT id INTO @stolen FROM tickets LIMIT 1",
    "SELECT SLEEP(30)",
    "SELECT BENCHMARK(100000000, MD5('x'))",
    "SELECT LOAD_FILE('/etc/hostname')",
    "SELECT GET_LOCK('x', 10)",
    "SELECT NEXTVAL(counter)",
    "SELECT NEXT VALUE FOR counter",
    "SELECT SETVAL(counter, 42)",
    "SELECT * FROM tickets FOR UPDATE",
    "SELECT * FROM tickets LOCK IN SHARE MODE",
    "SET SESSION TRANSACTION READ WRITE",
    "SET @@session.max_statement_time = 0",
    "LOAD DATA INFILE '/etc/hostname' INTO TABLE tickets",
    "INSERT INTO tickets (subject) VALUES ('x')",
    "REPLACE INTO tickets (id, subject) VALUES (1, 'x')",
    "UPDATE tickets SET status = 'hacked'",
    "DELETE FROM tickets",
    "DO SLEEP(5)",
    "HANDLER tickets OPEN",
    "CALL mysql.nothing()",
    "TRUNCATE tickets",
    "LOCK TABLES tickets WRITE",
    "FLUSH TABLES",
    "CREATE TABLE stolen AS SELECT * FROM tickets",
    "SELECT * FROM secrets",
    "SELECT token FROM crm.secrets",
    "SELECT * FROM mysql.user",
    "SELECT * FROM mysql.global_priv",
    "SELECT * FROM tickets WHERE id IN (SELECT id FROM secrets)",
]


@pytest.mark.parametrize("sql", SMUGGLED)
async def test_smuggled_writes_are_refused_and_change_nothing(rt: Runtime, maria: MariadbServer, sql: str) -> None:
    before = snapshot(maria)
    text = await fails(rt, "query", sql=sql)
    assert text.startswith("Refused:"), text
    assert "hunter2" not in text
    assert snapshot(maria) == before
    assert not stolen_files()


def stolen_files() -> list[Path]:
    return [p for p in (Path("/tmp/pb-stolen.csv"), Path("/tmp/pb-stolen.bin")) if p.exists()]


async def test_the_database_refuses_writes_when_the_parser_is_bypassed(rt: Runtime, maria: MariadbServer) -> None:
    connector = rt.connectors[0]
    assert isinstance(connector, SqlConnector) and connector._db is not None
    db = connector._db
    before = snapshot(maria)
    for sql in (
        "UPDATE tickets SET status = 'hacked'",
        "INSERT INTO secrets VALUES (2, 'x')",
        "SELECT NEXTVAL(counter)",
    ):
        with pytest.raises(ToolError) as refused:
            db.read(lambda conn, sql=sql: conn.exec_driver_sql(sql).all())
        assert "refused to write in a read-only query" in refused.value.message, refused.value.message
    assert snapshot(maria) == before
    with pytest.raises(ToolError, match="time limit of 1500 ms"):
        db.read(lambda conn: conn.exec_driver_sql("SELECT SLEEP(10)").all())


async def test_a_long_query_is_cancelled_by_the_statement_timeout(rt: Runtime) -> None:
    text = await fails(rt, "query", sql="SELECT count(*) FROM big a, big b, big c")
    assert "time limit of 1500 ms" in text
    assert (await ok(rt, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[3]]


async def test_declared_actions_write_and_report_affected_rows(rt: Runtime, maria: MariadbServer) -> None:
    maria.execute("INSERT INTO tickets (id, customer_id, subject) VALUES (40, 1, 'to delete')", "crm")
    assert (await ok(rt, "delete_ticket", id=40))["affected_rows"] == 1
    assert (await ok(rt, "delete_ticket", id=40))["affected_rows"] == 0
    assert maria.fetch("SELECT count(*) FROM tickets WHERE id = 40", "crm") == [(0,)]


@pytest.mark.parametrize("payload", ["1; DROP TABLE tickets", "1 OR 1=1", "'); DELETE FROM tickets; --", "\\'"])
async def test_injection_through_every_parameter(rt: Runtime, maria: MariadbServer, payload: str) -> None:
    before = snapshot(maria)
    await fails(rt, "query", sql="SELECT 1", limit=payload)
    await fails(rt, "describe_table", table=payload)
    await fails(rt, "fetch_record", table=payload, key=1)
    await fails(rt, "fetch_record", table="tickets", key=payload)
    await fails(rt, "close_ticket", id=payload, resolution="x")
    await fails(rt, "delete_ticket", id=payload)
    assert snapshot(maria) == before
    assert (await ok(rt, "close_ticket", id=3, resolution=payload))["affected_rows"] == 1
    stored = await ok(rt, "fetch_record", table="tickets", key=3)
    assert stored["record"]["resolution"] == payload and stored["record"]["status"] == "closed"
    assert (await ok(rt, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[3]]


async def test_a_database_that_goes_away_and_comes_back(rt: Runtime, maria: MariadbServer) -> None:
    assert (await ok(rt, "query", sql="SELECT count(*) FROM customers"))["rows"] == [[3]]
    await anyio.to_thread.run_sync(maria.stop)
    try:
        text = await fails(rt, "query", sql="SELECT count(*) FROM customers")
        assert "unreachable" in text and f"127.0.0.1:{maria.port}/crm" in text
        health = await rt.connectors[0].health()
        assert health.ok is False and PASSWORD not in health.detail
    finally:
        await anyio.to_thread.run_sync(maria.start)
    assert (await ok(rt, "query", sql="SELECT count(*) FROM customers"))["rows"] == [[3]]
    assert (await rt.connectors[0].health()).ok is True
