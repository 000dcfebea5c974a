"""The doctor's output: a terminal report grouped by client and step, or JSON for CI."""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape

from patchbay.doctor.model import STEPS, Status
from patchbay.doctor.profiles import load_profiles
from patchbay.doctor.runner import Report
from patchbay.doctor.upstreams import UpstreamsReport

__all__ = ["render_json", "render_terminal"]

_MARK = {
    Status.PASS: "[green]✔ pass[/]",
    Status.WARN: "[yellow]! warn[/]",
    Status.FAIL: "[bold red]✘ fail[/]",
    Status.SKIP: "[dim]- skip[/]",
}


def render_json(report: Report) -> str:
    return json.dumps(report.as_json(), indent=2, ensure_ascii=False)


def render_terminal(report: Report, console: Console, *, verbose: bool = False) -> None:
    """One section per client, steps in connection order; skips are shown only with ``verbose``."""
    profiles = load_profiles()
    console.print(f"[bold]patchbay doctor[/] {escape(report.url)}")
    for note in report.notes:
        console.print(f"[dim]{escape(note)}[/]")
    for name, results in report.clients.items():
        profile = profiles[name]
        failed = [r for r in results if r.status is Status.FAIL]
        verdict = "[bold red]will fail[/]" if failed else "[green]ready[/]"
        console.rule(f"[bold]{escape(profile.title)}[/] ({escape(profile.surfaces)}) — {verdict}")
        for step, title in STEPS.items():
            shown = [r for r in results if r.check.step == step and (verbose or r.status is not Status.SKIP)]
            if not shown:
                continue
            console.print(f"[bold]{title}[/]")
            for result in shown:
                console.print(f"  {_MARK[result.status]}  {result.id}  {escape(result.why)}", soft_wrap=False)
                if result.status in (Status.FAIL, Status.WARN) and result.fix:
                    console.print(f"         [cyan]fix:[/] {escape(result.fix)}")
    if report.upstreams is not None:
        _render_upstreams(report.upstreams, console)
    counts = {s: sum(1 for r in report.results if r.status is s) for s in Status}
    console.print(
        f"\n{counts[Status.PASS]} passed, {counts[Status.WARN]} warnings, {counts[Status.FAIL]} failed, "
        f"{counts[Status.SKIP]} skipped" + ("" if verbose else " (--verbose shows skips)")
    )


def _render_upstreams(found: UpstreamsReport, console: Console) -> None:
    """A Patchbay's upstream MCP servers (``mcp`` connectors), from /readyz's operator part."""
    console.rule(f"[bold]Upstream MCP servers[/] (from /readyz with the {escape('[metrics]')} token)")
    if found.problem:
        console.print(f"  [yellow]! {escape(found.problem)}[/]")
        return
    if not found.upstreams:
        console.print("  [dim]no mcp connectors[/]")
    for upstream in found.upstreams:
        mark = "[green]✔ up[/]" if upstream.ok else "[bold red]✘ degraded[/]"
        era = upstream.era or "era not known yet"
        console.print(
            f"  {mark}  {escape(upstream.name)}  {escape(upstream.upstream)} · {escape(era)} · {upstream.tools} tools",
            soft_wrap=False,
        )
        if not upstream.ok:
            console.print(f"         {escape(upstream.detail)}")
        if upstream.stderr:
            console.print("         [cyan]stderr (last lines):[/]")
            for line in upstream.stderr.splitlines():
                console.print(f"           {escape(line)}", soft_wrap=False, highlight=False)
