"""``patchbay audit verify``'s report: which checkpoints to use, and the verdict for people or as JSON."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy import Engine

from patchbay.cli.common import err
from patchbay.errors import ConfigError
from patchbay.gate.audit_chain import checkpoint_path, key_id, load_key, read_checkpoints
from patchbay.gate.audit_verify import Report, verify
from patchbay.settings import Settings

out = Console(highlight=False)


def run_verify(engine: Engine, settings: Settings, given: Path | None, as_json: bool) -> int:
    """Verify the trail in ``engine``; print the report; return the exit status (0 intact, 1 tampered, 2 usage)."""
    try:
        key = load_key(settings.audit, settings.base_dir, os.environ, settings.source)
    except ConfigError as exc:
        err.print(f"[bold red]config error[/]: {escape(str(exc))}", highlight=False)
        return 2
    path = given or checkpoint_path(settings.audit, settings.store_url, settings.base_dir)
    notes: list[str] = []
    lines: list[str] = []
    if path is not None:
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            if given is not None:
                err.print(f"[bold red]no such file[/]: --checkpoints {escape(str(given))}", highlight=False)
                return 2
            notes.append(f"checkpoint file {path} does not exist (yet)")
        except OSError as exc:
            err.print(f"[bold red]cannot read[/] {escape(str(path))}: {escape(str(exc.strerror))}", highlight=False)
            return 2
    report = verify(engine, read_checkpoints(lines), key=key, keep_days=settings.audit.keep_days)
    report.notes[:0] = notes
    if as_json:
        data = report.as_dict()
        data["checkpoint_file"] = str(path) if path is not None else None
        data["key_id"] = key_id(key) if key is not None else None
        typer.echo(json.dumps(data, indent=2))
    else:
        _print(report, path, key)
    return 0 if report.intact else 1


def _print(report: Report, path: Path | None, key: bytes | None) -> None:
    span = f"seq {report.first_seq}..{report.last_seq}" if report.records else "no records"
    if report.anchor is not None:
        span += f", after the retention anchor at seq {report.anchor.seq}"
    signed = f"key {key_id(key)}" if key is not None else "no key"
    where = escape(str(path)) if path is not None else "none"
    out.print(f"{report.records} records ({span}); {report.checkpoints} checkpoints from {where} ({signed})")
    for note in report.notes:
        out.print(f"note: {escape(note)}")
    if report.intact:
        out.print("[bold green]intact[/]: no record was edited, inserted, deleted or cut off")
        return
    for finding in report.findings:
        where = f"seq {finding.seq}" if finding.seq is not None else "-"
        out.print(f"[bold red]{finding.problem}[/] ({where}): {escape(finding.detail)}")
    out.print(f"[bold red]TAMPERED[/]: {len(report.findings)} problem(s) found")
