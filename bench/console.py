"""The operator console under load: page weight (HTML + JS + CSS per page) and server time per page, with 10,000
tools and 1,000,000 audit records.

A real `patchbay serve` (pinned to CPU 0 when possible) serves a python connector that generates 10,000 tools, on a
SQLite store holding 1,000,000 audit records bulk-inserted beforehand (spread over 30 days, 1,000 people, 50 clients,
every tool; the newest 60,000 in the last hour, a busy server's hour for the Overview's charts). An admin signs in
over HTTP like a browser; each page is then fetched repeatedly on loopback and its time measured from request to
the last byte. Static files are fetched once per page to weigh them. The first fetch of each page is reported on
its own: the Overview's first load reads the whole last hour, later ones only its last minutes.

`python -m bench.console` prints the section (``--quick``: 100,000 records, fewer samples); `make bench` runs it as
the ``console`` item and rewrites the section of docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx

from bench import harness
from bench.configs import patchbay_argv

HEADING = "## Operator console"
TOOLS = 10_000
RECORDS = 1_000_000
HOT = 60_000  # records in the last hour
PASSWORD = "bench console password"
JS_BUDGET = 60 * 1024
P95_TARGET_MS = 50.0
START_DEADLINE = 300.0  # 10,000 tools compile their argument validators at start-up
PAGES = (
    "/admin/",
    "/admin/connect",
    "/admin/tools",
    "/admin/tools/tool_05000",
    "/admin/changes",
    "/admin/approvals",
    "/admin/audit",
    "/admin/audit?tool=tool_04242",
    "/admin/audit?user=u17&outcome=denied",
    "/admin/access",
    "/admin/access/clients",
    "/admin/access/keys",
    "/admin/access/policy",
    "/admin/config",
)
_TOOLS_MODULE = '''"""{count} generated tools for the console benchmark (bench/console.py)."""

from patchbay import tool


def _make(index: int):
    def repeat(text: str, times: int = 1) -> str:
        return text * times

    repeat.__name__ = f"tool_{{index:05d}}"
    repeat.__doc__ = f"Generated tool {{index}}: repeat the text a number of times."
    return tool(repeat, read_only=index % 4 != 0)


for _index in range({count}):
    globals()[f"tool_{{_index:05d}}"] = _make(_index)
'''
_INSERT = (
    "INSERT INTO audit_records (seq, ts, kind, request_ref, method, name, subject, client_id, client_name, outcome,"
    " transport, duration_ms, body, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_OUTCOMES = ("ok", "ok", "ok", "ok", "ok", "ok", "tool_error", "denied", "rate_limited", "ok")


@dataclass
class PageResult:
    path: str
    status: int
    html_bytes: int
    js_bytes: int
    css_bytes: int
    first_ms: float
    p50_ms: float
    p95_ms: float
    samples: int


class _Assets(HTMLParser):
    """The scripts and stylesheets a page loads."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.scripts.append(str(found["src"]))
        elif tag == "link" and found.get("rel") == "stylesheet" and found.get("href"):
            self.styles.append(str(found["href"]))


def _records(count: int, tools: int, now: float) -> Iterator[tuple[Any, ...]]:
    hot = min(HOT, count // 10)
    older = count - hot
    for seq in range(1, count + 1):
        if seq <= older:  # 30 days up to an hour ago, then the last hour's calls
            ts = now - 30 * 86_400.0 + (30 * 86_400.0 - 3600.0) * seq / older
        else:
            ts = now - 3600.0 + 3600.0 * (seq - older) / hot
        name, subject = f"tool_{seq * 7919 % tools:05d}", f"user:u{seq * 31 % 1000}"
        client, outcome = f"client{seq % 50}", _OUTCOMES[seq % len(_OUTCOMES)]
        body = {"kind": "call", "method": "tools/call", "name": name, "subject": subject, "client_id": client,
                "outcome": outcome, "latency_ms": seq % 900 / 10}  # fmt: skip
        row = (seq, ts, "call", None, "tools/call", name, subject, client, None, outcome, "http", seq % 900 / 10)
        yield (*row, json.dumps(body, separators=(",", ":")), "", "")


def _patchbay(*args: str, stdin: str | None = None) -> None:
    made = subprocess.run(
        [sys.executable, "-m", "patchbay", *args], input=stdin, capture_output=True, text=True, timeout=300
    )
    if made.returncode != 0:
        raise RuntimeError(f"patchbay {' '.join(args[:2])} failed: {made.stderr[-2000:]}")


def setup(folder: Path, records: int) -> Path:
    """The config, the generated tools, an admin, and ``records`` audit records in the store; returns the config."""
    (folder / "tools.py").write_text(_TOOLS_MODULE.format(count=TOOLS), encoding="utf-8")
    db = folder / "store.db"
    config = folder / "patchbay.toml"
    config.write_text(
        f'[server]\nname = "bench console"\n\n[store]\nurl = "sqlite:///{db}"\n\n[auth]\nmode = "oauth"\n\n'
        f'[[connectors]]\nname = "gen"\ntype = "python"\npath = "{folder / "tools.py"}"\nprefix = ""\n\n'
        '[[policy]]\nsubjects = ["*"]\ntools = ["tool_00000"]\neffect = "approve"\n',
        encoding="utf-8",
    )
    from patchbay.store import create_engine, upgrade

    engine = create_engine(f"sqlite:///{db}")
    try:
        upgrade(engine, "audit@head")
    finally:
        engine.dispose()
    store = sqlite3.connect(db)
    try:
        rows = _records(records, TOOLS, time.time())
        while batch := [row for _, row in zip(range(50_000), rows, strict=False)]:
            store.executemany(_INSERT, batch)
        # The writer continues the chain after the inserted records (their hashes are not a real chain: `audit
        # verify` would say so; the benchmark never asks).
        store.execute("INSERT OR REPLACE INTO audit_chain_head (id, seq, hash) VALUES (1, ?, ?)", (records, "0" * 64))
        store.commit()
        store.execute("ANALYZE")
    finally:
        store.close()
    # After the records: adding a user is itself recorded, after the chain head set above.
    _patchbay("users", "add", "admin", "--role", "admin", "--password-stdin", "-c", str(config), stdin=PASSWORD + "\n")
    return config


def sign_in(http: httpx.Client) -> None:
    page = http.get("/admin/")
    action = re.search(r'<form method="post" action="([^"]+)"', page.text)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if page.status_code != 401 or action is None or csrf is None:
        raise RuntimeError(f"no sign-in form at /admin/ (status {page.status_code})")
    form = {"csrf": csrf.group(1), "username": "admin", "password": PASSWORD}
    signed = http.post(urljoin(str(page.url), action.group(1)), data=form)
    if signed.status_code != 303:
        raise RuntimeError(f"sign-in answered {signed.status_code}")


def measure(http: httpx.Client, path: str, samples: int) -> PageResult:
    start = time.perf_counter()
    first = http.get(path)
    first_ms = (time.perf_counter() - start) * 1000
    assets = _Assets()
    assets.feed(first.text)
    js = sum(len(http.get(src).content) for src in dict.fromkeys(assets.scripts))
    css = sum(len(http.get(href).content) for href in dict.fromkeys(assets.styles))
    for _ in range(3):
        http.get(path)
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        http.get(path)
        times.append((time.perf_counter() - start) * 1000)
    cuts = statistics.quantiles(times, n=100)
    return PageResult(path, first.status_code, len(first.content), js, css, first_ms, cuts[49], cuts[94], samples)


def run(quick: bool = False, logdir: Path | None = None) -> dict[str, Any]:
    """Raises RuntimeError (what `python -m bench` records as the item's failure) when a step fails."""
    try:
        return _run(quick, logdir)
    except (httpx.HTTPError, sqlite3.Error) as exc:
        raise RuntimeError(f"console benchmark: {type(exc).__name__}: {exc}") from exc


def _run(quick: bool, logdir: Path | None) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="patchbay-bench-console-"))
    records = 100_000 if quick else RECORDS
    started = time.perf_counter()
    config = setup(folder, records)
    loaded = time.perf_counter() - started
    port = harness.free_port()
    server = harness.spawn("console", patchbay_argv(port, config), port, (logdir or folder) / "console.log", folder)
    try:
        ready = harness.wait_ready(server, deadline_s=START_DEADLINE)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False) as http:
            sign_in(http)
            pages = [measure(http, path, 30 if quick else 200) for path in PAGES]
            load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None  # how busy the machine was
            js_files = _all_scripts(http)
    finally:
        harness.stop(server)
        for part in folder.glob("store.db*"):  # a million records take hundreds of MB; the log stays
            part.unlink()
    hot = min(HOT, records // 10)
    return {
        "records": records,
        "hot": hot,
        "tools": TOOLS,
        "setup_s": loaded,
        "start_s": ready,
        "pages": pages,
        "js": js_files,
        "load": load,
    }


def _all_scripts(http: httpx.Client) -> dict[str, int]:
    """Every script any measured page loads, with its size (the JS budget counts each file once)."""
    found: dict[str, int] = {}
    for path in PAGES:
        assets = _Assets()
        assets.feed(http.get(path).text)
        for src in assets.scripts:
            found.setdefault(src.split("?")[0], len(http.get(src).content))
    return found


def markdown(result: dict[str, Any]) -> str:
    pages: list[PageResult] = result["pages"]
    js_total = sum(result["js"].values())
    worst = max(p.p95_ms for p in pages)
    lines = [
        f"{HEADING}\n",
        f"`python -m bench.console`: {result['tools']:,} tools (a generated python connector) and "
        f"{result['records']:,} audit records in the SQLite store ({result['hot']:,} of them in the last hour; "
        f"bulk-inserted in {result['setup_s']:.0f} s; the "
        f"server was ready {result['start_s']:.1f} s after start). An admin signed in; each page fetched "
        f"{pages[0].samples} times over loopback, time to the last byte (first: the first fetch, before any cache "
        "is warm). Weight: the page's HTML plus every script "
        "and stylesheet it loads (uncompressed). `make bench` rewrites this section.\n",
        "| page | status | HTML KB | JS KB | CSS KB | first ms | p50 ms | p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| `{p.path}` | {p.status} | {p.html_bytes / 1024:.1f} | {p.js_bytes / 1024:.1f} | {p.css_bytes / 1024:.1f} "
        f"| {p.first_ms:.1f} | {p.p50_ms:.1f} | {p.p95_ms:.1f} |"
        for p in pages
    ]
    files = ", ".join(f"`{name}` {size / 1024:.1f} KB" for name, size in result["js"].items()) or "none"
    lines += [
        "",
        f"- All console JavaScript together: {js_total / 1024:.1f} KB ({files}); target ≤ {JS_BUDGET // 1024} KB: "
        f"{'met' if js_total <= JS_BUDGET else 'MISSED'}.",
        f"- Slowest page p95: {worst:.1f} ms; target ≤ {P95_TARGET_MS:.0f} ms: "
        f"{'met' if worst <= P95_TARGET_MS else 'MISSED'}"
        + "".join(f"; `{p.path}` {p.p95_ms:.1f} ms" for p in pages if p.p95_ms > P95_TARGET_MS)
        + ".",
    ]
    if result.get("load") is not None:
        lines.append(
            f"- Load average (1 minute) when the last page was measured: {result['load']:.1f} on "
            f"{os.cpu_count()} CPUs; above about 1 the machine was shared and the times are directional."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.console", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 audit records and 30 samples per page")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    section = markdown(run(quick=args.quick))
    print(section)
    if not args.no_doc:
        from bench.sql import write_doc

        write_doc(section, HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
