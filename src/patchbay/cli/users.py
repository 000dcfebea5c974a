"""``patchbay users``: local accounts for the sign-in page (add, list, disable, enable, unlock).

Also home of ``auth_store``, which the other auth command groups (keys, clients, tokens) use: the settings'
store, migrated to the current schema.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchbay.cli.common import AdminDemoOpt, admin_config, check_store, err, load_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml (its \\[store] table is used)")]
app = typer.Typer(help="Local accounts people sign in with.", no_args_is_help=True)
out = Console()


@contextmanager
def auth_store(config: Path | None) -> Iterator[Engine]:
    """The configured store, migrated; exits with a readable message when it cannot be reached."""
    from sqlalchemy.exc import SQLAlchemyError

    from patchbay.store import create_engine, upgrade

    settings = load_settings(config)
    check_store(settings)
    engine = create_engine(settings.store_url)
    try:
        upgrade(engine)
        yield engine
    except SQLAlchemyError as exc:
        err.print(f"[bold red]store error[/]: {escape(type(exc).__name__)}: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    finally:
        engine.dispose()


def audit_event(config: Path | None, method: str, **fields: Any) -> None:
    """Record the admin action just taken in the audit trail (never a password or a key's secret)."""
    from sqlalchemy.exc import SQLAlchemyError

    from patchbay.gate.audit_store import admin_event

    try:
        admin_event(load_settings(config), method, **fields)
    except SQLAlchemyError as exc:  # the action is done; say loudly that its record is missing
        err.print(f"[bold red]not recorded in the audit trail[/]: {escape(type(exc).__name__)}", highlight=False)
        raise typer.Exit(2) from None


def when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    password: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    return password


@app.command("add")
def add(
    username: Annotated[str, typer.Argument(help="The name people type on the sign-in page")],
    role: Annotated[list[str] | None, typer.Option("--role", "-r", help="A Patchbay role (repeatable)")] = None,
    email: Annotated[str | None, typer.Option(help="E-mail address")] = None,
    name: Annotated[str, typer.Option("--name", help="Display name")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from stdin")] = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """Add a local user (the password is asked for, or read from stdin with --password-stdin)."""
    config = admin_config(config, demo)
    from patchbay.auth.users import Users

    password = _read_password(password_stdin)
    with auth_store(config) as engine:
        try:
            user = Users(engine).add(username, password, roles=role or [], email=email, display_name=name)
        except ValueError as exc:
            err.print(f"[bold red]cannot add user[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    audit_event(config, "users.add", username=user.username, roles=sorted(user.roles), outcome="ok")
    out.print(
        f"added user {escape(user.username)}" + (f" (roles: {', '.join(sorted(user.roles))})" if user.roles else "")
    )


@app.command("list")
def list_users(config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """List users: local and those who signed in through the upstream identity provider."""
    config = admin_config(config, demo)
    from patchbay.auth.users import Users

    with auth_store(config) as engine:
        users = Users(engine).list()
    table = Table("username", "name", "roles", "kind", "status", "created")
    for user in users:
        locked = user.locked_until is not None and user.locked_until > time.time()
        status = "disabled" if user.disabled else ("locked" if locked else "active")
        kind = "federated" if user.federated else "local"
        table.add_row(
            escape(user.username),
            escape(user.display_name),
            " ".join(sorted(user.roles)),
            kind,
            status,
            when(user.created_at),
        )
    out.print(table)


def _set_disabled(username: str, disabled: bool, config: Path | None) -> None:
    from patchbay.auth.grants import Grants
    from patchbay.auth.users import Users

    with auth_store(config) as engine:
        user = Users(engine).set_disabled(username, disabled)
        if user is None:
            err.print(f"[bold red]no such user[/]: {escape(username)}", highlight=False)
            raise typer.Exit(1)
        revoked = Grants(engine).revoke_user(user.id) if disabled else 0
    verb = "disabled" if disabled else "enabled"
    audit_event(config, f"users.{'disable' if disabled else 'enable'}", username=username, outcome="ok")
    out.print(f"{verb} {escape(username)}" + (f"; revoked {revoked} token(s)" if disabled else ""))


@app.command("disable")
def disable(username: str, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Disable a user: no sign-in, and every token they hold stops working."""
    config = admin_config(config, demo)
    _set_disabled(username, True, config)


@app.command("enable")
def enable(username: str, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Enable a disabled user again."""
    config = admin_config(config, demo)
    _set_disabled(username, False, config)


@app.command("unlock")
def unlock(username: str, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Lift a lockout caused by repeated wrong passwords."""
    config = admin_config(config, demo)
    from patchbay.auth.users import Users

    with auth_store(config) as engine:
        if not Users(engine).unlock(username):
            err.print(f"[bold red]no such user[/]: {escape(username)}", highlight=False)
            raise typer.Exit(1)
    out.print(f"unlocked {escape(username)}")
