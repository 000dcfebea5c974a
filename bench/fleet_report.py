"""The fleet benchmark's report: the "Fleet" section of docs/performance.md and the capacity model of docs/deploy.md.

Run: ``python -m bench.fleet_report --from FLEET.json`` rewrites both from a run's raw results (bench/fleet.py).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import textwrap
from pathlib import Path
from typing import Any

from bench.configs import REPO
from bench.fleet import ROUND_TRIPS
from bench.sql import write_doc

HEADING = "## Fleet: shared state, replicas and capacity"
CAPACITY_HEADING = "## Capacity model"
DEPLOY = REPO / "docs" / "deploy.md"
UTILISATION = 0.6  # a replica's CPU target: headroom for bursts, GC and a peer's share while one is replaced
EXAMPLE_RATE = 5000.0
EXAMPLE_MIX = {"modern": 0.7, "session-json": 0.3}
CPU_LEVEL = 16
LABELS = {
    "modern": "2026-07-28 tools/call (JSON)",
    "session-json": "2025 session tools/call, JSON answer",
    "session-sse": "2025 session tools/call, SSE answer (one progress notification)",
}
TIMES, MINUS = "\N{MULTIPLICATION SIGN}", "\N{MINUS SIGN}"  # named: ruff's RUF001 flags the literal characters


def _pick(
    result: dict[str, Any], case: str, connections: int = CPU_LEVEL, topology: str = "1 replica"
) -> list[dict[str, Any]]:
    """Every round's level of ``case`` at ``connections`` in ``topology`` (whichever item measured it)."""
    return [
        level
        for run in result["runs"]
        if run["case"] == case and run["topology"] == topology
        for level in run["levels"]
        if level["connections"] == connections
    ]


def _med(levels: list[dict[str, Any]], name: str) -> float:
    return statistics.median(float(lv[name]) for lv in levels)


def _cmds(levels: list[dict[str, Any]]) -> dict[str, float]:
    """Median per command per call; commands under 0.01 per call (heartbeats, limits' background) left out."""
    names = {k for lv in levels for k in lv["redis_cmds"]}
    medians = {k: statistics.median(lv["redis_cmds"].get(k, 0.0) for lv in levels) for k in names}
    return {k: v for k, v in sorted(medians.items()) if v >= 0.01 or k == ROUND_TRIPS}


def _xacts(result: dict[str, Any], case: str) -> float | None:
    values = [r["pg_xacts_per_call"] for r in result["runs"] if r["case"] == case and r["topology"] == "1 replica"]
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _commands_text(cmds: dict[str, float]) -> tuple[float, float, str]:
    trips = cmds.get(ROUND_TRIPS, 0.0)
    named = {k: v for k, v in cmds.items() if k != ROUND_TRIPS}
    which = ", ".join(f"{k.upper()} {v:.2f}" for k, v in named.items()) or "none"
    return trips, sum(named.values()), which


def _redis_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for era, label in LABELS.items():
        levels = _pick(result, f"{era}/redis")
        if not levels:
            continue
        trips, total, which = _commands_text(_cmds(levels))
        rows.append(f"| {label} | {trips:.2f} | {total:.2f} | {which} | {_med(levels, 'redis_cpu_us'):,.0f} |")
    return rows


def _cpu_rows(result: dict[str, Any]) -> list[str]:
    rows = []
    for era, label in LABELS.items():
        for connections in (1, 16, 64):
            memory, redis = _pick(result, f"{era}/memory", connections), _pick(result, f"{era}/redis", connections)
            if not memory or not redis:
                continue
            mem_cpu, red_cpu = _med(memory, "cpu_us"), _med(redis, "cpu_us")
            noise = max(_med(memory, "others_cpu0_pct"), _med(redis, "others_cpu0_pct"))
            rows.append(
                f"| {label} | {connections} | {_med(memory, 'rps'):,.0f} | {mem_cpu:,.0f} | {_med(redis, 'rps'):,.0f} "
                f"| {red_cpu:,.0f} | {red_cpu - mem_cpu:+,.0f} ({(red_cpu / mem_cpu - 1) * 100:+.0f} %) | {noise:.0f} |"
            )
    return rows


def _replica_rows(result: dict[str, Any]) -> list[str]:
    keys = sorted({(r["topology"], r["case"]) for r in result["runs"] if r["item"] == "fleet-replicas"})
    rows = []
    for topology, case in sorted(keys, key=lambda k: (k[1], k[0])):
        for connections in (1, 16, 64):
            levels = _pick(result, case, connections, topology)
            if not levels:
                continue
            shares = "/".join(f"{s * 100:.0f}" for s in levels[0]["replica_share"])
            errors = sum(int(lv["errors"]) for lv in levels)
            rows.append(
                f"| {topology} | {LABELS[case.split('/')[0]]} | {connections} | {_med(levels, 'rps'):,.0f}"
                f"{f' ({errors} errors)' if errors else ''} | {_med(levels, 'p50_ms'):.2f} "
                f"| {_med(levels, 'p99_ms'):.1f} "
                f"| {_med(levels, 'cpu_us'):,.0f} | {_med(levels, 'haproxy_cpu_us'):,.0f} | {shares} |"
            )
    return rows


CAPACITY_CASES = {
    "modern/redis": "2026-07-28 call, direct tool, audit on",
    "modern/redis/audit-off": "2026-07-28 call, direct tool, audit off",
    "modern/redis/proxied": "2026-07-28 call, proxied to an upstream MCP server over HTTP, audit on",
    "session-json/redis": "2025 session call (JSON), direct tool, audit on",
    "session-sse/redis": "2025 session call (SSE), direct tool, audit on",
}


def capacity_inputs(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per serving case at c=16: own CPU per call and what it costs Redis and PostgreSQL (medians over rounds)."""
    out: dict[str, dict[str, float]] = {}
    for case in CAPACITY_CASES:
        levels = _pick(result, case)
        if not levels:
            continue
        trips, total, _ = _commands_text(_cmds(levels))
        figures = {name: _med(levels, name) for name in ("cpu_us", "redis_cpu_us", "pg_cpu_us", "wal_bytes")}
        out[case] = figures | {"trips": trips, "cmds": total, "xacts": _xacts(result, case) or 0.0}
    return out


def _capacity_rows(inputs: dict[str, dict[str, float]]) -> list[str]:
    return [
        f"| {CAPACITY_CASES[case]} | {f['cpu_us']:,.0f} | {1e6 / f['cpu_us']:,.0f} "
        f"| {UTILISATION * 1e6 / f['cpu_us']:,.0f} "
        f"| {f['trips']:.2f} / {f['cmds']:.2f} | {f['redis_cpu_us']:,.0f} | {f['xacts']:.3f} | {f['wal_bytes']:,.0f} "
        f"| {f['pg_cpu_us']:,.0f} |"
        for case, f in inputs.items()
    ]


def _setup(result: dict[str, Any], date: str) -> list[str]:
    rounds = len({r["round"] for r in result["runs"]})
    before, after = result["load"]
    return [
        "Issue 16's benchmark (`python -m bench --only 'fleet-*'`, bench/fleet.py). Every replica is `patchbay serve`",
        "with the same config: a PostgreSQL store (a throwaway cluster with fsync off, so PostgreSQL's figures are",
        "its CPU and WAL, not disk waits), the audit trail on, bench/tools.py's `add`, and `[redis]` on unless the",
        "row says *in-memory*. Replicas run on CPU 0; wrk, HAProxy, Redis and PostgreSQL share CPU 1 (the machine",
        f"has {result['cpus']} cores). {rounds} round(s) of {result['duration_s']:g} s per level, medians. *Own CPU*",
        "is the replica processes' CPU (/proc) per call; Redis and PostgreSQL CPU are their server processes'. Redis",
        "commands are `INFO commandstats` deltas over every call of a level, round trips are its",
        "`total_writes_processed` (a pipeline's replies leave in one write). *Others on CPU 0* is the share of",
        "CPU 0 other processes of this shared machine took: above ~10 % the row is noisy.",
        f"Measured {date or 'at an unrecorded date'}, {result.get('redis_version') or 'redis-server'}; load average "
        f"{before[0]:.2f} before,",
        f"{after[0]:.2f} after.\n",
    ]


def _outage_notes(result: dict[str, Any]) -> list[str]:
    """Levels during which a replica logged Redis as unreachable: their Redis figures are low, not cheap."""
    notes = [
        f"- {run['case']} ({run['topology']}), round {run['round']}, c={lv['connections']}: a replica logged Redis "
        f"as unreachable {lv['redis_outages']} time(s); calls in those windows skipped Redis."
        for run in result["runs"]
        for lv in run["levels"]
        if lv.get("redis_outages")
    ]
    if notes:
        notes.insert(0, "**Redis outages during the run** (see the replicas' logs for the cause):\n")
        notes.append("")
    return notes


def markdown(result: dict[str, Any], date: str = "") -> str:
    lines = [f"{HEADING}\n", *_setup(result, date), *_outage_notes(result)]
    if redis_rows := _redis_rows(result):
        lines += [
            f"### Redis per call (c={CPU_LEVEL})\n",
            "| call | round trips / call | commands / call | which (per call) | Redis CPU µs/call |",
            "|---|---:|---:|---|---:|",
            *redis_rows,
            "",
            "A 2026-07-28 call touches Redis only for `[[limits]]` (none here). A 2025 session call reads its",
            "mutable state and the DELETE denylist in one pipelined round trip; an SSE answer also appends its",
            "events to the stream kept for `Last-Event-ID` resumption, batched off the response path. A call still",
            "running after 50 ms also registers for cancellation from another replica (HSET + PEXPIRE, then HDEL):",
            "rare at c=16, frequent once a replica is saturated (the c=64 rows of the replica table).\n",
        ]
    if cpu_rows := _cpu_rows(result):
        lines += [
            "### CPU per call: Redis-backed sessions versus in-memory\n",
            f"| call | c | in-memory req/s | in-memory µs/call | Redis req/s | Redis µs/call | Redis {MINUS} in-memory "
            "| others on CPU 0 % |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
            *cpu_rows,
            "",
        ]
    if replica_rows := _replica_rows(result):
        lines += [
            "### 1 versus 2 replicas behind HAProxy round-robin\n",
            f"{result.get('haproxy_version') or 'HAProxy'}, `balance roundrobin` per request, keep-alive on both",
            "sides, nothing sticky; 2025 sessions alternate between the replicas. **This machine has two cores and",
            'the load generator (wrk), HAProxy, Redis and PostgreSQL run on the second one**, so "2 replicas on CPU 0',
            'and CPU 1" gives the second replica a core it shares with all of them: it shows that round-robin spreads',
            "the work and that a second replica adds throughput, not how a fleet on dedicated machines scales.",
            '"2 replicas, both on CPU 0" shows what the fleet itself costs when no core is added.\n',
            "| topology | call | c | req/s | p50 ms | p99 ms | replicas' CPU µs/call | HAProxy CPU µs/call "
            "| CPU share per replica % |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|",
            *replica_rows,
            "",
        ]
    if inputs := capacity_inputs(result):
        lines += [
            "### Capacity inputs\n",
            "What docs/deploy.md's capacity model is computed from (c=16, one replica, `[redis]` on):\n",
            *_capacity_table(inputs),
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _capacity_table(inputs: dict[str, dict[str, float]]) -> list[str]:
    return [
        "| serving | own CPU µs/call | calls/s per core (100 %) | calls/s per replica at "
        f"{UTILISATION:.0%} | Redis round trips / commands per call | Redis CPU µs/call | PostgreSQL transactions "
        "/ call | WAL bytes / call | PostgreSQL CPU µs/call |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *_capacity_rows(inputs),
        "",
    ]


def _example(inputs: dict[str, dict[str, float]]) -> list[str]:
    mix = {f"{era}/redis": share for era, share in EXAMPLE_MIX.items()}
    if not all(case in inputs for case in mix):
        return []

    def blend(name: str) -> float:
        return sum(inputs[case][name] * share for case, share in mix.items())

    cpu, rate = blend("cpu_us"), EXAMPLE_RATE
    needed = math.ceil(rate * cpu / (1e6 * UTILISATION))
    modern, session = EXAMPLE_MIX["modern"], EXAMPLE_MIX["session-json"]
    text = (
        f"**Worked example.** {rate:,.0f} calls/s at peak, {modern:.0%} from 2026-07-28 clients and {session:.0%} "
        f"from 2025-era sessions, audit on. CPU per call: {modern:g} {TIMES} {inputs['modern/redis']['cpu_us']:,.0f} "
        f"µs + {session:g} {TIMES} {inputs['session-json/redis']['cpu_us']:,.0f} µs = {cpu:,.0f} µs, so "
        f"{rate * cpu / 1e6:.1f} cores are busy; ⌈{rate:,.0f} {TIMES} {cpu:,.0f} ÷ (10⁶ {TIMES} {UTILISATION:g})⌉ = "
        f"{needed}, plus one so that losing one (a deploy, a node) keeps the rest under the target: "
        f"**{needed + 1} replicas** of one core. Redis sees {rate * blend('trips'):,.0f} round trips/s "
        f"({rate * blend('cmds'):,.0f} commands/s, about {rate * blend('redis_cpu_us') / 1e6:.2f} of a core); "
        f"PostgreSQL {rate * blend('xacts'):,.0f} transactions/s, {rate * blend('wal_bytes') / 1e6:.1f} MB/s of WAL "
        f"and about {rate * blend('pg_cpu_us') / 1e6:.2f} of a core. Proxied calls cost more of Patchbay's CPU and "
        "the upstream's time on top (its own server, not counted here): use their row for the share of calls that "
        'go to `type = "mcp"` or `openapi` connectors.'
    )
    return textwrap.wrap(text, 116, break_on_hyphens=False)


def capacity_section(result: dict[str, Any], date: str) -> str:
    inputs = capacity_inputs(result)
    lines = [
        f"{CAPACITY_HEADING}\n",
        "<!-- capacity: written by `python -m bench --only fleet-capacity` (bench/fleet_report.py) -->",
        "A replica is one process serving on one event loop, so it uses at most one core; give each replica one",
        "core (Kubernetes: `resources.requests.cpu: 1`) and add replicas, not cores. Size a fleet from the CPU",
        "one call costs the replica, measured by `make bench` on the machine that wrote this section",
        f"({date}, a 2-core machine shared with other work: read the figures as orders of magnitude and measure",
        "your own tools, whose time comes on top):\n",
        f"    replicas = ⌈ peak calls/s {TIMES} CPU per call (µs) ÷ (10⁶ {TIMES} target utilisation) ⌉ + 1",
        "",
        f"with a target utilisation of {UTILISATION:g} (headroom for bursts and garbage collection) and one replica",
        "spare for a rollout or a lost node. Redis and PostgreSQL grow linearly with the same peak: multiply the",
        "per-call figures below by the calls per second; PostgreSQL's share is mostly the audit trail, written in",
        "group commits (the audit-off row shows the difference).\n",
        *_capacity_table(inputs),
        *_example(inputs),
        "",
        'What the fleet\'s shared state costs (docs/performance.md, "Fleet", has every level):\n',
        *_fleet_summary(result),
    ]
    return "\n".join(lines) + "\n"


def _cell(
    result: dict[str, Any], case: str, name: str, connections: int = CPU_LEVEL, topology: str = "1 replica"
) -> str:
    levels = _pick(result, case, connections, topology)
    if not levels:
        return "not measured in this run"
    if name == "trips":
        return f"{_commands_text(_cmds(levels))[0]:.2f}"
    return f"{_med(levels, name):,.0f}"


def _fleet_summary(result: dict[str, Any]) -> list[str]:
    rows = [
        ("Redis round trips per call", "redis", "trips", "1 replica", CPU_LEVEL),
        ("CPU per call, in-memory state (µs, c=16)", "memory", "cpu_us", "1 replica", CPU_LEVEL),
        ("CPU per call, Redis state (µs, c=16)", "redis", "cpu_us", "1 replica", CPU_LEVEL),
    ]
    lines = ["| figure | 2026-07-28 call | 2025-era call (JSON) |", "|---|---|---|"]
    for label, state, name, topology, connections in rows:
        cells = [_cell(result, f"{era}/{state}", name, connections, topology) for era in ("modern", "session-json")]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    one, two = "1 replica (CPU 0)", "2 replicas, CPU 0 and CPU 1"
    cells = [
        f"{_cell(result, f'{era}/redis', 'rps', 64, one)} / {_cell(result, f'{era}/redis', 'rps', 64, two)}"
        for era in ("modern", "session-json")
    ]
    lines.append(f"| req/s at c=64, 1 replica / 2 replicas (2 cores shared with the load) | {cells[0]} | {cells[1]} |")
    return lines


def write_capacity(section: str) -> None:
    """Replace docs/deploy.md's capacity model section (up to the next ``## `` heading), nothing else."""
    text = DEPLOY.read_text()
    start = text.find(CAPACITY_HEADING + "\n")
    if start == -1:
        raise RuntimeError(f"{DEPLOY.name} has no '{CAPACITY_HEADING}' section to fill")
    end = text.find("\n## ", start + len(CAPACITY_HEADING))
    DEPLOY.write_text(text[:start] + section + (text[end:] if end != -1 else ""))


def write(result: dict[str, Any], date: str) -> str:
    """Both documents from one run; the performance section's text (to print)."""
    text = markdown(result, date)
    write_doc(text, HEADING)
    if capacity_inputs(result) and "fleet-capacity" in result["items"]:
        write_capacity(capacity_section(result, date))
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet_report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a fleet.json a bench run wrote")
    parser.add_argument("--date", default="", help="the run's date, for docs/deploy.md")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave the documents alone")
    args = parser.parse_args(argv)
    result = json.loads(args.source.read_text())
    if args.no_doc:
        print(markdown(result, args.date))
        print(capacity_section(result, args.date))
    else:
        print(write(result, args.date))
    return 0


if __name__ == "__main__":
    sys.exit(main())
