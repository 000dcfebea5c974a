"""The parser wall of the sql connector: what ``query`` accepts and refuses, per dialect, before a database sees it."""

from __future__ import annotations

import pytest

from patchbay.connectors.sql import guard
from patchbay.connectors.sql.actions import prepare
from patchbay.connectors.sql.options import ActionSpec

ALLOWED = [
    "SELECT 1",
    "select id, name from customers where id = 1",
    "WITH open AS (SELECT * FROM tickets WHERE status = 'open') SELECT count(*) FROM open",
    "SELECT 1 UNION ALL SELECT 2",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT c.name, count(o.id) FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.name",
    "SELECT * FROM tickets WHERE subject LIKE '%; DROP TABLE tickets; --%'",
    "SELECT 'DELETE FROM tickets' AS harmless_text",
    "SELECT 1;",
]

# (dialect, statement, words the refusal must contain)
REFUSED = [
    ("postgres", "SELECT 1; DROP TABLE tickets", "one statement"),
    ("postgres", "SELECT 1; DELETE FROM tickets", "one statement"),
    ("postgres", "DELETE FROM tickets", "DELETE"),
    ("postgres", "UPDATE tickets SET status = 'x'", "UPDATE"),
    ("postgres", "INSERT INTO tickets (id) VALUES (1)", "INSERT"),
    ("postgres", "WITH x AS (UPDATE tickets SET status = 'x' RETURNING *) SELECT * FROM x", "UPDATE"),
    ("postgres", "WITH x AS (DELETE FROM tickets RETURNING id) SELECT * FROM x", "DELETE"),
    ("postgres", "SELECT * INTO stolen FROM tickets", "INTO"),
    ("postgres", "SELECT * FROM tickets FOR UPDATE", "locking"),
    ("postgres", "SELECT * FROM tickets FOR SHARE", "locking"),
    ("postgres", "SELECT pg_sleep(10)", "pg_sleep"),
    ("postgres", "SELECT pg_catalog.pg_sleep(10)", "pg_sleep"),
    ("postgres", "SELECT lo_import('/etc/passwd')", "lo_import"),
    ("postgres", "SELECT lo_export(1, '/tmp/x')", "lo_export"),
    ("postgres", "SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    ("postgres", "SELECT set_config('statement_timeout', '0', false)", "set_config"),
    ("postgres", "SELECT nextval('tickets_id_seq')", "nextval"),
    ("postgres", "SELECT setval('tickets_id_seq', 1)", "setval"),
    ("postgres", "SELECT pg_terminate_backend(1)", "pg_terminate_backend"),
    ("postgres", "SELECT dblink_exec('host=x', 'DROP TABLE t')", "dblink_exec"),
    ("postgres", "SELECT query_to_xml('DELETE FROM tickets RETURNING 1', true, true, '')", "query_to_xml"),
    ("postgres", "SELECT * FROM (SELECT pg_advisory_lock(1)) s", "pg_advisory_lock"),
    ("postgres", "COPY tickets TO '/tmp/x'", "COPY"),
    ("postgres", "EXPLAIN ANALYZE DELETE FROM tickets", "EXPLAIN"),
    ("postgres", "DO $$ BEGIN DELETE FROM tickets; END $$", "read-only"),
    ("postgres", "SET ROLE postgres", "read-only"),
    ("postgres", "TRUNCATE tickets", "TRUNCATE"),
    ("postgres", "DROP TABLE tickets", "DROP"),
    ("postgres", "CREATE TABLE x (a int)", "CREATE"),
    ("postgres", "CALL do_things()", "read-only"),
    ("postgres", "BEGIN", "read-only"),
    ("postgres", "SELECT FROM", "does not parse"),
    ("postgres", "   ", "empty"),
    ("sqlite", "PRAGMA writable_schema = 1", "PRAGMA"),
    ("sqlite", "PRAGMA query_only = 0", "PRAGMA"),
    ("sqlite", "ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
    ("sqlite", "SELECT load_extension('/tmp/evil')", "load_extension"),
    ("sqlite", "VACUUM INTO '/tmp/copy.db'", "read-only"),
    ("sqlite", "SELECT 1; DROP TABLE tickets", "one statement"),
    ("sqlite", "REPLACE INTO tickets (id) VALUES (1)", "REPLACE"),
    ("mysql", "SELECT SLEEP(10)", "sleep"),
    ("mysql", "SELECT BENCHMARK(100000000, MD5('x'))", "benchmark"),
    ("mysql", "SELECT LOAD_FILE('/etc/passwd')", "load_file"),
    ("mysql", "SELECT * FROM tickets LOCK IN SHARE MODE", "locking"),
    ("mysql", "SELECT GET_LOCK('x', 10)", "get_lock"),
]


@pytest.mark.parametrize(
    ("dialect", "sql"),
    # MySQL spells a VALUES statement VALUES ROW(...): the plain form is not MySQL.
    [(d, s) for d in ("postgres", "sqlite", "mysql") for s in ALLOWED if not (d == "mysql" and s.startswith("VALUES"))],
)
def test_read_only_statements_pass_in_every_dialect(dialect: str, sql: str) -> None:
    tree = guard.check_read_only(sql, dialect)
    assert guard.violation(tree) is None


@pytest.mark.parametrize(("dialect", "sql", "words"), REFUSED)
def test_writes_and_side_effects_are_refused_by_the_parser(dialect: str, sql: str, words: str) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.check_read_only(sql, dialect)
    assert words.lower() in str(refused.value).lower()


def test_what_runs_is_regenerated_from_the_checked_tree() -> None:
    for sql in ("select id from tickets -- ; drop table tickets", "select 1 /* */ ; drop table x */"):
        try:
            tree = guard.check_read_only(sql, "postgres")
        except guard.Refused:
            continue
        assert "drop" not in guard.render(tree, "postgres").lower()


def _spec(sql: str, params: dict[str, str], **extra: object) -> ActionSpec:
    return ActionSpec.model_validate({"name": "act", "description": "d", "sql": sql, "params": params, **extra})


def test_action_annotations_follow_the_statement() -> None:
    update = prepare(_spec("UPDATE tickets SET status = 'closed' WHERE id = :id", {"id": "integer"}), "postgres")
    assert (update.kind, update.read_only, update.destructive) == ("update", False, False)
    delete = prepare(_spec("DELETE FROM tickets WHERE id = :id", {"id": "integer"}), "postgres")
    assert (delete.read_only, delete.destructive) == (False, True)
    select = prepare(_spec("SELECT * FROM tickets WHERE id = :id", {"id": "integer"}), "sqlite")
    assert (select.read_only, select.destructive) == (True, False)
    declared = prepare(_spec("UPDATE t SET a = 1", {}, destructive=True), "sqlite")
    assert declared.destructive is True


@pytest.mark.parametrize(
    ("sql", "params", "message"),
    [
        ("UPDATE t SET a = :a WHERE id = :id", {"id": "integer"}, "used but not declared: a"),
        ("UPDATE t SET a = 1 WHERE id = :id", {"id": "integer", "b": "string"}, "declared but not used: b"),
        ("UPDATE t SET a = 1; DELETE FROM t", {}, "one statement"),
        ("UPDATE SET WHERE", {}, "does not parse"),
    ],
)
def test_action_statements_are_checked_at_start_up(sql: str, params: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        prepare(_spec(sql, params), "postgres")


ONLY_READS = "only read-only queries (SELECT, WITH … SELECT, UNION, VALUES) are allowed; this is"
IN_READS = "is not allowed in a read-only query"
LOCKING = "a locking clause (FOR UPDATE / FOR SHARE / LOCK IN SHARE MODE)"
EXECUTABLE = "MySQL/MariaDB executable comments (/*! … */, /*M! … */) are not allowed: write the SQL without them"
SIDE_EFFECTS = "is not allowed: it has side effects or reaches outside the query"

# (dialect, statement, the whole refusal): a refusal names exactly what was refused, so a person can fix the query.
EXACT_REFUSALS = [
    ("postgres", "   ", "the statement is empty"),
    ("postgres", "SELECT (1", "the statement does not parse as postgres SQL: Expecting ). Line 1, Col: 9."),
    (
        "postgres",
        "SELECT 1 UNION SELECT 2; DROP TABLE t",
        "only one statement is allowed per call; found 2 (UNION, DROP)",
    ),
    ("postgres", "TRUNCATE tickets", f"{ONLY_READS} TRUNCATE"),
    ("postgres", "DO $$ BEGIN END $$", f"{ONLY_READS} DO (a command)"),
    ("postgres", "SELECT * INTO stolen FROM tickets", f"SELECT … INTO {IN_READS}"),
    ("postgres", "SELECT * FROM t FOR UPDATE", f"{LOCKING} {IN_READS}"),
    ("postgres", "WITH x AS (UPDATE t SET a = 1 RETURNING *) SELECT * FROM x", f"an UPDATE statement {IN_READS}"),
    ("postgres", "WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x", f"a DELETE statement {IN_READS}"),
    ("postgres", "SELECT pg_catalog.pg_sleep(1)", f"the function pg_sleep() {SIDE_EFFECTS}"),
    ("mysql", "SELECT 1 /*! , SLEEP(10) */", EXECUTABLE),
    ("mysql", "SELECT 1 /*M! , SLEEP(10) */ FROM t", EXECUTABLE),
]


@pytest.mark.parametrize(("dialect", "sql", "message"), EXACT_REFUSALS)
def test_a_refusal_says_exactly_what_was_refused(dialect: str, sql: str, message: str) -> None:
    with pytest.raises(guard.Refused) as refused:
        guard.check_read_only(sql, dialect)
    assert str(refused.value) == message


def test_every_denied_function_is_refused_by_name_in_every_dialect() -> None:
    names = [*sorted(guard.DENIED_FUNCTIONS), *(f"{prefix}x" for prefix in guard.DENIED_PREFIXES)]
    for dialect in ("postgres", "sqlite", "mysql"):
        for name in names:
            with pytest.raises(guard.Refused, match=rf"the function {name}\(\) is not allowed"):
                guard.check_read_only(f"SELECT {name}(1)", dialect)


def test_comments_never_reach_the_database_and_only_mysql_runs_them() -> None:
    # /*! … */ is code to MySQL only; elsewhere it is a comment, dropped like any other.
    for dialect in ("postgres", "sqlite"):
        tree = guard.check_read_only("SELECT 1 /*! , note */ -- ; DROP TABLE t", dialect)
        assert guard.render(tree, dialect) == "SELECT 1"
    tree = guard.check_read_only("SELECT a /* note */ FROM t", "mysql")
    assert guard.render(tree, "mysql") == "SELECT a FROM t"


def test_the_regenerated_statement_is_written_in_the_databases_dialect() -> None:
    # In MySQL a backquoted name is a column; written in another dialect ("order") it would be a string.
    tree = guard.check_read_only("SELECT `order`, `a b` FROM t", "mysql")
    assert guard.render(tree, "mysql") == "SELECT `order`, `a b` FROM t"
