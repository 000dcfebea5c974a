"""``patchbay doctor URL``: check an MCP server the way ChatGPT, Claude and the vendor APIs connect to it."""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Annotated

import anyio
import typer
from rich.console import Console

EXIT_PASS, EXIT_FAIL, EXIT_COULD_NOT_RUN = 0, 1, 2


def _clients(value: str) -> list[str]:
    from patchbay.doctor.profiles import PROFILE_NAMES

    names = list(PROFILE_NAMES) if value == "all" else [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in PROFILE_NAMES]
    if unknown or not names:
        raise typer.BadParameter(f"unknown client {', '.join(unknown) or value!r}; use {'|'.join(PROFILE_NAMES)}|all")
    return names


def doctor(
    url: Annotated[
        str,
        typer.Argument(help="The MCP endpoint as you would paste it into the client, e.g. https://mcp.example.com/mcp"),
    ],
    client: Annotated[
        str, typer.Option("--client", help="chatgpt|claude|responses|messages|all (comma-separated works)")
    ] = "all",
    token: Annotated[
        str | None,
        typer.Option("--token", help="Bearer token for the authenticated checks (or env PATCHBAY_DOCTOR_TOKEN)"),
    ] = None,
    metrics_token: Annotated[
        str | None,
        typer.Option(
            "--metrics-token",
            help="A Patchbay's [metrics] token: also report its upstream MCP servers from /readyz "
            "(or env PATCHBAY_DOCTOR_METRICS_TOKEN)",
        ),
    ] = None,
    interactive: Annotated[
        bool,
        typer.Option("--interactive", help="Sign in with the real authorization-code + PKCE flow (loopback callback)"),
    ] = False,
    no_browser: Annotated[
        bool,
        typer.Option("--no-browser", help="With --interactive: print the sign-in URL instead of opening a browser"),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the report as JSON (for CI)")] = False,
    local: Annotated[
        bool,
        typer.Option(
            "--local", help="The URL is a local stand-in for the public one: skip the https/443/public-address checks"
        ),
    ] = False,
    no_calls: Annotated[
        bool,
        typer.Option(
            "--no-calls",
            help="Do not call any tool (by default read-only tools without arguments, and search/fetch, are called)",
        ),
    ] = False,
    stream_hold: Annotated[
        float,
        typer.Option(
            "--stream-hold", help="Seconds to hold an idle event stream open to look for keep-alives (0 skips)"
        ),
    ] = 35.0,
    slow: Annotated[
        float, typer.Option("--slow", help="Seconds after which a discovery request fails the timing check")
    ] = 8.0,
    label: Annotated[
        str | None,
        typer.Option("--label", help="The name you give the connector in the client (used for tool-name prefixes)"),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also list skipped checks")] = False,
) -> None:
    """Check an MCP server (any server, not only Patchbay) the way each client connects.

    Exit codes: 0 nothing failed, 1 a check failed, 2 the doctor could not run.
    """
    names = _clients(client)
    # The doctor's HTTP and schema stack loads only when it runs, not for every patchbay command.
    from patchbay.doctor.context import Options
    from patchbay.doctor.report import render_json, render_terminal
    from patchbay.doctor.runner import CouldNotRun, run

    options = Options(
        token=token or os.environ.get("PATCHBAY_DOCTOR_TOKEN") or None,
        local=local,
        calls=not no_calls,
        stream_hold=stream_hold,
        slow_fail=slow,
        slow_warn=min(2.0, slow / 2),
        label=label,
        metrics_token=metrics_token or os.environ.get("PATCHBAY_DOCTOR_METRICS_TOKEN") or None,
    )
    err = Console(stderr=True)

    def show(auth_url: str) -> None:
        print(f"Open this URL to sign in:\n{auth_url}", file=sys.stderr, flush=True)
        if not no_browser:
            webbrowser.open(auth_url)

    # A status line only for a person at a terminal: nothing on a pipe, in CI or with --json.
    status = err.status("checking …") if err.is_terminal and not json_out else None
    try:
        if status is None:
            report = anyio.run(lambda: run(url, names, options, interactive=interactive, show_url=show))
        else:
            with status:
                say = status.update
                report = anyio.run(
                    lambda: run(url, names, options, interactive=interactive, show_url=show, progress=say)
                )
    except CouldNotRun as exc:
        err.print(f"[bold red]could not run:[/] {exc}")
        raise typer.Exit(EXIT_COULD_NOT_RUN) from None
    if json_out:
        typer.echo(render_json(report))
    else:
        render_terminal(report, Console(), verbose=verbose)
    raise typer.Exit(report.exit_code)
