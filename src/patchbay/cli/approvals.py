"""``patchbay approvals``: held calls waiting for a person (list, show, approve, deny).

Whoever can run this command against the store decides like an approver on the approval page, and sees the held
arguments as the page shows them (secrets redacted; the sealed originals are opened only to run the call);
``--by`` names them in the record (default: ``cli:<login name>``). The server checks the tool's definition again
when the call is redeemed, so approving here a call whose tool changed since still never runs it.
"""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from patchbay.cli.common import AdminDemoOpt, admin_config, err, load_settings
from patchbay.cli.users import audit_event, auth_store, when

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml (its \\[store] table is used)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides, for the record (default: cli:<login name>)")]
app = typer.Typer(help="Tool calls held for a person's approval.", no_args_is_help=True)
out = Console()


def _default_by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no login name in a container without a passwd entry
        return "cli"


@app.command("list")
def list_approvals(
    include_all: Annotated[bool, typer.Option("--all", help="Every approval, not only pending ones")] = False,
    config: ConfigOpt = None,
    demo: AdminDemoOpt = False,
) -> None:
    """List approval requests waiting for a decision (newest first)."""
    config = admin_config(config, demo)
    from patchbay.gate.approval_store import ApprovalStore

    with auth_store(config) as engine:
        approvals = ApprovalStore(engine).list(include_all=include_all)
    # The id is typed back into `approvals approve`: never wrapped.
    table = Table(
        Column("id", no_wrap=True, min_width=22), "status", "tool", "caller", "client", "requested", "expires"
    )
    for approval in approvals:
        table.add_row(
            approval.id,
            approval.status,
            escape(approval.tool),
            escape(approval.username or approval.subject),
            escape(approval.client_name or approval.client_id or "-"),
            when(approval.created_at),
            when(approval.expires_at),
        )
    out.print(table)


@app.command("show")
def show(approval_id: str, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Show one approval request, with the arguments that would run (secrets shown as [redacted])."""
    config = admin_config(config, demo)
    from patchbay.gate.approval_store import ApprovalStore, hidden_note, redactor

    redact = redactor(load_settings(config).audit.redact_fields)
    with auth_store(config) as engine:
        approval = ApprovalStore(engine, redact=redact).get(approval_id)
    if approval is None:
        err.print(f"[bold red]no such approval[/]: {escape(approval_id)}", highlight=False)
        raise typer.Exit(1)
    rows = [
        ("id", approval.id),
        ("status", approval.status),
        ("tool", approval.tool),
        ("why", approval.reason or approval.rule),
        ("caller", approval.username or approval.subject),
        ("client", approval.client_name or approval.client_id or "-"),
        ("requested", when(approval.created_at)),
        ("expires", when(approval.expires_at)),
        ("approved by", ", ".join(approval.approved_by) or "-"),
        ("decided by", approval.decided_by or "-"),
    ]
    for key, value in rows:
        out.print(f"[bold]{key}[/]: {escape(value)}", highlight=False)
    arguments = orjson.dumps(approval.shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
    out.print("[bold]arguments[/]:", highlight=False)
    out.print(escape(arguments), highlight=False)
    if approval.hidden:
        out.print(escape(hidden_note(approval.hidden)), highlight=False)


@app.command("approve")
def approve(approval_id: str, by: ByOpt = None, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Approve a held call: the caller's next identical call runs it, once."""
    config = admin_config(config, demo)
    from patchbay.gate.approval_store import ApprovalRefused, ApprovalStore

    settings = load_settings(config).approvals
    who = by or _default_by()
    with auth_store(config) as engine:
        store = ApprovalStore(engine)
        found = store.get(approval_id)
        if found is not None and not settings.allow_self_approval and who in (found.username, found.subject):
            err.print(
                f"[bold red]cannot approve[/]: {escape(who)} made this call; another approver must approve it "
                "(\\[approvals] allow_self_approval)",
                highlight=False,
            )
            raise typer.Exit(1)
        try:
            done = store.approve(approval_id, who, settings.required_approvals)
        except ApprovalRefused as exc:
            err.print(f"[bold red]cannot approve[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    audit_event(config, "approval.decided", approval_id=done.id, name=done.tool, decided_by=who, outcome=done.status)
    more = settings.required_approvals - len(done.approved_by)
    out.print(f"approved {done.id} ({escape(done.tool)})" + (f"; {more} more approver(s) needed" if more > 0 else ""))


@app.command("deny")
def deny(approval_id: str, by: ByOpt = None, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Deny a held call: it will not run."""
    config = admin_config(config, demo)
    from patchbay.gate.approval_store import ApprovalRefused, ApprovalStore

    with auth_store(config) as engine:
        try:
            done = ApprovalStore(engine).deny(approval_id, by or _default_by())
        except ApprovalRefused as exc:
            err.print(f"[bold red]cannot deny[/]: {escape(str(exc))}", highlight=False)
            raise typer.Exit(1) from None
    audit_event(
        config,
        "approval.decided",
        approval_id=done.id,
        name=done.tool,
        decided_by=by or _default_by(),
        outcome=done.status,
    )
    out.print(f"denied {done.id} ({escape(done.tool)})")
