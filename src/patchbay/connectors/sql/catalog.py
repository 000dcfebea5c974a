"""Which tables a connector shows, and what it says about them.

Only tables in the configured schemas that match ``include_tables`` and not ``exclude_tables`` exist as far as
the tools are concerned: ``list_tables`` lists only them, and ``query`` refuses statements naming any other
table. Unqualified names in a query are resolved here and written back qualified, so the database reads exactly
the table that was checked (PostgreSQL would otherwise look in ``pg_catalog`` first).
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlglot import exp

from patchbay.connectors.sql.guard import Refused

COUNT_CAP = 100_000


@dataclass(frozen=True, slots=True)
class TableInfo:
    schema: str
    name: str
    kind: str  # "table" or "view"
    comment: str | None = None

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    def as_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "name": self.name, "type": self.kind, "comment": self.comment}


@dataclass(frozen=True, slots=True)
class Visibility:
    schemas: tuple[str, ...]
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    def allows(self, schema: str, name: str) -> bool:
        if schema not in self.schemas:
            return False
        names = (name.lower(), f"{schema}.{name}".lower())
        if self.include and not any(fnmatch.fnmatchcase(n, p.lower()) for p in self.include for n in names):
            return False
        return not any(fnmatch.fnmatchcase(n, p.lower()) for p in self.exclude for n in names)


def default_schema(conn: Connection) -> str:
    name = sa.inspect(conn).default_schema_name
    return name or "main"


def list_visible(conn: Connection, visibility: Visibility) -> list[TableInfo]:
    inspector = sa.inspect(conn)
    found: list[TableInfo] = []
    for schema in visibility.schemas:
        kinds = [(n, "table") for n in inspector.get_table_names(schema=schema)]
        kinds += [(n, "view") for n in inspector.get_view_names(schema=schema)]
        for name, kind in sorted(kinds):
            if visibility.allows(schema, name):
                found.append(TableInfo(schema, name, kind, _comment(inspector, name, schema)))
    return found


def _comment(inspector: Any, name: str, schema: str) -> str | None:
    try:
        text = inspector.get_table_comment(name, schema=schema).get("text")
    except NotImplementedError:  # SQLite keeps no comments
        return None
    return str(text) if text else None


def find(tables: Sequence[TableInfo], schema: str | None, name: str) -> TableInfo | None:
    """The visible table ``schema.name`` (or ``name`` in the first schema that has it), matching case-insensitively
    only when no exact match exists."""
    candidates = [t for t in tables if schema is None or t.schema == schema]
    exact = [t for t in candidates if t.name == name]
    folded = [t for t in candidates if t.name.lower() == name.lower()]
    found = exact or folded
    return found[0] if found else None


def resolve(tables: Sequence[TableInfo], reference: str) -> TableInfo:
    """``reference`` ("orders" or "sales.orders") as a visible table.

    Raises:
        Refused: no such visible table; the message suggests close names.
    """
    schema, _, name = reference.rpartition(".")
    table = find(tables, schema or None, name)
    if table is None:
        raise Refused(f"no table '{reference}' is available{_suggest(tables, name)}; call list_tables to see them")
    return table


def qualify(tree: exp.Expression, tables: Sequence[TableInfo]) -> None:
    """Check every table ``tree`` names against the visible ones and write each back schema-qualified.

    Raises:
        Refused: naming the first table that is not visible.
    """
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    for node in list(tree.find_all(exp.Table)):
        if not isinstance(node.this, exp.Identifier):
            continue  # a table function (generate_series, json_each …); its calls were checked by the guard
        schema = node.db or None
        if schema is None and node.name.lower() in ctes:
            continue
        if node.catalog:
            raise Refused(f"'{node.sql()}' names another database; only tables from list_tables can be queried")
        table = find(tables, schema, node.name)
        if table is None:
            shown = f"{schema}.{node.name}" if schema else node.name
            raise Refused(
                f"the table '{shown}' is not available to this connector{_suggest(tables, node.name)}; "
                "call list_tables to see the tables you can query"
            )
        node.set("this", exp.to_identifier(table.name, quoted=True))
        node.set("db", exp.to_identifier(table.schema, quoted=True))


def _suggest(tables: Sequence[TableInfo], name: str) -> str:
    close = difflib.get_close_matches(name, [t.name for t in tables], n=3)
    return f" (did you mean {', '.join(close)}?)" if close else ""


def describe(conn: Connection, table: TableInfo) -> dict[str, Any]:
    inspector = sa.inspect(conn)
    pk = inspector.get_pk_constraint(table.name, schema=table.schema).get("constrained_columns") or []
    columns = [
        {
            "name": c["name"],
            "type": str(c["type"]),
            "nullable": bool(c.get("nullable", True)),
            "default": None if c.get("default") is None else str(c["default"]),
            "primary_key": c["name"] in pk,
            "comment": c.get("comment"),
        }
        for c in inspector.get_columns(table.name, schema=table.schema)
    ]
    foreign_keys = [
        {
            "columns": fk["constrained_columns"],
            "references": ".".join(p for p in (fk.get("referred_schema"), fk["referred_table"]) if p),
            "referenced_columns": fk["referred_columns"],
        }
        for fk in inspector.get_foreign_keys(table.name, schema=table.schema)
    ]
    estimate, source = row_estimate(conn, table)
    return {
        "schema": table.schema,
        "name": table.name,
        "type": table.kind,
        "comment": table.comment,
        "columns": columns,
        "primary_key": list(pk),
        "foreign_keys": foreign_keys,
        "row_estimate": estimate,
        "row_estimate_source": source,
    }


def row_estimate(conn: Connection, table: TableInfo) -> tuple[int | None, str]:
    """Planner statistics where the database keeps them, else a count that stops at ``COUNT_CAP``."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        stats = conn.execute(
            sa.text(
                "SELECT c.reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = :schema AND c.relname = :name"
            ),
            {"schema": table.schema, "name": table.name},
        ).scalar()
        if stats is not None and stats >= 0:
            return int(stats), "statistics"
    elif dialect in ("mysql", "mariadb"):
        stats = conn.execute(
            sa.text(
                "SELECT table_rows FROM information_schema.tables WHERE table_schema = :schema AND table_name = :name"
            ),
            {"schema": table.schema, "name": table.name},
        ).scalar()
        if stats is not None:
            return int(stats), "statistics"
    target = sa.table(table.name, schema=table.schema)
    capped = sa.select(sa.literal(1)).select_from(target).limit(COUNT_CAP + 1).subquery()
    count = int(conn.execute(sa.select(sa.func.count()).select_from(capped)).scalar() or 0)
    if count > COUNT_CAP:
        return COUNT_CAP, f"count (at least {COUNT_CAP:,})"
    return count, "count"


def reflect(conn: Connection, table: TableInfo) -> sa.Table:
    return sa.Table(table.name, sa.MetaData(), schema=table.schema, autoload_with=conn)
