"""What the sql tools do, synchronously: each method runs in a worker thread and returns (structured, text).

Every refusal or failure is a ``ToolError`` saying what was refused and why.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlglot import exp

from patchbay.connectors.sql import catalog, guard, results
from patchbay.connectors.sql.actions import Action, bind
from patchbay.connectors.sql.catalog import TableInfo, Visibility
from patchbay.connectors.sql.database import Database
from patchbay.connectors.sql.options import SqlOptions
from patchbay.connectors.sql.schemas import INT64_MAX, INT64_MIN
from patchbay.errors import ToolError

Output = tuple[dict[str, Any], str]


class SqlService:
    def __init__(self, db: Database, options: SqlOptions, visibility: Visibility) -> None:
        self.db = db
        self.options = options
        self.visibility = visibility
        self._tables: list[TableInfo] = []
        self._lock = threading.Lock()

    # -- the visible tables -------------------------------------------------------------------------------------

    def refresh(self) -> list[TableInfo]:
        tables = self.db.read(lambda conn: catalog.list_visible(conn, self.visibility))
        with self._lock:
            self._tables = tables
        return tables

    def tables(self) -> list[TableInfo]:
        with self._lock:
            return list(self._tables)

    def _resolve(self, reference: str) -> TableInfo:
        for tables in (self.tables(), None):
            try:
                return catalog.resolve(tables if tables is not None else self.refresh(), reference)
            except guard.Refused as exc:
                if tables is None:
                    raise ToolError(str(exc)[0].upper() + str(exc)[1:]) from None
        raise AssertionError("unreachable")

    # -- tools --------------------------------------------------------------------------------------------------

    def list_tables(self) -> Output:
        tables = self.refresh()
        rows = [[t.schema, t.name, t.kind, t.comment] for t in tables]
        text = results.text_table(["schema", "name", "type", "comment"], rows) if rows else "No tables are available."
        return {"tables": [t.as_dict() for t in tables]}, text

    def describe_table(self, reference: str) -> Output:
        table = self._resolve(reference)
        info = self.db.read(lambda conn: catalog.describe(conn, table))
        lines = [f"{table.kind.capitalize()} {table.qualified}" + (f": {table.comment}" if table.comment else "")]
        cols = [
            [c["name"], c["type"], "yes" if c["nullable"] else "no", "yes" if c["primary_key"] else "", c["comment"]]
            for c in info["columns"]
        ]
        lines.append(results.text_table(["column", "type", "nullable", "primary key", "comment"], cols))
        for fk in info["foreign_keys"]:
            lines.append(f"{', '.join(fk['columns'])} → {fk['references']}({', '.join(fk['referenced_columns'])})")
        lines.append(f"Rows: about {info['row_estimate']} ({info['row_estimate_source']}).")
        return info, "\n".join(lines)

    def query(self, sql: str, limit: int, offset: int) -> Output:
        to_run = self.db.driver_sql(self._checked(sql, offset + limit + 1))
        deadline = time.monotonic() + self.options.statement_timeout_ms / 1000

        def run(conn: Connection) -> results.Page:
            result = conn.execution_options(stream_results=True).exec_driver_sql(to_run)
            if not result.returns_rows:
                raise ToolError("Refused: the statement returned no rows; only queries that read are allowed")
            return results.read_page(
                result, offset=offset, limit=limit, max_chars=self.options.max_value_chars, deadline=deadline
            )

        page = self.db.read(run)
        return page.structured(), results.page_text(page)

    def _checked(self, sql: str, row_cap: int) -> str:
        """The SQL to run for ``sql``: checked, its tables qualified, and capped at ``row_cap`` rows."""
        for tables in (self.tables(), None):
            try:
                tree = guard.check_read_only(sql, self.db.dialect)
                catalog.qualify(tree, tables if tables is not None else self.refresh())
            except guard.Refused as exc:
                unknown_table = "is not available" in str(exc)
                if tables is None or not unknown_table:
                    raise ToolError(f"Refused: {exc}.") from None
                continue  # a table created since the last refresh: look again once
            if isinstance(tree, exp.Query) and not tree.args.get("limit"):
                # Never read more than the page needs; the database can plan for it too.
                tree = tree.limit(row_cap, copy=False)
            return guard.render(tree, self.db.dialect)
        raise AssertionError("unreachable")

    def fetch_record(self, reference: str, key: Any) -> Output:
        table = self._resolve(reference)

        def run(conn: Connection) -> tuple[dict[str, Any], dict[str, Any] | None, list[str]]:
            reflected = catalog.reflect(conn, table)
            values = _key_values(reflected, key, table)
            where = [column == value for column, value in values.items()]
            row = conn.execute(sa.select(reflected).where(*where).limit(1)).mappings().all()
            cutter = results.Cutter(self.options.max_value_chars)
            shown_key = {c.name: results.to_json(v) for c, v in values.items()}
            if not row:
                return shown_key, None, []
            record = {str(k): cutter.value(v, str(k), 0) for k, v in row[0].items()}
            return shown_key, record, cutter.notes()

        shown_key, record, notes = self.db.read(run)
        structured = {"table": table.qualified, "key": shown_key, "found": record is not None, "record": record}
        structured["notes"] = notes
        if record is None:
            return structured, f"No row in {table.qualified} with key {shown_key}."
        text = results.text_table(["column", "value"], [[k, v] for k, v in record.items()])
        return structured, "\n".join([f"{table.qualified} {shown_key}", text, *notes])

    def run_action(self, action: Action, arguments: dict[str, Any]) -> Output:
        params = bind(action.spec, arguments)
        cap = self.options.max_rows

        def run(conn: Connection) -> tuple[int | None, results.Page | None]:
            result = conn.execute(action.statement, params)
            page = None
            if result.returns_rows:
                page = results.read_page(
                    result, offset=0, limit=cap, max_chars=self.options.max_value_chars, deadline=float("inf")
                )
            affected = None if action.read_only else max(result.rowcount, 0)
            return affected, page

        affected, page = (self.db.read if action.read_only else self.db.write)(run)
        structured: dict[str, Any] = {
            "action": action.spec.name,
            "affected_rows": affected,
            "columns": page.columns if page else [],
            "rows": page.rows if page else [],
            "notes": page.notes if page else [],
        }
        lines = [] if affected is None else [f"{action.spec.name}: {affected} row(s) affected."]
        if page is not None:
            lines.append(results.page_text(page, pageable=False))
        return structured, "\n".join(lines)


def _key_values(table: sa.Table, key: Any, info: TableInfo) -> dict[sa.Column[Any], Any]:
    pk: Sequence[sa.Column[Any]] = list(table.primary_key.columns)
    if not pk:
        raise ToolError(f"{info.qualified} has no primary key; use query with a WHERE clause instead")
    names = [c.name for c in pk]
    if not isinstance(key, dict):
        if len(pk) > 1:
            raise ToolError(f"{info.qualified} has a composite primary key; give key as an object with {names}")
        key = {pk[0].name: key}
    if sorted(key) != sorted(names):
        raise ToolError(f"the key of {info.qualified} is {names}; got {sorted(key)}")
    return {column: _coerce(column, key[column.name]) for column in pk}


def _coerce(column: sa.Column[Any], value: Any) -> Any:
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return value
    unfit = ToolError(f"the key value {value!r} does not fit column {column.name} ({column.type})"[:300])
    try:
        if isinstance(value, python_type) or value is None:
            coerced = value
        elif python_type is int and isinstance(value, str | float):
            coerced = int(value)
        elif python_type in (float, str):
            coerced = python_type(value)
        elif hasattr(python_type, "fromisoformat") and isinstance(value, str):
            coerced = python_type.fromisoformat(value)
        else:
            coerced = python_type(value)
    except (TypeError, ValueError, OverflowError):
        raise unfit from None
    # No table stores a wider integer; past this range the driver fails instead of finding nothing.
    if isinstance(coerced, int) and not isinstance(coerced, bool) and not INT64_MIN <= coerced <= INT64_MAX:
        raise unfit
    return coerced
