"""The ``patchbay`` command: a thin layer over the same functions the server uses.

Each command's module is imported when that command runs (or when ``--help`` lists it): ``patchbay serve`` loads
neither the audit trail's queries (SQLAlchemy) nor the tables the admin commands print (rich).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer.core import TyperGroup

if TYPE_CHECKING:
    from typer._click import Command  # typer's own copy of click, which its groups are built on

# name → (module under patchbay.cli, function): the top-level commands, in the order --help lists them.
COMMANDS = {
    "serve": ("serve", "serve"),
    "init": ("init", "init"),
    "tools": ("tools", "tools"),
    "call": ("tools", "call"),
    "index": ("index", "index"),
    "doctor": ("doctor", "doctor"),
}
# name → (module under patchbay.cli, its typer.Typer): the command groups, listed after the commands.
GROUPS = {
    "users": ("users", "app"),
    "keys": ("keys", "app"),
    "clients": ("clients", "app"),
    "tokens": ("tokens", "app"),
    "policy": ("policy", "app"),
    "approvals": ("approvals", "app"),
    "manifest": ("manifest", "app"),
    "audit": ("audit", "app"),
    "links": ("links", "app"),
    "vault": ("links", "vault_app"),
    "store": ("store", "app"),
}


class LazyCommands(TyperGroup):
    """The top-level group: a command in :data:`COMMANDS` or :data:`GROUPS` is built the first time it is asked
    for, exactly as ``app.command(name)`` or ``app.add_typer(group, name=name)`` would have built it."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands(self.commands)


class _Commands(MutableMapping[str, "Command"]):
    """The group's commands by name: every name is listed (help, "did you mean"), a lazy one built when read."""

    def __init__(self, built: MutableMapping[str, Command]) -> None:
        self.built = dict(built)

    def __getitem__(self, name: str) -> Command:
        if name not in self.built and (name in COMMANDS or name in GROUPS):
            self.built[name] = _build(name)
        return self.built[name]

    def __contains__(self, name: object) -> bool:
        return name in self.built or name in COMMANDS or name in GROUPS

    def __setitem__(self, name: str, command: Command) -> None:
        self.built[name] = command

    def __delitem__(self, name: str) -> None:
        del self.built[name]

    def __iter__(self) -> Iterator[str]:
        # The order of --help: the commands, those registered here (version), then the groups.
        yield from COMMANDS
        yield from (name for name in self.built if name not in COMMANDS and name not in GROUPS)
        yield from GROUPS

    def __len__(self) -> int:
        return sum(1 for _ in self)


def _build(name: str) -> Command:
    holder = typer.Typer(add_completion=False)
    if name in COMMANDS:
        module, attribute = COMMANDS[name]
        holder.command(name)(getattr(importlib.import_module(f"patchbay.cli.{module}"), attribute))
        return typer.main.get_command(holder)
    module, attribute = GROUPS[name]
    holder.add_typer(getattr(importlib.import_module(f"patchbay.cli.{module}"), attribute), name=name)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


app = typer.Typer(
    name="patchbay",
    help="Patchbay: your data and tools for ChatGPT, Claude and every MCP client.",
    cls=LazyCommands,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def patchbay() -> None:
    # Only `version` is registered up front: without a callback typer would make the app that single command.
    pass


@app.command("version")
def version() -> None:
    """Print Patchbay's version."""
    from patchbay import __version__

    typer.echo(__version__)


def main() -> None:
    app()
