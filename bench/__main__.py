"""Patchbay benchmark: `python -m bench` (what `make bench` runs). A benchmark, never a test.

Starts every server on 127.0.0.1 pinned to CPU 0, drives it with wrk pinned to CPU 1 at several
concurrency levels, and prints throughput, latency, CPU per call and RSS, then memory per open session,
cold start, and the issue's targets (informational: the exit status is 0 unless the harness fails).
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import functools
import importlib.metadata
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from bench import (
    audit,
    coldstart,
    console,
    documents,
    fleet,
    fleet_report,
    harness,
    openapi,
    policy,
    proxy,
    report,
    sessions,
    store_writes,
    throughput,
    upstream_client,
)
from bench import sql as sql_bench
from bench.configs import COLDSTART_SERVERS, CONFIGS, REPO, SESSION_SERVERS, patchbay_available, wrk_available

LEVELS = [1, 16, 64]
T = TypeVar("T")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke run: 2 s per level, 1 round, 1,000 sessions")
    p.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only these items (glob, repeatable or comma-separated); see --list",
    )
    p.add_argument("--out", type=Path, help="write FILE.json (raw results) and FILE.md (tables)")
    p.add_argument("--rounds", type=int, help="rounds per configuration (default 3; --quick 1)")
    p.add_argument("--duration", type=float, help="seconds per concurrency level (default 10; --quick 2)")
    p.add_argument("--sessions", type=int, help="sessions to open in the memory probe (default 10,000)")
    p.add_argument("--list", action="store_true", help="list the items --only can select, and exit")
    return p.parse_args(argv)


def _items() -> list[str]:
    names = [c.name for c in CONFIGS]
    names += [f"sessions-{s.name}" for s in SESSION_SERVERS]
    names += [f"coldstart-{s.name}" for s in COLDSTART_SERVERS]
    names += ["sql"]  # bench/sql.py: the sql connector's query latency vs. the driver (no wrk needed)
    names += ["documents"]  # bench/documents.py: index 100k documents, search latency (no wrk needed)
    names += ["store-writes"]  # bench/store_writes.py: 16 clients, 100 kanban writes/s on SQLite (no wrk needed)
    names += ["policy"]  # bench/policy.py: the gate's decision cost with 100 rules (no wrk needed)
    names += ["audit"]  # bench/audit.py: audit trail on vs off at 1,000 calls/s, SQLite and PostgreSQL (no wrk)
    names += ["upstream-client"]  # bench/upstream_client.py: the upstream MCP client's CPU per call (no wrk)
    names += ["openapi"]  # bench/openapi.py: GitHub's spec loaded, tool list tokens, CPU per call (no wrk)
    names += ["console"]  # bench/console.py: console page weight and time, 10k tools, 1M audit records (no wrk)
    names += list(proxy.ITEMS)  # bench/proxy.py: Patchbay in front of an upstream MCP server, HTTP and stdio
    names += list(fleet.ITEMS)  # bench/fleet.py: Redis per call, Redis vs memory sessions, replicas, capacity
    return names


def _selected(patterns: list[str]) -> list[str]:
    flat = [p.strip() for arg in patterns for p in arg.split(",") if p.strip()]
    names = _items()
    if not flat:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatch(n, p) for p in flat)]
    if not chosen:
        raise SystemExit(f"--only matched nothing; items: {', '.join(names)}")
    return chosen


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("mcp", "uvicorn", "starlette", "uvloop", "httptools", "orjson", "mcp-patchbay"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _git_commit() -> str:
    """HEAD of the checkout under test, marked "+dirty" when the work tree differs (the numbers are its)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.list:
        print("\n".join(_items()))
        return 0
    no_wrk = {"sql", "store-writes", "policy", "audit", "upstream-client", "openapi", "console"}
    if not wrk_available() and not set(_selected(args.only)) <= no_wrk:
        print("wrk not found: apt-get install -y wrk", file=sys.stderr)
        return 2
    rounds = args.rounds or (1 if args.quick else 3)
    duration = args.duration or (2.0 if args.quick else 10.0)
    count = args.sessions or (1_000 if args.quick else 10_000)
    chosen = _selected(args.only)
    if not patchbay_available():
        skipped = [n for n in chosen if "patchbay" in n]
        chosen = [n for n in chosen if "patchbay" not in n]
        if skipped:
            print(f"patchbay is not installed: skipping {', '.join(skipped)}", file=sys.stderr)
    pinning = "server CPU 0, load CPU 1" if harness.can_pin() else "none (taskset missing or < 2 CPUs)"
    if harness.can_pin():
        os.sched_setaffinity(0, {harness.LOAD_CPU})  # the harness and its session client stay off CPU 0
    else:
        print(
            "WARNING: no CPU pinning (taskset missing or fewer than 2 CPUs); numbers are less comparable",
            file=sys.stderr,
        )
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with SIGINT ignored
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "pinning": pinning,
        "rounds": rounds,
        "duration_s": duration,
        "levels": LEVELS,
        "sessions": count,
        "python": platform.python_version(),
        "versions": _versions(),
        "commit": _git_commit(),
        "items": chosen,
    }
    logdir = Path(tempfile.mkdtemp(prefix="patchbay-bench-"))
    print(f"# {meta['date']}  pinning: {pinning}  logs: {logdir}", flush=True)
    try:
        return _run(args, meta, chosen, rounds, duration, count, logdir)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    finally:
        harness.stop_all()


def _attempt(item: str, failures: list[str], fn: Callable[[], T]) -> T | None:
    """Run one measurement; a server that fails to start or answers wrongly is recorded, not fatal."""
    try:
        return fn()
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        message = f"{item}: {exc}".strip()
        print(f"   FAILED {message[:2000]}", file=sys.stderr, flush=True)
        failures.append(message[:2000])
        return None


def _summary(r: throughput.Round) -> str:
    cells = []
    for lv in r.levels:
        errors = f" ERRORS {lv.errors}" if lv.errors else ""
        noise = f" (noise {lv.others_cpu0_pct:.0f}%)" if lv.others_cpu0_pct >= throughput.NOISY_PCT else ""
        cells.append(f"c={lv.connections}: {lv.rps:,.0f} req/s p99 {lv.p99_ms:.1f} ms{errors}{noise}")
    return "   " + "  ".join(cells)


def _run(
    args: argparse.Namespace,
    meta: dict[str, Any],
    chosen: list[str],
    rounds: int,
    duration: float,
    count: int,
    logdir: Path,
) -> int:
    warmup = 1.0 if args.quick else 2.0
    failures: list[str] = []
    all_rounds: list[throughput.Round] = []
    for round_no in range(1, rounds + 1):
        for cfg in (c for c in CONFIGS if c.name in chosen):
            print(f"[round {round_no}/{rounds}] {cfg.name} ...", flush=True)
            run = functools.partial(throughput.run_round, cfg, round_no, LEVELS, duration, warmup, logdir)
            if (r := _attempt(cfg.name, failures, run)) is not None:
                all_rounds.append(r)
                print(_summary(r), flush=True)
    probes = []
    for spec in SESSION_SERVERS:
        if f"sessions-{spec.name}" in chosen:
            print(f"[sessions] {spec.name}: opening {count:,} sessions ...", flush=True)
            probe = functools.partial(sessions.probe, spec, count, 32, logdir)
            if (p := _attempt(f"sessions-{spec.name}", failures, probe)) is not None:
                probes.append(p)
    colds = []
    for spec in COLDSTART_SERVERS:
        if f"coldstart-{spec.name}" in chosen:
            print(f"[coldstart] {spec.name} ...", flush=True)
            cold = functools.partial(coldstart.measure, spec, 5, logdir)
            if (c := _attempt(f"coldstart-{spec.name}", failures, cold)) is not None:
                colds.append(c)
    if "sql" in chosen:
        print("[sql] query latency through /mcp vs. the driver (1M rows) ...", flush=True)
        if (section := _attempt("sql", failures, functools.partial(sql_bench.run, args.quick))) is not None:
            text = sql_bench.markdown(section)
            print(text, flush=True)
            sql_bench.write_doc(text)
    if "store-writes" in chosen:
        print("[store-writes] 16 clients, 100 kanban writes/s on the SQLite store ...", flush=True)
        run = functools.partial(store_writes.run, args.quick)
        if (result := _attempt("store-writes", failures, run)) is not None:
            text = store_writes.markdown(result)
            print(text, flush=True)
            sql_bench.write_doc(text, store_writes.HEADING)
    if "audit" in chosen:
        print("[audit] audit trail on vs off, 1,000 calls/s, SQLite and PostgreSQL ...", flush=True)
        if (audited := _attempt("audit", failures, functools.partial(audit.run, args.quick))) is not None:
            text = audit.markdown(audited)
            print(text, flush=True)
            sql_bench.write_doc(text, audit.HEADING)
    if "policy" in chosen:
        print("[policy] decide() with 100 rules, with and without argument conditions ...", flush=True)
        if (decided := _attempt("policy", failures, functools.partial(policy.run, args.quick))) is not None:
            text = policy.markdown(decided)
            print(text, flush=True)
    if "upstream-client" in chosen:
        print("[upstream-client] the upstream MCP client's CPU per call, HTTP both eras and stdio ...", flush=True)
        run = functools.partial(upstream_client.run, args.quick)
        if (measured := _attempt("upstream-client", failures, run)) is not None:
            text = upstream_client.markdown(measured)
            print(text, flush=True)
            sql_bench.write_doc(text, upstream_client.HEADING)
    if "openapi" in chosen:
        print("[openapi] GitHub's spec loaded (fresh interpreters), tool list tokens, CPU per call ...", flush=True)
        if (loaded := _attempt("openapi", failures, functools.partial(openapi.run, args.quick))) is not None:
            text = openapi.markdown(loaded)
            print(text, flush=True)
            sql_bench.write_doc(text, openapi.HEADING)
    if "console" in chosen:
        print("[console] page weight and server time, 10,000 tools, 1,000,000 audit records ...", flush=True)
        if (paged := _attempt("console", failures, functools.partial(console.run, args.quick, logdir))) is not None:
            text = console.markdown(paged)
            print(text, flush=True)
            sql_bench.write_doc(text, console.HEADING)
    if proxied_items := [name for name in proxy.ITEMS if name in chosen]:
        print("[proxy] Patchbay in front of an upstream MCP server, with the upstream and the peers ...", flush=True)
        run = functools.partial(proxy.run, proxied_items, args.quick, logdir, args.rounds, args.duration)
        if (proxied := _attempt("patchbay-proxy", failures, run)) is not None:
            text = proxy.markdown(proxied, meta["date"])
            print(text, flush=True)
            sql_bench.write_doc(text, proxy.HEADING)
    if fleet_items := [name for name in fleet.ITEMS if name in chosen]:
        print("[fleet] shared state per call, 1 vs 2 replicas behind HAProxy, capacity model ...", flush=True)
        run = functools.partial(fleet.run, fleet_items, args.quick, logdir, args.rounds, args.duration)
        if (fleet_result := _attempt("fleet", failures, run)) is not None:
            print(fleet_report.write(fleet_result, meta["date"]), flush=True)
    docs_result = None
    if "documents" in chosen:
        docs_run = functools.partial(documents.run, 10_000 if args.quick else documents.DEFAULT_DOCS, 1_000, logdir)
        docs_result = _attempt("documents", failures, docs_run)
    aggs = report.aggregate(all_rounds)
    tgts = report.targets(aggs, probes, colds)
    md = report.markdown(meta, aggs, probes, colds, tgts, failures)
    if docs_result is not None:
        md += "\n## Documents connector\n\n" + documents.markdown(docs_result)
    print("\n" + md)
    if args.out:
        raw = {
            "meta": meta,
            "rounds": [r.as_dict() for r in all_rounds],
            "aggregate": {k: vars(v) for k, v in aggs.items()},
            "sessions": [p.as_dict() for p in probes],
            "coldstart": [c.as_dict() for c in colds],
            "targets": [vars(t) for t in tgts],
            "failures": failures,
        }
        args.out.with_suffix(".json").write_text(json.dumps(raw, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(md)
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
