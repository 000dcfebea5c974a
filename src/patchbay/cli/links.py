"""``patchbay links``: accounts people linked at upstream systems (list, revoke), and ``patchbay vault rotate``.

Revoking forgets the sealed tokens in the store and raises the store's revocation generation, so a running server
(which keeps opened tokens in memory briefly) stops using them on its next call and asks the person to link again.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchbay.cli.common import err, load_settings
from patchbay.cli.users import audit_event, auth_store, when

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml (its \\[store] table is used)")]
app = typer.Typer(help="Accounts people linked at upstream systems (user_oauth).", no_args_is_help=True)
vault_app = typer.Typer(help="The keys that seal secrets at rest.", no_args_is_help=True)
out = Console()


def _subject(user: str) -> str:
    return user if ":" in user else f"user:{user}"


@app.command("list")
def list_links(
    user: Annotated[str | None, typer.Option("--user", help="Only this person (name or user:<name>)")] = None,
    connector: Annotated[str | None, typer.Option("--connector", help="Only this connector")] = None,
    config: ConfigOpt = None,
) -> None:
    """List linked accounts (never their tokens)."""
    from patchbay.links.store import LinkStore
    from patchbay.vault import Vault

    with auth_store(config) as engine:
        # Listing opens no sealed value: a throwaway key keeps this command free of the configured one.
        accounts = LinkStore(engine, Vault.ephemeral()).accounts(_subject(user) if user else None, connector)
    table = Table("user", "connector", "issuer", "scopes", "token expires", "refreshable", "linked")
    for account in accounts:
        table.add_row(
            escape(account.subject),
            escape(account.connector),
            escape(account.issuer),
            escape(account.scopes or "-"),
            when(account.expires_at),
            "yes" if account.refreshable else "no",
            when(account.created_at),
        )
    out.print(table if accounts else "No linked accounts.")


@app.command("revoke")
def revoke(
    user: Annotated[str, typer.Option("--user", help="The person (name or user:<name>)")],
    connector: Annotated[str | None, typer.Option("--connector", help="Only this connector (default: all)")] = None,
    config: ConfigOpt = None,
) -> None:
    """Forget a person's linked accounts; they are asked to link again on their next call."""
    from patchbay.links.store import LinkStore
    from patchbay.vault import Vault

    subject = _subject(user)
    with auth_store(config) as engine:
        removed = LinkStore(engine, Vault.ephemeral()).remove_accounts(subject, connector)
    if not removed:
        err.print(f"no linked account for {escape(subject)}{f' at {escape(connector)}' if connector else ''}")
        raise typer.Exit(1)
    for name in removed:
        audit_event(config, "links.unlink", connector=name, subject=subject, by="cli", outcome="ok")
    out.print(f"Removed {escape(subject)}'s link to {escape(', '.join(removed))}.")


@vault_app.command("rotate")
def rotate(config: ConfigOpt = None) -> None:
    """Seal every stored secret (linked accounts, client secrets, held calls' arguments) again with the first of
    [vault] keys (after adding a new key in front)."""
    from patchbay.errors import ConfigError
    from patchbay.gate.approval_store import ApprovalStore
    from patchbay.links.store import LinkStore
    from patchbay.vault import Vault, VaultError

    settings = load_settings(config)
    try:
        vault = Vault.from_settings(settings)
    except ConfigError as exc:
        err.print(escape(str(exc)))
        raise typer.Exit(2) from None
    with auth_store(config) as engine:
        count = 0
        # Each store re-seals in one transaction; a value that does not open leaves its store as it was (values
        # already re-sealed in the other open with the first key, so running rotate again is safe).
        for what, store in (
            ("linked accounts", LinkStore(engine, vault)),
            ("held calls", ApprovalStore(engine, vault=vault)),
        ):
            try:
                count += store.reseal()
            except VaultError as exc:
                err.print(
                    f"[bold red]cannot re-seal {what}[/]: {escape(str(exc))}; they were not changed", highlight=False
                )
                raise typer.Exit(1) from None
    audit_event(config, "vault.rotate", key_id=vault.primary, resealed=count, outcome="ok")
    out.print(f"Re-sealed {count} secret(s) with key {vault.primary}.")
