"""``patchbay store``: the configured store's schema, migrated on its own (a deployment's migration step).

Every server also migrates on start, under the same lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), so
running this first is optional; it lets a rollout fail at its migration Job instead of in every new replica.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from patchbay.cli.common import check_store, err, load_settings

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml (its \\[store] table is used)")]
app = typer.Typer(help="The store's schema: migrate it before a rollout.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(config: ConfigOpt = None) -> None:
    """Migrate the store to this version's schema, once (exit 0 when current; 2 when it cannot be reached)."""
    from sqlalchemy.exc import SQLAlchemyError

    from patchbay.store import create_engine, current_heads, upgrade

    settings = load_settings(config)
    check_store(settings)
    engine = create_engine(settings.store_url)
    try:
        upgrade(engine)
        heads = current_heads(engine)
    except SQLAlchemyError as exc:
        # The driver's message names the host and the user, never the password.
        err.print(f"[bold red]store error[/]: {escape(type(exc).__name__)}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    typer.echo(f"store is current: {', '.join(sorted(heads))}")
