"""``patchbay clients``: the OAuth clients that registered or were configured (list, revoke)."""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from patchbay.cli.common import err
from patchbay.cli.users import ConfigOpt, auth_store, out, when

app = typer.Typer(help="OAuth clients (ChatGPT, Claude, Inspector, ...).", no_args_is_help=True)


@app.command("list")
def list_clients(config: ConfigOpt = None) -> None:
    """List clients: registered dynamically (dcr), by metadata document (cimd), or in the config."""
    from patchbay.auth.clients import Clients

    with auth_store(config) as engine:
        clients = Clients(engine).list()
    table = Table("client_id", "name", "kind", "auth", "redirect URIs", "created", "last token", "status")
    for client in clients:
        table.add_row(
            escape(client.client_id),
            escape(client.name),
            client.kind,
            client.auth_method,
            escape(" ".join(client.redirect_uris)),
            when(client.created_at),
            when(client.last_used_at),
            "revoked" if client.revoked else "active",
        )
    out.print(table)


@app.command("revoke")
def revoke(client_id: str, config: ConfigOpt = None) -> None:
    """Revoke a client and every token it holds; its next token request gets invalid_client."""
    from patchbay.auth.clients import Clients
    from patchbay.auth.grants import Grants

    with auth_store(config) as engine:
        if not Clients(engine).revoke(client_id):
            err.print(f"[bold red]no active client[/] {escape(client_id)}", highlight=False)
            raise typer.Exit(1)
        revoked = Grants(engine).revoke_client(client_id)
    out.print(f"revoked client {escape(client_id)} and {revoked} token(s)")
