"""``patchbay tools`` and ``patchbay call``: see and run tools exactly as a client would, without a server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from patchbay.cli.common import err, load_settings
from patchbay.errors import ConfigError, ConnectorError, RpcError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="patchbay.toml")]
DemoOpt = Annotated[bool, typer.Option("--demo", help="Use the built-in demo connectors")]


def _run(settings: Any, work: Any) -> tuple[Any, list[str]]:
    """``work(runtime)``'s result, and one line per connector that is down (its tools are missing)."""
    from patchbay.app import Runtime

    async def go() -> tuple[Any, list[str]]:
        runtime = Runtime(settings)
        # A connector whose system is down leaves its tools out, as in a server; the others still answer.
        await runtime.start(on_failure="report")
        try:
            down = [f"connector '{n}' is down: {runtime.supervisor.status[n].detail}" for n in runtime.supervisor.down]
            return await work(runtime), down
        finally:
            await runtime.stop()

    try:
        return asyncio.run(go())
    except (ConfigError, ConnectorError) as exc:
        err.print(f"[bold red]cannot start[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None


def _warn(down: list[str]) -> None:
    for line in down:
        err.print(f"[bold yellow]warning[/]: {escape(line)}; its tools are missing", highlight=False)


def tools(
    config: ConfigOpt = None,
    demo: DemoOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tools/list result as JSON")] = False,
) -> None:
    """List the tools a client would see, with their annotations (exit 1 if a connector is down: the list is short)."""
    settings = load_settings(config, demo=demo)

    async def work(runtime: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
        return list(runtime.catalog.tools_wire), _owners(runtime.catalog)

    (listed, owners), down = _run(settings, work)
    _warn(down)
    if as_json:
        typer.echo(json.dumps({"tools": listed}, indent=2, ensure_ascii=False))
    else:
        _table(listed)
        _token_lines(listed, owners)
    if down:
        raise typer.Exit(1)  # the list is incomplete: scripts comparing manifests must not take it as whole


def _table(listed: list[dict[str, Any]]) -> None:
    table = Table(title=f"{len(listed)} tools", show_lines=False)
    # One line per tool, even in a narrow terminal: only the description gives way.
    table.add_column("name", no_wrap=True, min_width=max((len(t["name"]) for t in listed), default=4))
    for column in ("read-only", "destructive", "open-world"):
        table.add_column(column, no_wrap=True, min_width=len(column))
    table.add_column("description", no_wrap=True, overflow="ellipsis")
    for tool in listed:
        hints = tool["annotations"]
        table.add_row(
            tool["name"],
            _yes(hints["readOnlyHint"]),
            _yes(hints["destructiveHint"]),
            _yes(hints["openWorldHint"]),
            (tool["description"].splitlines() or [""])[0][:70],
        )
    # A terminal shows what fits; piped output (a file, a pager) gets room for the whole first line.
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _owners(catalog: Any) -> dict[str, str]:
    """Public tool name -> the connector that publishes it."""
    return {
        mount.prefix + tool.name: mount.connector.name
        for mount in catalog.mounted
        if catalog.is_up(mount.connector.name)
        for tool in mount.connector.tools()
    }


def _token_lines(listed: list[dict[str, Any]], owners: dict[str, str]) -> None:
    """What each connector's part of the list costs a model's context, estimated (docs/openapi.md)."""
    from patchbay.connectors.openapi.tokens import estimate_tokens

    by_connector: dict[str, list[dict[str, Any]]] = {}
    for wire in listed:
        by_connector.setdefault(owners.get(wire["name"], "?"), []).append(wire)
    for owner, wires in by_connector.items():
        typer.echo(f"{owner}: {len(wires)} tools, ≈ {estimate_tokens(wires):,} tokens")
    typer.echo(f"total: {len(listed)} tools, ≈ {estimate_tokens(listed):,} tokens")


def call(
    tool: Annotated[str, typer.Argument(help="Tool name as listed by `patchbay tools`")],
    args: Annotated[str, typer.Option("--args", "-a", help="Arguments as a JSON object")] = "{}",
    config: ConfigOpt = None,
    demo: DemoOpt = False,
) -> None:
    """Run one tool locally and print its result (exit 1 if the tool reports an error)."""
    try:
        arguments = json.loads(args)
    except json.JSONDecodeError as exc:
        err.print(f"[bold red]--args is not valid JSON[/]: {escape(str(exc))}", highlight=False)
        raise typer.Exit(2) from None
    if not isinstance(arguments, dict):
        err.print("[bold red]--args must be a JSON object[/], e.g. --args '{\"a\": 1}'", highlight=False)
        raise typer.Exit(2)
    settings = load_settings(config, demo=demo)

    async def work(runtime: Any) -> dict[str, Any] | RpcError:
        from patchbay.protocol.scope import CallScope

        scope = CallScope(
            era="legacy",
            version="2025-11-25",
            request_id="cli",
            method="tools/call",
            client_caps={},
            runtime=runtime,
            transport="in_process",
        )
        try:
            result: dict[str, Any] = await runtime.dispatcher.dispatch(
                "tools/call", {"name": tool, "arguments": arguments}, scope
            )
        except RpcError as exc:  # an unknown tool: reported after the connectors that are down
            return exc
        return result

    result, down = _run(settings, work)
    if isinstance(result, RpcError):
        err.print(f"[bold red]error[/]: {escape(result.message)}", highlight=False)
        _warn(down)
        raise typer.Exit(2)
    _warn(down)
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))
    if result.get("isError"):
        raise typer.Exit(1)


def _yes(value: bool) -> str:
    return "yes" if value else "no"
