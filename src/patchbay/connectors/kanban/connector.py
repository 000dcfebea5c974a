"""``type = "kanban"``: a small Kanban board in a database, the demo every Patchbay install can run.

It shows what a well-behaved connector looks like to ChatGPT and Claude: read tools and write tools with
explicit annotations, structured output, precise errors, and one transaction per write.
"""

from __future__ import annotations

from collections.abc import Sequence

import anyio.to_thread
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from patchbay.connectors.base import ConnectorEnv, ConnectorOptions, Health
from patchbay.connectors.kanban.repository import KanbanRepository
from patchbay.connectors.kanban.seed import sample_rows
from patchbay.connectors.kanban.tools import build_tools
from patchbay.connectors.lifecycle import redact
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConfigError, ConnectorError
from patchbay.store import create_engine, resolve_url, upgrade

# Only the kanban tables: with `database` pointing elsewhere, the rest of Patchbay's schema stays out of it.
MIGRATION_TARGET = "kanban@head"


class KanbanOptions(ConnectorOptions):
    seed: bool = False
    """Add a sample board ("Product launch", eight cards) when the database has no boards."""
    database: str | None = None
    """A SQLAlchemy URL for the boards; default: Patchbay's own store. Relative SQLite paths are relative to
    the config file."""


class KanbanConnector:
    Options = KanbanOptions

    def __init__(self, name: str, options: KanbanOptions, env: ConnectorEnv) -> None:
        self.name = name
        self.options = options
        self.env = env
        self._engine: Engine | None = None
        self._tools: list[Tool] = []

    async def open(self) -> None:
        """Migrate the kanban tables, seed if asked, and build the tools.

        Raises:
            ConfigError: the database URL is invalid (the server refuses to start).
            ConnectorError: the database cannot be opened or migrated (the connector is down and retried).
        """
        try:
            engine = create_engine(resolve_url(self.options.database or self.env.store_url, self.env.base_dir))
        except (SQLAlchemyError, ValueError) as exc:
            raise ConfigError(f"database: invalid database URL: {redact(str(exc))}", key="database") from None
        repo = KanbanRepository(engine)
        try:
            await anyio.to_thread.run_sync(self._prepare, engine, repo)
        except SQLAlchemyError as exc:
            engine.dispose()
            where = engine.url.render_as_string(hide_password=True)
            raise ConnectorError(
                f"connector '{self.name}': cannot open the database {where}: {exc.__class__.__name__}: "
                f"{getattr(exc, 'orig', None) or exc}. Check the URL and that its folder exists and is writable."
            ) from None
        self._engine = engine
        self._tools = build_tools(repo)

    def _prepare(self, engine: Engine, repo: KanbanRepository) -> None:
        upgrade(engine, MIGRATION_TARGET)
        if self.options.seed:
            repo.seed_if_empty(sample_rows())

    def tools(self) -> Sequence[Tool]:
        return self._tools

    def resources(self) -> Sequence[Resource]:
        return ()

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return ()

    def prompts(self) -> Sequence[Prompt]:
        return ()

    async def health(self) -> Health:
        if self._engine is None:
            return Health(False, "not open")
        try:
            await anyio.to_thread.run_sync(KanbanRepository(self._engine).ping)
        except SQLAlchemyError as exc:
            return Health(False, f"database unreachable: {exc.__class__.__name__}")
        return Health(True)

    async def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
