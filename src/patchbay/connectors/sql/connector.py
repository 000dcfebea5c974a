"""``type = "sql"``: a database as tools. Reads are free-form but enforced read-only; writes are declared actions.

Tools: ``list_tables``, ``describe_table``, ``query`` (one read-only statement), ``fetch_record`` (by primary key),
and one tool per ``[[connectors.actions]]`` entry. Database work runs in worker threads, off the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio.to_thread
from sqlalchemy.engine import URL

from patchbay.connectors.base import ConnectorEnv, Health
from patchbay.connectors.sql import schemas
from patchbay.connectors.sql.actions import Action, input_schema, prepare
from patchbay.connectors.sql.catalog import Visibility, default_schema
from patchbay.connectors.sql.database import Database
from patchbay.connectors.sql.demo_crm import ensure_crm
from patchbay.connectors.sql.options import SqlOptions, resolve_url
from patchbay.connectors.sql.service import Output, SqlService
from patchbay.context import Context
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool, ToolAnnotations, ToolResult
from patchbay.errors import ConfigError, ConnectorError, ToolError

READ = ToolAnnotations(read_only=True, destructive=False, idempotent=True, open_world=False)
Handler = Callable[[dict[str, Any], Context], Awaitable[ToolResult]]


class SqlConnector:
    Options = SqlOptions

    def __init__(self, name: str, options: SqlOptions, env: ConnectorEnv) -> None:
        self.name = name
        self.options = options
        self.env = env
        self._db: Database | None = None
        self._service: SqlService | None = None
        self._tools: list[Tool] = []

    async def open(self) -> None:
        """Resolve the URL, check every action, connect, and list the visible tables.

        Raises:
            ConfigError: the URL, a secret or an action is invalid, or the driver is not installed: retrying
                cannot help, so the server refuses to start.
            ConnectorError: the database is unreachable, or its SQLite file does not exist (yet): the connector
                is down and retried. Neither message shows the password.
        """
        where = f"connector '{self.name}'"
        url = resolve_url(self.options, self.env.base_dir)
        if self.options.sample_data:
            await anyio.to_thread.run_sync(_sample, url)
        try:
            db = Database(url, self.options)  # builds engines only: a failure here is the URL, not the network
        except ConnectorError as exc:
            raise ConfigError(f"url: {exc}", key="url") from None
        actions = self._prepare_actions(db.dialect)
        if db.backend == "sqlite":
            _require_file(self.name, url)
        try:
            schema = await anyio.to_thread.run_sync(db.read, default_schema)
            visibility = Visibility(
                tuple(self.options.schemas or [schema]),
                tuple(self.options.include_tables),
                tuple(self.options.exclude_tables),
            )
            service = SqlService(db, self.options, visibility)
            await anyio.to_thread.run_sync(service.refresh)
        except ToolError as exc:
            db.dispose()
            raise ConnectorError(f"{where}: cannot open {db.where}: {exc.message}") from None
        self._db, self._service = db, service
        self._tools = [*self._read_tools(service), *(self._action_tool(service, a) for a in actions)]

    def _prepare_actions(self, dialect: str) -> list[Action]:
        prepared = []
        for index, spec in enumerate(self.options.actions):
            try:
                prepared.append(prepare(spec, dialect))
            except ValueError as exc:
                raise ConfigError(f"actions[{spec.name}]: {exc}", key=f"actions[{index}]") from None
        return prepared

    def _read_tools(self, service: SqlService) -> list[Tool]:
        o = self.options
        return [
            Tool(
                name="list_tables",
                title="List tables",
                description="List the database tables and views you can read, with their comments; call this first.",
                input_schema=schemas.LIST_TABLES_IN,
                output_schema=schemas.LIST_TABLES_OUT,
                annotations=READ,
                handler=_handler(lambda args: service.list_tables()),
            ),
            Tool(
                name="describe_table",
                title="Describe table",
                description=(
                    "Show a table's columns (types, nullability, comments), primary and foreign keys and an estimate "
                    "of its row count; use it before writing a query."
                ),
                input_schema=schemas.DESCRIBE_IN,
                output_schema=schemas.DESCRIBE_OUT,
                annotations=READ,
                handler=_handler(lambda args: service.describe_table(_text(args, "table", 300))),
            ),
            Tool(
                name="query",
                title="Run a read-only SQL query",
                description=(
                    f"Run one read-only SQL statement (SELECT, WITH … SELECT, UNION or VALUES; "
                    f"{service.db.dialect} dialect) and get rows back, {o.page_size} per page by default, at most "
                    f"{o.max_rows}; page with offset/next_offset. Writes, several statements, and side-effecting "
                    f"functions are refused; it stops after {o.statement_timeout_ms} ms."
                ),
                input_schema=schemas.query_in(o.page_size, o.max_rows),
                output_schema=schemas.PAGE_OUT,
                annotations=READ,
                handler=_handler(
                    lambda args: service.query(
                        _text(args, "sql", 100_000),
                        _int(args, "limit", o.page_size, 1, o.max_rows),
                        _int(args, "offset", 0, 0, schemas.MAX_OFFSET),
                    )
                ),
            ),
            Tool(
                name="fetch_record",
                title="Fetch a record",
                description="Get one row of a table by its primary key (an object {column: value} for composite keys).",
                input_schema=schemas.FETCH_IN,
                output_schema=schemas.FETCH_OUT,
                annotations=READ,
                handler=_handler(lambda args: service.fetch_record(_text(args, "table", 300), _key(args))),
            ),
        ]

    def _action_tool(self, service: SqlService, action: Action) -> Tool:
        spec = action.spec
        annotations = (
            READ
            if action.read_only
            else ToolAnnotations(
                read_only=False, destructive=action.destructive, idempotent=spec.idempotent, open_world=False
            )
        )
        return Tool(
            name=spec.name,
            title=spec.title or spec.name.replace("_", " ").capitalize(),
            description=spec.description,
            input_schema=input_schema(spec),
            output_schema=schemas.ACTION_OUT,
            annotations=annotations,
            handler=_handler(lambda args: service.run_action(action, args)),
        )

    def tools(self) -> Sequence[Tool]:
        return self._tools

    def resources(self) -> Sequence[Resource]:
        return ()

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return ()

    def prompts(self) -> Sequence[Prompt]:
        return ()

    async def health(self) -> Health:
        if self._db is None:
            return Health(False, "not open")
        try:
            await anyio.to_thread.run_sync(self._db.ping)
        except ToolError as exc:
            return Health(False, exc.message)
        return Health(True)

    async def close(self) -> None:
        if self._db is not None:
            self._db.dispose()
            self._db = None


def _sample(url: URL) -> None:
    if url.get_backend_name() != "sqlite" or not url.database:
        raise ConfigError("sample_data needs a SQLite file URL, e.g. sqlite:///crm.db", key="sample_data")
    ensure_crm(Path(url.database))


def _require_file(name: str, url: URL) -> None:
    """A missing SQLite file is a source that is not there *yet* (a restore, a mount, a nightly export): the
    connector is down and retried rather than the server refused. It is opened read-only and never created.

    Raises:
        ConnectorError: the file does not exist or is not a file.
    """
    path = Path(url.database or "")
    if path.is_file():
        return
    state = "is not a file" if path.exists() else "does not exist"
    raise ConnectorError(
        f"connector '{name}': the SQLite file {path} (connectors[{name}].url) {state}; it is opened read-only "
        "and never created: create or restore it, or correct the path"
    )


def _handler(work: Callable[[dict[str, Any]], Output]) -> Handler:
    async def handle(arguments: dict[str, Any], ctx: Context) -> ToolResult:
        structured, text = await anyio.to_thread.run_sync(work, arguments)
        return ToolResult([{"type": "text", "text": text}], structured=structured)

    return handle


def _text(args: dict[str, Any], name: str, max_length: int) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ToolError(f"Invalid arguments: '{name}' is required and must be a non-empty string")
    if len(value) > max_length:
        raise ToolError(f"Invalid arguments: '{name}' is longer than {max_length:,} characters")
    return value


def _int(args: dict[str, Any], name: str, default: int, low: int, high: int | None) -> int:
    raw = args.get(name, default)
    if raw is None:
        return default
    value = int(raw) if isinstance(raw, float) and raw.is_integer() else raw
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high is not None and value > high):
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer of at least {low}"
        raise ToolError(f"Invalid arguments: '{name}' must be {allowed}; got {raw!r}"[:300])
    return value


def _key(args: dict[str, Any]) -> Any:
    if "key" not in args or args["key"] is None or isinstance(args["key"], bool | list):
        raise ToolError("Invalid arguments: 'key' is required: the primary key value, or {column: value}")
    return args["key"]
