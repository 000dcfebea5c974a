"""The sql connector against a real PostgreSQL cluster started for this module, in-process and through `/mcp`.

Every refused statement is followed by a check that the data (every row and the sequence) is unchanged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest

from patchbay.app import Runtime
from patchbay.connectors.sql import SqlConnector
from patchbay.errors import ToolError
from patchbay.protocol.scope import CallScope
from patchbay.settings import from_dict
from tests.support.postgres import PASSWORD, PostgresMissing, PostgresServer, postgres_cluster
from tests.support.servers import run_patchbay

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]
PASSWORD_ENV = "PB_TEST_PG_PASSWORD"
SCHEMA = """
CREATE TABLE customers (id serial PRIMARY KEY, name text NOT NULL, note text);
COMMENT ON TABLE customers IS 'People and companies we sell to';
COMMENT ON COLUMN customers.name IS 'Display name';
CREATE TABLE tickets (
    id serial PRIMARY KEY, customer_id int REFERENCES customers(id), subject text NOT NULL,
    status text NOT NULL DEFAULT 'open', resolution text
);
CREATE TABLE secrets (id int PRIMARY KEY, token text);
CREATE TABLE big (n int PRIMARY KEY, label text);
CREATE SEQUENCE counter;
INSERT INTO customers (name, note) VALUES ('Zoë 東京 😀', NULL), ('Plain', 'has a note'), ('Third', NULL);
INSERT INTO tickets (customer_id, subject) VALUES (1, 'SSO broken'), (2, 'Invoice wrong'), (3, 'Slow dashboard');
INSERT INTO secrets VALUES (1, 'hunter2');
INSERT INTO big SELECT n, 'row ' || n FROM generate_series(1, 50000) n;
ANALYZE;
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
def pg() -> Iterator[PostgresServer]:
    try:
        cluster = postgres_cluster()
        server = cluster.__enter__()
    except PostgresMissing as exc:
        pytest.fail(str(exc))
    try:
        server.execute("CREATE DATABASE crm")
        server.execute(SCHEMA, database="crm")
        yield server
    finally:
        cluster.__exit__(None, None, None)


def snapshot(pg: PostgresServer) -> Any:
    return (
        pg.fetch("SELECT * FROM customers ORDER BY id", "crm"),
        pg.fetch("SELECT id, customer_id, subject, status, resolution FROM tickets ORDER BY id", "crm"),
        pg.fetch("SELECT * FROM secrets", "crm"),
        pg.fetch("SELECT count(*), sum(n) FROM big", "crm"),
        pg.fetch("SELECT last_value, is_called FROM counter", "crm"),
        pg.fetch("SELECT count(*) FROM pg_largeobject_metadata", "crm"),
        pg.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", "crm"),
    )


def connector_config(pg: PostgresServer, **options: Any) -> dict[str, Any]:
    return {
        "name": "crm",
        "type": "sql",
        "prefix": "",
        "url": pg.url("crm", with_password=False),
        "password_env": PASSWORD_ENV,
        "exclude_tables": ["secrets"],
        "statement_timeout_ms": 1500,
        "max_value_chars": 200,
        "actions": ACTIONS,
        **options,
    }


@pytest.fixture
async def rt(pg: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Runtime]:
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    data = {"store": {"url": f"sqlite:///{tmp_path / 'p.db'}"}, "connectors": [connector_config(pg)]}
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
    assert tables["tables"][1]["comment"] == "People and companies we sell to"
    described = await ok(rt, "describe_table", table="public.customers")
    assert described["columns"][1]["comment"] == "Display name"
    big = await ok(rt, "describe_table", table="big")
    assert big["row_estimate"] == 50000 and big["row_estimate_source"] == "statistics"
    page = await ok(rt, "query", sql="SELECT name, note FROM customers ORDER BY id", limit=2)
    assert page["rows"] == [["Zoë 東京 😀", None], ["Plain", "has a note"]] and page["next_offset"] == 2
    assert (await ok(rt, "query", sql="SELECT name FROM customers WHERE name LIKE '%東京%'"))["rows"] == [
        ["Zoë 東京 😀"]
    ]
    record = await ok(rt, "fetch_record", table="customers", key="1")
    assert record["record"] == {"id": 1, "name": "Zoë 東京 😀", "note": None}


async def test_huge_results_are_paged_and_capped(rt: Runtime) -> None:
    page = await ok(rt, "query", sql="SELECT * FROM big ORDER BY n", offset=49_990, limit=500)
    assert page["row_count"] == 10 and page["truncated"] is False and page["rows"][0] == [49_991, "row 49991"]
    wide = await ok(rt, "query", sql="SELECT a.n, b.n FROM big a CROSS JOIN big b", limit=500)
    assert wide["row_count"] == 500 and wide["truncated"] is True
    long = await ok(rt, "query", sql="SELECT repeat('é', 10000) AS long")
    assert long["rows"][0][0] == "é" * 200 + "…" and "10,000 characters" in long["notes"][0]


SMUGGLED = [
    "SELECT 1; DROP TABLE tickets",
    "SELECT * FROM tickets; DELETE FROM tickets",
    "WITH x AS (UPDATE tickets SET status = 'hacked' RETURNING *) SELECT * FROM x",
    "WITH x AS (DELETE FROM tickets RETURNING *) SELECT count(*) FROM x",
    "SELECT * INTO stolen FROM tickets",
    "SELECT pg_sleep(30)",
    "SELECT lo_import('/etc/hostname')",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SELECT nextval('counter')",
    "SELECT setval('counter', 42)",
    "SELECT query_to_xml('DELETE FROM tickets RETURNING 1', true, true, '')",
    "SELECT * FROM tickets FOR UPDATE",
    "COPY tickets TO '/tmp/stolen.csv'",
    "EXPLAIN ANALYZE DELETE FROM tickets",
    "DO $$ BEGIN DELETE FROM tickets; END $$",
    "SET ROLE postgres",
    "TRUNCATE tickets",
    "PREPARE p AS DELETE FROM tickets",
    "NOTIFY chan, 'x'",
    "LOCK TABLE tickets",
    "SELECT * FROM secrets",
    "SELECT token FROM public.secrets",
    "SELECT * FROM pg_authid",
    "SELECT * FROM pg_catalog.pg_shadow",
    "SELECT * FROM tickets WHERE id IN (SELECT id FROM secrets)",
]


@pytest.mark.parametrize("sql", SMUGGLED)
async def test_smuggled_writes_are_refused_and_change_nothing(rt: Runtime, pg: PostgresServer, sql: str) -> None:
    before = snapshot(pg)
    text = await fails(rt, "query", sql=sql)
    assert text.startswith("Refused:"), text
    assert "hunter2" not in text
    assert snapshot(pg) == before


async def test_the_database_refuses_writes_when_the_parser_is_bypassed(rt: Runtime, pg: PostgresServer) -> None:
    connector = rt.connectors[0]
    assert isinstance(connector, SqlConnector) and connector._db is not None
    db = connector._db
    before = snapshot(pg)
    for sql in (
        "UPDATE tickets SET status = 'hacked'",
        "SELECT nextval('counter')",
        "CREATE TABLE stolen AS SELECT * FROM tickets",
        "SELECT set_config('transaction_read_only', 'off', true)",
    ):
        with pytest.raises(ToolError) as refused:
            db.read(lambda conn, sql=sql: conn.exec_driver_sql(sql).all())
        assert "refused" in refused.value.message, refused.value.message
    # PostgreSQL lets a superuser run lo_import in a read-only transaction; the third wall is that a read
    # transaction is always rolled back, never committed.
    db.read(lambda conn: conn.exec_driver_sql("SELECT lo_import('/etc/hostname')").all())
    assert snapshot(pg) == before
    with pytest.raises(ToolError, match="time limit of 1500 ms"):
        db.read(lambda conn: conn.exec_driver_sql("SELECT pg_sleep(10)").all())


async def test_a_long_query_is_cancelled_by_the_statement_timeout(rt: Runtime) -> None:
    text = await fails(rt, "query", sql="SELECT count(*) FROM big a, big b, big c")
    assert "time limit of 1500 ms" in text
    assert (await ok(rt, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[3]]


@pytest.mark.parametrize("payload", ["1; DROP TABLE tickets", "1 OR 1=1", "'); DELETE FROM tickets; --", "\\x00"])
async def test_injection_through_every_parameter(rt: Runtime, pg: PostgresServer, payload: str) -> None:
    before = snapshot(pg)
    await fails(rt, "query", sql="SELECT 1", limit=payload)
    await fails(rt, "describe_table", table=payload)
    await fails(rt, "fetch_record", table=payload, key=1)
    await fails(rt, "fetch_record", table="tickets", key=payload)
    await fails(rt, "close_ticket", id=payload, resolution="x")
    await fails(rt, "delete_ticket", id=payload)
    assert snapshot(pg) == before
    assert (await ok(rt, "close_ticket", id=3, resolution=payload))["affected_rows"] == 1
    stored = await ok(rt, "fetch_record", table="tickets", key=3)
    assert stored["record"]["resolution"] == payload and stored["record"]["status"] == "closed"
    assert (await ok(rt, "query", sql="SELECT count(*) FROM tickets"))["rows"] == [[3]]


async def test_a_database_that_goes_away_and_comes_back(rt: Runtime, pg: PostgresServer) -> None:
    assert (await ok(rt, "query", sql="SELECT count(*) FROM customers"))["rows"] == [[3]]
    await anyio.to_thread.run_sync(pg.stop)
    try:
        text = await fails(rt, "query", sql="SELECT count(*) FROM customers")
        assert "unreachable" in text and f"127.0.0.1:{pg.port}/crm" in text
        assert f"postgres:***@127.0.0.1:{pg.port}/crm" in text and PASSWORD not in text  # the URL, password masked
        health = await rt.connectors[0].health()
        assert health.ok is False and PASSWORD not in health.detail
    finally:
        await anyio.to_thread.run_sync(pg.start)
    assert (await ok(rt, "query", sql="SELECT count(*) FROM customers"))["rows"] == [[3]]
    assert (await rt.connectors[0].health()).ok is True


def test_over_mcp_and_in_the_cli_the_password_never_shows(pg: PostgresServer, tmp_path: Path) -> None:
    config = tmp_path / "patchbay.toml"
    entry = connector_config(pg)
    entry.pop("actions")
    lines = ["[[connectors]]", *(f"{k} = {json.dumps(v)}" for k, v in entry.items())]
    lines += ["[[connectors.actions]]", *(f"{k} = {json.dumps(v)}" for k, v in ACTIONS[0].items() if k != "params")]
    lines += ["[connectors.actions.params]", 'id = "integer"', 'resolution = "string"']
    config.write_text("\n".join(lines) + "\n")
    env = {PASSWORD_ENV: PASSWORD}
    with run_patchbay(config, env=env, log_dir=tmp_path / "logs") as server:
        headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "query", "arguments": {"sql": "SELECT name FROM customers ORDER BY id LIMIT 1"}},
        }
        init = {
            "jsonrpc": "2.0",
            "id": 0,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "t", "version": "1"},
            },
        }
        with httpx2.Client(timeout=30, trust_env=False) as http:
            opened = http.post(server.url, json=init, headers=headers)
            assert opened.status_code == 200, opened.text
            session = opened.headers.get("mcp-session-id")
            if session:
                headers["Mcp-Session-Id"] = session
            http.post(server.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)
            answer = http.post(server.url, json=body, headers=headers)
        assert answer.status_code == 200, answer.text
        text = answer.text
        payload = json.loads(text[text.index("{") :].splitlines()[0]) if text.startswith("event") else answer.json()
        assert payload["result"]["structuredContent"]["rows"] == [["Zoë 東京 😀"]]
        assert PASSWORD not in text
        log = server.log_tail(400)
    assert PASSWORD not in log
    listed = subprocess.run(
        [sys.executable, "-m", "patchbay", "tools", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**_environ(), **env},
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "fetch_record" in listed.stdout and PASSWORD not in listed.stdout + listed.stderr


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)
