"""``patchbay tokens``: revoke the tokens a person holds (and, optionally, their remembered consents)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from patchbay.cli.common import err
from patchbay.cli.users import ConfigOpt, auth_store, out

app = typer.Typer(help="Access and refresh tokens.", no_args_is_help=True)


@app.command("revoke")
def revoke(
    user: Annotated[str, typer.Option("--user", help="Revoke every token this user holds")],
    consents: Annotated[bool, typer.Option("--consents", help="Also forget the consents they gave")] = False,
    config: ConfigOpt = None,
) -> None:
    """Revoke a user's tokens: their clients must sign in again."""
    from patchbay.auth.grants import Grants
    from patchbay.auth.users import Users

    with auth_store(config) as engine:
        found = Users(engine).by_name(user)
        if found is None:
            err.print(f"[bold red]no such user[/]: {escape(user)}", highlight=False)
            raise typer.Exit(1)
        grants = Grants(engine)
        count = grants.revoke_user(found.id)
        forgotten = grants.forget_consent(found.id) if consents else 0
    out.print(f"revoked {count} token(s) of {escape(user)}" + (f"; forgot {forgotten} consent(s)" if consents else ""))
