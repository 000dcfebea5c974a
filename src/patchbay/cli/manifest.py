"""``patchbay manifest``: review tool changes (status, diff, approve, reject, history).

Works on the store alone: the serving process writes what it observes there, so no connector is opened here.
A running server picks up an approval within ``[manifest] poll_seconds`` and tells connected clients.
Exit codes: 0 done, 1 nothing pending (or nothing to do), 2 a usage, config or store error.
"""

from __future__ import annotations

import datetime as dt
import getpass
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.markup import escape

from patchbay.cli.common import AdminDemoOpt, admin_config, err, load_settings
from patchbay.cli.users import ConfigOpt, audit_event, auth_store

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from patchbay.catalog.changes import Change
    from patchbay.catalog.manifest import Snapshot

app = typer.Typer(
    help="Review tool changes: what clients see waits for your approval in review mode.", no_args_is_help=True
)
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
NamesArg = Annotated[list[str] | None, typer.Argument(help="Tool, prompt or resource template names (default: all)")]
ByOpt = Annotated[str | None, typer.Option("--by", help="Who decides, for the history (default: your OS user)")]


def pending(engine: Engine) -> tuple[Snapshot | None, list[Change]]:
    """The latest approved version, and the changes the server has proposed against it."""
    from patchbay.catalog.changes import diff
    from patchbay.catalog.manifest_store import PROPOSED, read_proposed, read_snapshot

    snapshot = read_snapshot(engine)
    approved = snapshot.entries if snapshot is not None else {}
    observed = dict(approved)
    for proposal in read_proposed(engine):
        if proposal.state != PROPOSED:
            continue
        if proposal.item is None:
            observed.pop((proposal.kind, proposal.name), None)
        else:
            observed[proposal.kind, proposal.name] = proposal.item
    return snapshot, diff(approved, observed)


@app.command("status")
def status(config: ConfigOpt = None, demo: AdminDemoOpt = False, as_json: JsonOpt = False) -> None:
    """The mode, the approved version and its digest, and how many changes wait for review."""
    config = admin_config(config, demo)
    from patchbay.catalog.manifest_store import REJECTED, read_proposed

    mode = load_settings(config).manifest.mode
    with auth_store(config) as engine:
        snapshot, changes = pending(engine)
        rejected = sum(1 for p in read_proposed(engine) if p.state == REJECTED)
    report: dict[str, Any] = {
        "mode": mode,
        "version": snapshot.version if snapshot else None,
        "sha256": snapshot.digest if snapshot else None,
        "approved_by": snapshot.approved_by if snapshot else None,
        "approved_at": snapshot.approved_at if snapshot else None,
        "items": len(snapshot.entries) if snapshot else 0,
        "pending": len(changes),
        "held": sum(1 for c in changes if c.hold),
        "rejected": rejected,
    }
    if as_json:
        typer.echo(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode())
        return
    if snapshot is None:
        typer.echo(f"mode: {mode}\nno approved version yet: a server records one when it starts")
        return
    typer.echo(
        f"mode: {mode}\napproved version: {snapshot.version} ({len(snapshot.entries)} items) by "
        f"{snapshot.approved_by}, {_when(snapshot.approved_at)}\nsha256: {snapshot.digest}\n"
        f"pending changes: {len(changes)}"
        + (f" ({report['held']} held back)" if report["held"] else "")
        + (f"\nrejected (until they change again): {rejected}" if rejected else "")
    )


@app.command("diff")
def diff_cmd(config: ConfigOpt = None, demo: AdminDemoOpt = False, as_json: JsonOpt = False) -> None:
    """What changed since the approved version, each item risk-labelled. Exits 1 when nothing is pending."""
    config = admin_config(config, demo)
    from patchbay.catalog.report import change_json, render

    with auth_store(config) as engine:
        snapshot, changes = pending(engine)
    if as_json:
        body = {"version": snapshot.version if snapshot else None, "changes": [change_json(c) for c in changes]}
        typer.echo(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    elif changes:
        typer.echo(render(changes))
    else:
        err.print("No pending changes: clients see the approved version.", highlight=False)
    if not changes:
        raise typer.Exit(1)


@app.command("approve")
def approve(names: NamesArg = None, by: ByOpt = None, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Approve pending changes (all, or the NAMEs given) as a new version; running servers serve it at once."""
    config = admin_config(config, demo)
    from patchbay.catalog.manifest import apply, summary
    from patchbay.catalog.manifest_store import VersionConflict, record_version

    with auth_store(config) as engine:
        snapshot, changes = pending(engine)
        chosen = _choose(changes, names)
        entries = apply(snapshot.entries if snapshot else {}, chosen)
        try:
            version = record_version(
                engine,
                entries,
                previous=snapshot.version if snapshot else 0,
                by=by or _os_user(),
                mode="review",
                note=summary(chosen),
            )
        except VersionConflict as exc:
            err.print(f"[bold red]not approved[/]: {escape(str(exc))}; run the command again", highlight=False)
            raise typer.Exit(1) from None
    audit_event(config, "manifest.approve", version=version, by=by or _os_user(), changes=summary(chosen), outcome="ok")
    typer.echo(f"approved version {version}: {summary(chosen)}")


@app.command("reject")
def reject(names: NamesArg = None, by: ByOpt = None, config: ConfigOpt = None, demo: AdminDemoOpt = False) -> None:
    """Reject pending changes (all, or the NAMEs given); they come back only if the connector changes again."""
    config = admin_config(config, demo)
    from patchbay.catalog.manifest_store import reject as reject_rows

    with auth_store(config) as engine:
        _, changes = pending(engine)
        chosen = _choose(changes, names)
        reject_rows(engine, [(c.kind, c.name) for c in chosen], by or _os_user())
    rejected = [f"{c.kind}:{c.name}" for c in chosen]
    audit_event(config, "manifest.reject", by=by or _os_user(), changes=rejected, outcome="ok")
    typer.echo("rejected: " + " ".join(f"{c.kind}:{c.name}" for c in chosen))


@app.command("history")
def history(config: ConfigOpt = None, demo: AdminDemoOpt = False, as_json: JsonOpt = False) -> None:
    """Every approved version, newest first: when, by whom, and what it changed."""
    config = admin_config(config, demo)
    from patchbay.catalog.manifest_store import history as read_history

    with auth_store(config) as engine:
        versions = read_history(engine)
    if as_json:
        rows = [
            {
                "version": v.version,
                "sha256": v.digest,
                "approved_by": v.approved_by,
                "approved_at": v.approved_at,
                "mode": v.mode,
                "changes": v.note,
            }
            for v in versions
        ]
        typer.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    for v in versions:
        typer.echo(f"{v.version:>4}  {_when(v.approved_at)}  {v.approved_by}  {v.digest[:12]}  {v.note or '-'}")
    if not versions:
        err.print("No approved version yet: a server records one when it starts.", highlight=False)
        raise typer.Exit(1)


def _choose(changes: list[Change], names: list[str] | None) -> list[Change]:
    """The pending changes ``names`` select (all when none); exits 1 when nothing is pending, 2 for a name that
    is not pending."""
    if not changes:
        err.print("No pending changes.", highlight=False)
        raise typer.Exit(1)
    if not names:
        return changes
    unknown = [n for n in names if not any(c.name == n for c in changes)]
    if unknown:
        listed = ", ".join(f"{c.name} ({c.kind}, {c.status})" for c in changes)
        err.print(f"[bold red]not pending[/]: {escape(', '.join(unknown))}. Pending: {escape(listed)}", highlight=False)
        raise typer.Exit(2)
    return [c for c in changes if c.name in names]


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"


def _when(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
