"""``patchbay keys``: static API keys for scripts and API connectors (create, list, revoke)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from patchbay.cli.common import err
from patchbay.cli.users import ConfigOpt, audit_event, auth_store, out, when

app = typer.Typer(
    help="API keys for scripts, the OpenAI Responses API and the Anthropic MCP connector.", no_args_is_help=True
)


@app.command("create")
def create(
    name: Annotated[str, typer.Option("--name", help="A name to tell the key apart, e.g. ci")],
    scopes: Annotated[str, typer.Option("--scopes", help="Space- or comma-separated scopes")] = "mcp",
    role: Annotated[list[str] | None, typer.Option("--role", "-r", help="A Patchbay role (repeatable)")] = None,
    days: Annotated[float | None, typer.Option(help="Expire after this many days (default: never)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Create a key and print it once: it is stored only as a hash and cannot be shown again."""
    from patchbay.auth.keys import ApiKeys

    wanted = [s for s in scopes.replace(",", " ").split() if s]
    with auth_store(config) as engine:
        try:
            _, secret = ApiKeys(engine).create(name, wanted, role or [], days)
        except ValueError as exc:
            err.print(f"[bold red]cannot create key[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    audit_event(config, "keys.create", key_name=name, scopes=wanted, roles=role or [], outcome="ok")  # no secret
    err.print(f"Created key {escape(name)} (scopes: {' '.join(wanted) or '-'}). Store it now; it is not shown again:")
    typer.echo(secret)


@app.command("list")
def list_keys(config: ConfigOpt = None) -> None:
    """List keys (never the keys themselves)."""
    from patchbay.auth.keys import ApiKeys

    with auth_store(config) as engine:
        keys = ApiKeys(engine).list()
    table = Table("name", "starts with", "scopes", "created", "last used", "expires", "status")
    for key in keys:
        table.add_row(
            escape(key.name),
            key.hint + "…",
            " ".join(key.scopes),
            when(key.created_at),
            when(key.last_used_at),
            when(key.expires_at),
            "revoked" if key.revoked else "active",
        )
    out.print(table)


@app.command("revoke")
def revoke(name: str, config: ConfigOpt = None) -> None:
    """Revoke a key: every server refuses it from its next request on."""
    from patchbay.auth.keys import ApiKeys

    with auth_store(config) as engine:
        if not ApiKeys(engine).revoke(name):
            err.print(f"[bold red]no active key named[/] {escape(name)}", highlight=False)
            raise typer.Exit(1)
    audit_event(config, "keys.revoke", key_name=name, outcome="ok")
    out.print(f"revoked key {escape(name)}")
