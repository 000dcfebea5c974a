"""Input and output JSON schemas of the sql tools (hand-written: names and limits come from config)."""

from __future__ import annotations

from typing import Any

# The range every supported database binds as an integer (SQLite INTEGER, PostgreSQL/MySQL BIGINT); a number
# outside it fails in the driver, so it is refused as an argument instead.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Rows a query may skip: skipped rows are still read (within the statement timeout), and past this many a WHERE
# or ORDER BY ... narrows better than paging.
MAX_OFFSET = 10_000_000

NOTES = {"type": "array", "items": {"type": "string"}, "description": "Anything cut or worth knowing."}
ROWS = {
    "type": "array",
    "items": {"type": "array", "items": {}},
    "description": "One array per row, values in the order of columns; NULL is null.",
}
COLUMNS = {"type": "array", "items": {"type": "string"}}
TABLE_ARG = {
    "type": "string",
    "minLength": 1,
    "maxLength": 300,
    "description": "Table name from list_tables, e.g. 'orders' or 'sales.orders'.",
}


def obj(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


LIST_TABLES_IN = obj({})
LIST_TABLES_OUT = obj(
    {
        "tables": {
            "type": "array",
            "items": obj(
                {
                    "schema": {"type": "string"},
                    "name": {"type": "string"},
                    "type": {"type": "string", "enum": ["table", "view"]},
                    "comment": {"type": ["string", "null"]},
                }
            ),
        }
    }
)

DESCRIBE_IN = obj({"table": TABLE_ARG})
DESCRIBE_OUT = obj(
    {
        "schema": {"type": "string"},
        "name": {"type": "string"},
        "type": {"type": "string"},
        "comment": {"type": ["string", "null"]},
        "columns": {
            "type": "array",
            "items": obj(
                {
                    "name": {"type": "string"},
                    "type": {"type": "string"},
                    "nullable": {"type": "boolean"},
                    "default": {"type": ["string", "null"]},
                    "primary_key": {"type": "boolean"},
                    "comment": {"type": ["string", "null"]},
                }
            ),
        },
        "primary_key": COLUMNS,
        "foreign_keys": {
            "type": "array",
            "items": obj({"columns": COLUMNS, "references": {"type": "string"}, "referenced_columns": COLUMNS}),
        },
        "row_estimate": {"type": ["integer", "null"]},
        "row_estimate_source": {"type": "string"},
    }
)


def query_in(page_size: int, max_rows: int) -> dict[str, Any]:
    return obj(
        {
            "sql": {
                "type": "string",
                "minLength": 1,
                "maxLength": 100_000,
                "description": "One read-only SQL statement (SELECT, WITH … SELECT, UNION, VALUES).",
            },
            "limit": {
                "type": "integer",
                "minimum": 1,
                "maximum": max_rows,
                "default": page_size,
                "description": f"Rows per page (1-{max_rows}, default {page_size}).",
            },
            "offset": {
                "type": "integer",
                "minimum": 0,
                "maximum": MAX_OFFSET,
                "default": 0,
                "description": f"Rows to skip (0-{MAX_OFFSET:,}); pass next_offset from the previous page.",
            },
        },
        required=["sql"],
    )


PAGE_OUT = obj(
    {
        "columns": COLUMNS,
        "rows": ROWS,
        "row_count": {"type": "integer", "description": "Rows in this page."},
        "truncated": {"type": "boolean", "description": "More rows follow; fetch them with next_offset."},
        "next_offset": {"type": ["integer", "null"]},
        "notes": NOTES,
    }
)

FETCH_IN = obj(
    {
        "table": TABLE_ARG,
        "key": {
            "type": ["string", "integer", "number", "object"],
            "description": "The primary key value, or an object {column: value} for a composite key.",
        },
    }
)
FETCH_OUT = obj(
    {
        "table": {"type": "string"},
        "key": {"type": "object"},
        "found": {"type": "boolean"},
        "record": {"type": ["object", "null"]},
        "notes": NOTES,
    }
)

ACTION_OUT = obj(
    {
        "action": {"type": "string"},
        "affected_rows": {"type": ["integer", "null"], "description": "Rows the statement changed."},
        "columns": COLUMNS,
        "rows": ROWS,
        "notes": NOTES,
    }
)
