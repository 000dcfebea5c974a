"""``patchbay index``: bring every documents connector's search index up to date, with a progress bar."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeRemainingColumn
from rich.table import Table

from patchbay.cli.common import check_store, err, load_settings
from patchbay.errors import ConfigError, ConnectorError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml")]
DemoOpt = Annotated[bool, typer.Option("--demo", help="Use the built-in demo connectors")]
OnlyOpt = Annotated[list[str] | None, typer.Option("--connector", help="Only this documents connector (repeatable)")]


class _Bar:
    """Adapts rich's Progress to the indexer's progress protocol (totals grow as each source is listed)."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress = progress
        self.task = task
        self.total = 0

    def add_total(self, count: int) -> None:
        self.total += count
        self.progress.update(self.task, total=self.total)

    def advance(self, label: str) -> None:
        self.progress.update(self.task, advance=1, current=label[-60:])


def index(config: ConfigOpt = None, demo: DemoOpt = False, connector: OnlyOpt = None) -> None:
    """Index the documents connectors' sources now (incremental: only changed files are read again)."""
    from patchbay.app import build_connectors
    from patchbay.connectors.documents import DocumentsConnector
    from patchbay.connectors.documents.ingest import SourceError

    settings = load_settings(config, demo=demo)
    check_store(settings)
    try:
        chosen: list[DocumentsConnector] = []
        for built in build_connectors(settings):
            if isinstance(built, DocumentsConnector):
                chosen.append(built)
    except ConfigError as exc:
        err.print(f"[bold red]config error[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if connector:
        unknown = sorted(set(connector) - {c.name for c in chosen})
        if unknown:
            names = ", ".join(c.name for c in chosen) or "none"
            err.print(f"[bold red]no documents connector named[/] {escape(', '.join(unknown))} (have: {names})")
            raise typer.Exit(2)
        chosen = [c for c in chosen if c.name in connector]
    if not chosen:
        err.print("no documents connectors in this configuration: nothing to index")
        raise typer.Exit(0)
    out = Console(stderr=True)
    failed = False
    for documents in chosen:
        try:
            documents.open_index()
            with Progress(
                TextColumn(f"[bold]{escape(documents.name)}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[current]}", style="dim"),
                console=out,
                transient=False,
            ) as progress:
                task = progress.add_task("index", total=None, current="")
                report = documents.reindex(_Bar(progress, task), strict=True)
        except (ConnectorError, SourceError) as exc:
            err.print(f"[bold red]cannot index[/] {escape(documents.name)}: {escape(str(exc))}", highlight=False)
            failed = True
            continue
        finally:
            documents.close_index()
        out.print(
            f"{escape(documents.name)}: {escape(report.summary())}; index {documents.index_file}", highlight=False
        )
        if report.skipped_files:
            table = Table(title=f"{len(report.skipped_files)} files skipped")
            for column in ("source", "file", "reason"):
                table.add_column(column)
            for source, path, reason in report.skipped_files:
                table.add_row(escape(source), escape(path), escape(reason))
            out.print(table)
    if failed:
        raise typer.Exit(2)
