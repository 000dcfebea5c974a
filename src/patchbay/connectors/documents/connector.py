"""``type = "documents"``: folders of files and SQL tables, searchable with ChatGPT-compatible search and fetch.

The index lives in its own SQLite file beside Patchbay's store. ``open()`` brings it up to date
(incrementally) before the server answers, and, with ``watch_seconds``, a background task re-indexes on that
interval. Indexing runs on a worker thread, and SQLite's WAL lets searches go on while it writes. With
``ranking = "hybrid"`` the embedding model is loaded when the index is opened (hybrid.py, embeddings.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import anyio.to_thread

from patchbay.connectors.base import ConnectorEnv, Health
from patchbay.connectors.documents.index import Index
from patchbay.connectors.documents.ingest import Indexer, Progress, Report, SourceError
from patchbay.connectors.documents.options import DocumentsOptions
from patchbay.connectors.documents.tools import DocumentTools, build_template, build_tools, search_description
from patchbay.definitions import Prompt, Resource, ResourceTemplate, Tool
from patchbay.errors import ConnectorError

if TYPE_CHECKING:
    from patchbay.connectors.documents.hybrid import HybridSearch

log = logging.getLogger("patchbay.documents")


def index_path(name: str, options: DocumentsOptions, env: ConnectorEnv) -> Path:
    """Where the index file is: ``options.index``, else beside a SQLite store, else in the config's folder."""
    if options.index:
        return (env.base_dir / options.index).resolve()
    prefix = "sqlite:///"
    store = env.store_url
    if store.startswith(prefix) and ":memory:" not in store:
        db = Path(store[len(prefix) :])
        return db.with_name(f"{db.stem}.documents-{name}.sqlite")
    return (env.base_dir / f"patchbay.documents-{name}.sqlite").resolve()


class DocumentsConnector:
    Options = DocumentsOptions

    def __init__(self, name: str, options: DocumentsOptions, env: ConnectorEnv) -> None:
        self.name = name
        self.options = options
        self.env = env
        self.index_file = index_path(name, options, env)
        self._index: Index | None = None
        self._indexer: Indexer | None = None
        self._hybrid: HybridSearch | None = None
        self._tools: list[Tool] = []
        self._templates: list[ResourceTemplate] = []
        self._watch: asyncio.Task[None] | None = None
        self.last_report: Report | None = None

    def open_index(self) -> Indexer:
        """Open (or create) the index without indexing, and load the embedding model for hybrid ranking; used by
        ``open`` and by ``patchbay index``. Blocks (the model takes seconds to load): call it off the event loop.

        Raises:
            ConnectorError: the index file cannot be created or opened, or the embedding model cannot be loaded.
        """
        try:
            self._index = Index(self.index_file)
        except Exception as exc:  # sqlite3.Error or OSError: say where, and what to check
            raise ConnectorError(
                f"connector '{self.name}': cannot open the index {self.index_file}: {exc}. "
                "Check that its folder exists and is writable, or set 'index' to another path."
            ) from None
        self._indexer = Indexer(
            self._index, self.options, base_dir=self.env.base_dir, store_url=self.env.store_url, connector=self.name
        )
        if self.options.ranking == "hybrid":
            self._load_hybrid(self._index, self._indexer)
        return self._indexer

    def _load_hybrid(self, index: Index, indexer: Indexer) -> None:
        from patchbay.connectors.documents import embeddings
        from patchbay.connectors.documents.hybrid import HybridSearch, PassageEmbedder

        try:
            embedder = embeddings.load()
        except ConnectorError as exc:
            self.close_index()
            raise ConnectorError(f"connector '{self.name}' (ranking = \"hybrid\"): {exc}") from None
        self._hybrid = HybridSearch(index, embedder)
        indexer.embedding = PassageEmbedder(embedder)

    def close_index(self) -> None:
        if self._index is not None:
            self._index.close()
            self._index = None
        self._hybrid = None

    def reindex(self, progress: Progress | None = None, *, strict: bool = False) -> Report:
        """One incremental indexing run, synchronously (call it from a worker thread)."""
        assert self._indexer is not None, "open_index() first"
        report = self._indexer.run(progress, strict=strict)
        self.last_report = report
        return report

    async def open(self) -> None:
        """Open the index, bring it up to date, build the tools, and start watching if configured.

        Raises:
            ConnectorError: the index cannot be opened, or a source cannot be read (missing folder, failing query).
        """
        await anyio.to_thread.run_sync(self.open_index)
        assert self._index is not None
        if self.options.index_on_start:
            try:
                report = await anyio.to_thread.run_sync(lambda: self.reindex(strict=True))
            except SourceError as exc:
                self.close_index()
                raise ConnectorError(str(exc)) from None
            log.info("documents '%s': %s (%d documents)", self.name, report.summary(), self._index.count())
        handlers = DocumentTools(
            self._index,
            page_size=self.options.max_results,
            max_chars=self.options.max_fetch_chars,
            hybrid=self._hybrid,
        )
        description = self.options.description or search_description(self.name)
        self._tools = build_tools(handlers, title=self.options.title, description=description)
        self._templates = [build_template(handlers, self.name)]
        if self.options.watch_seconds > 0:
            self._watch = asyncio.create_task(self._watch_loop(), name=f"documents-watch-{self.name}")

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.watch_seconds)
            try:
                report = await anyio.to_thread.run_sync(self.reindex, abandon_on_cancel=True)
            except Exception:
                log.exception(
                    "documents '%s': re-indexing failed; trying again in %s s", self.name, self.options.watch_seconds
                )
                continue
            if report.added or report.updated or report.removed:
                log.info("documents '%s': %s", self.name, report.summary())

    def tools(self) -> Sequence[Tool]:
        return self._tools

    def resources(self) -> Sequence[Resource]:
        return ()

    def resource_templates(self) -> Sequence[ResourceTemplate]:
        return self._templates

    def prompts(self) -> Sequence[Prompt]:
        return ()

    async def health(self) -> Health:
        if self._index is None:
            return Health(False, "not open")
        try:
            count = await anyio.to_thread.run_sync(self._index.count)
        except Exception as exc:  # sqlite3.Error: the file went away or is corrupt
            return Health(False, f"index unreadable: {exc.__class__.__name__}")
        detail = f"{count} documents"
        if self.last_report is not None and self.last_report.skipped:
            detail += f", {self.last_report.skipped} files skipped"
        return Health(True, detail)

    async def close(self) -> None:
        if self._indexer is not None:
            self._indexer.stop.set()  # an indexing run in a thread stops after its current file
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._indexer is not None:
            # Wait for a running indexing thread to let go of the index before closing it.
            await anyio.to_thread.run_sync(self._indexer.wait_idle)
        self.close_index()
