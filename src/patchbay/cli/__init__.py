"""The ``patchbay`` command: a thin layer over the same functions the server uses."""

from __future__ import annotations

import typer

from patchbay.cli import approvals as approvals_cmd
from patchbay.cli import audit as audit_cmd
from patchbay.cli import clients as clients_cmd
from patchbay.cli import doctor as doctor_cmd
from patchbay.cli import index as index_cmd
from patchbay.cli import init as init_cmd
from patchbay.cli import keys as keys_cmd
from patchbay.cli import links as links_cmd
from patchbay.cli import manifest as manifest_cmd
from patchbay.cli import policy as policy_cmd
from patchbay.cli import serve as serve_cmd
from patchbay.cli import store as store_cmd
from patchbay.cli import tokens as tokens_cmd
from patchbay.cli import tools as tools_cmd
from patchbay.cli import users as users_cmd

app = typer.Typer(
    name="patchbay",
    help="Patchbay: your data and tools for ChatGPT, Claude and every MCP client.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve_cmd.serve)
app.command("init")(init_cmd.init)
app.command("tools")(tools_cmd.tools)
app.command("call")(tools_cmd.call)
app.command("index")(index_cmd.index)
app.command("doctor")(doctor_cmd.doctor)
app.add_typer(users_cmd.app, name="users")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(clients_cmd.app, name="clients")
app.add_typer(tokens_cmd.app, name="tokens")
app.add_typer(policy_cmd.app, name="policy")
app.add_typer(approvals_cmd.app, name="approvals")
app.add_typer(manifest_cmd.app, name="manifest")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(links_cmd.app, name="links")
app.add_typer(links_cmd.vault_app, name="vault")
app.add_typer(store_cmd.app, name="store")


@app.command("version")
def version() -> None:
    """Print Patchbay's version."""
    from patchbay import __version__

    typer.echo(__version__)


def main() -> None:
    app()
