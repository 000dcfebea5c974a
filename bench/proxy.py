"""Upstream MCP servers behind Patchbay: what the proxy hop costs (issue 13's benchmark).

Items ``patchbay-proxy-http`` and ``patchbay-proxy-stdio`` of `make bench`; they write their section of
docs/performance.md. A benchmark, never a test.

The upstream is a second Patchbay serving bench/tools.py's ``add`` (bench/servers/counted_upstream.py), the cheapest
MCP server at hand, so the hop is what is measured; it counts the handshakes it answers. Each round:

1. the upstream alone over HTTP (``direct``), wrk straight at it: the baseline for the added latency;
2. Patchbay with one ``type = "mcp"`` connector, ``url`` = that upstream, driven by wrk like patchbay-modern-json
   and patchbay-session-json; then FastMCP's proxy with one shared upstream client in front of the same upstream;
3. Patchbay with the same upstream as a stdio child (``serve --stdio``); then mcp-proxy in front of the same stdio
   server.

Every server and its upstream run on CPU 0, wrk on CPU 1, as in perf-baseline.md. CPU is read from /proc per
process: the front's own process apart from its upstream (another process, or the front's stdio child), so
"own CPU per call" is the proxy's alone and the upstream's cost is shown beside it. Added p50 = the proxied p50
minus the direct p50 of the same era and concurrency in the same round. The upstream connection is pinned to the
2025-11-25 handshake era, so a proxy that re-opened its upstream session would show in the ``initialize`` count.
Peers run from their own venvs (build/bench-peers, `make bench-peers`); without them, perf-baseline.md's figures
are quoted, labelled as such.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import harness, wire
from bench.configs import REPO, patchbay_argv
from bench.servers.counted_upstream import read_counts
from bench.throughput import LUA, Setting, _share, wrk_env

HEADING = "## Upstream MCP servers behind Patchbay"
ITEMS = ("patchbay-proxy-http", "patchbay-proxy-stdio")
PEERS = REPO / "build" / "bench-peers"
UPSTREAM_PROTOCOL = "2025-11-25"
READY_S = 60.0
Era = Literal["modern", "session", "stateless"]
ERAS: tuple[Era, ...] = ("modern", "session")
TARGET_CPU_US = 300.0
TARGET_ADDED_MS = {"patchbay-proxy-http": 0.5, "patchbay-proxy-stdio": 1.0}
LABELS = {
    "direct": "the upstream alone (Patchbay serving add over HTTP)",
    "patchbay-proxy-http": "Patchbay → upstream over HTTP",
    "patchbay-proxy-stdio": "Patchbay → upstream over stdio",
    "fastmcp-proxy": "FastMCP proxy (one shared client) → upstream over HTTP",
    "mcp-proxy": "mcp-proxy (stateless) → upstream over stdio",
}
BASELINE = (
    "perf-baseline.md (reference figures, not this run): FastMCP proxy with one shared upstream client 170-183 "
    "req/s, 5,882 µs CPU per call with its SDK upstream (≈ 4.9 ms its own); mcp-proxy → stdio SDK server 187-191 "
    "req/s, 5,350 µs (≈ 4.4 ms its own)"
)


@dataclass
class Level:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    calls: int
    own_cpu_us: float
    """CPU per call of the front process alone (for ``direct``: the upstream itself)."""
    upstream_cpu_us: float
    others_cpu0_pct: float


@dataclass
class Run:
    kind: str
    era: Era
    round: int
    levels: list[Level] = field(default_factory=list)
    handshakes: dict[str, int] = field(default_factory=dict)
    """Handshakes the upstream answered while the levels ran (after the probe and warm-up)."""


@dataclass
class Front:
    """A server wrk drives, and where its upstream's CPU is: another process, or its own children."""

    server: harness.Server
    upstream_pid: int | None
    counts: Path


# -- the servers ----------------------------------------------------------------------------------------------


def _peer_python(peer: str) -> Path | None:
    python = PEERS / peer / "bin" / "python"
    return python if python.exists() else None


def _upstream_argv(counts: Path, *, port: int | None = None, python: str = sys.executable) -> list[str]:
    where = ["--port", str(port)] if port is not None else ["--stdio"]
    return [python, "-m", "bench.servers.counted_upstream", "--handshakes", str(counts), *where]


def _fastmcp_argv(python: Path, url: str, port: int) -> list[str]:
    return [str(python), "-m", "bench.servers.fastmcp_proxy", "--port", str(port), "--upstream", url]


def _toml_list(items: list[str]) -> str:
    return "[" + ", ".join(_toml_str(x) for x in items) + "]"


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _proxy_config(workdir: Path, *, url: str | None = None, command: list[str] | None = None) -> Path:
    """Patchbay whose only connector is the upstream, unprefixed, so the tool is ``add`` as on the upstream."""
    lines = [
        "[server]",
        'name = "bench-proxy"',
        "",
        "[[connectors]]",
        'name = "up"',
        'type = "mcp"',
        'prefix = ""',
        f"protocol = {_toml_str(UPSTREAM_PROTOCOL)}",
    ]
    if url is not None:
        lines.append(f"url = {_toml_str(url)}")
    if command is not None:
        lines += [f"command = {_toml_list(command)}", f"cwd = {_toml_str(str(REPO))}", "idle_shutdown = 86400"]
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "patchbay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(name: str, argv_for_port: Any, log: Path) -> harness.Server:
    port = harness.free_port()
    return harness.spawn(name, argv_for_port(port), port, log, REPO)


@contextlib.contextmanager
def _front(
    name: str, argv_for_port: Any, log: Path, upstream_pid: int | None, counts: Path, ready_path: str = "/healthz"
) -> Iterator[Front]:
    server = _start(name, argv_for_port, log)
    try:
        harness.wait_ready(server, ready_path, deadline_s=READY_S)
        yield Front(server, upstream_pid, counts)
    finally:
        harness.stop(server)


# -- the wire -------------------------------------------------------------------------------------------------


def _headers(era: Era, session_id: str | None) -> dict[str, str]:
    if era == "modern":
        return wire.modern_headers("add")
    if era == "session":
        assert session_id is not None
        return wire.session_headers(session_id)
    return {"MCP-Protocol-Version": wire.SESSION_VERSION}  # 2025 era without a session (stateless servers)


def _body(era: Era) -> str:
    return wire.modern_call_template("add") if era == "modern" else wire.session_call_template("add", False)


def _probe_until_ok(front: Front, era: Era, headers: dict[str, str]) -> None:
    """The first good answer, within READY_S: a proxy lists its upstream's tools after it starts listening."""
    deadline = time.monotonic() + READY_S
    problem: str | None = "no answer"
    while time.monotonic() < deadline:
        if front.server.proc.poll() is not None:
            break
        with contextlib.suppress(OSError):
            problem = wire.check_add_result(wire.post(front.server.port, wire.fill(_body(era), 1), headers))
            if problem is None:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{front.server.name} ({era}): no good add(1, 2) answer: {problem}\n{front.server.log_tail()}")


# -- measuring ------------------------------------------------------------------------------------------------


def _process_cpu(pid: int) -> float:
    """utime + stime of one process (its threads included, its children not)."""
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return 0.0


def _cpu_split(front: Front) -> tuple[float, float]:
    """(the front's own CPU seconds, its upstream's): the upstream process tree, or the front's children."""
    own = _process_cpu(front.server.pid)
    if front.upstream_pid is not None:
        return own, harness.cpu_seconds(front.upstream_pid)
    return own, max(0.0, harness.cpu_seconds(front.server.pid) - own)  # the two reads are moments apart


def _level(front: Front, env: dict[str, str], connections: int, duration_s: float) -> Level:
    own0, up0 = _cpu_split(front)
    busy0 = harness.cpu_busy_seconds()
    run = harness.run_wrk(front.server.port, LUA, env, connections, duration_s)
    busy1 = harness.cpu_busy_seconds()
    own1, up1 = _cpu_split(front)
    calls = max(run.requests, 1)
    ours = (own1 - own0) + (up1 - up0)
    return Level(
        connections=connections,
        rps=run.rps,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        errors=run.errors,
        calls=run.requests,
        own_cpu_us=(own1 - own0) / calls * 1e6,
        upstream_cpu_us=(up1 - up0) / calls * 1e6,
        others_cpu0_pct=_share(busy1, busy0, harness.SERVER_CPU, ours, run.duration_s),
    )


def _drive(kind: str, front: Front, eras: tuple[Era, ...], setting: Setting, round_no: int) -> list[Run]:
    runs = []
    for era_index, era in enumerate(eras):
        session_id = wire.open_session(front.server.port) if era == "session" else None
        headers = _headers(era, session_id)
        _probe_until_ok(front, era, headers)
        base = (round_no * 10 + era_index) * 100
        if setting.warmup_s > 0:
            harness.run_wrk(front.server.port, LUA, wrk_env(_body(era), headers, base), 16, setting.warmup_s)
        before = read_counts(front.counts)
        run = Run(kind, era, round_no)
        for index, connections in enumerate(setting.levels, start=1):
            env = wrk_env(_body(era), headers, base + index)
            run.levels.append(_level(front, env, connections, setting.duration_s))
        after = read_counts(front.counts)
        run.handshakes = {method: after.get(method, 0) - before.get(method, 0) for method in after}
        print(_summary(run), flush=True)
        runs.append(run)
    return runs


def _summary(run: Run) -> str:
    cells = [
        f"c={lv.connections}: {lv.rps:,.0f} req/s p50 {lv.p50_ms:.2f} ms own {lv.own_cpu_us:,.0f} µs"
        f" upstream {lv.upstream_cpu_us:,.0f} µs" + (f" ERRORS {lv.errors}" if lv.errors else "")
        for lv in run.levels
    ]
    shakes = ", ".join(f"{k} {v}" for k, v in run.handshakes.items())
    return f"   {run.kind} {run.era}: " + "  ".join(cells) + f"  (upstream handshakes: {shakes})"


# -- one round ------------------------------------------------------------------------------------------------


def _round(kinds: list[str], setting: Setting, round_no: int, logdir: Path) -> list[Run]:
    runs: list[Run] = []
    counts = logdir / f"handshakes-http.r{round_no}.json"
    log = logdir / f"proxy-upstream-http.r{round_no}.log"
    with _front("upstream", lambda port: _upstream_argv(counts, port=port), log, None, counts) as upstream:
        runs += _drive("direct", upstream, ERAS, setting, round_no)
        url = f"http://127.0.0.1:{upstream.server.port}/mcp"
        pid = upstream.server.pid
        if "patchbay-proxy-http" in kinds:
            config = _proxy_config(logdir / f"proxy-http.r{round_no}", url=url)
            argv = functools.partial(patchbay_argv, config=config)
            with _front("patchbay-proxy-http", argv, logdir / f"proxy-http.r{round_no}.log", pid, counts) as front:
                runs += _drive("patchbay-proxy-http", front, ERAS, setting, round_no)
            if (python := _peer_python("fastmcp")) is not None:
                argv = functools.partial(_fastmcp_argv, python, url)
                with _front("fastmcp-proxy", argv, logdir / f"fastmcp-proxy.r{round_no}.log", pid, counts) as front:
                    runs += _drive("fastmcp-proxy", front, ("modern",), setting, round_no)
    if "patchbay-proxy-stdio" in kinds:
        runs += _stdio_round(setting, round_no, logdir)
    return runs


def _stdio_round(setting: Setting, round_no: int, logdir: Path) -> list[Run]:
    runs: list[Run] = []
    counts = logdir / f"handshakes-stdio.r{round_no}.json"
    config = _proxy_config(logdir / f"proxy-stdio.r{round_no}", command=_upstream_argv(counts))
    argv = functools.partial(patchbay_argv, config=config)
    with _front("patchbay-proxy-stdio", argv, logdir / f"proxy-stdio.r{round_no}.log", None, counts) as front:
        runs += _drive("patchbay-proxy-stdio", front, ERAS, setting, round_no)
    if (python := _peer_python("mcp-proxy")) is not None:
        peer_counts = logdir / f"handshakes-mcp-proxy.r{round_no}.json"
        mcp_proxy = str(python.parent / "mcp-proxy")
        command = _upstream_argv(peer_counts)

        def peer_argv(port: int) -> list[str]:
            head = [mcp_proxy, "--host", "127.0.0.1", "--port", str(port), "--stateless", "--pass-environment"]
            return [*head, "--cwd", str(REPO), "--log-level", "WARNING", "--", *command]

        log = logdir / f"mcp-proxy.r{round_no}.log"
        with _front("mcp-proxy", peer_argv, log, None, peer_counts, ready_path="/status") as front:
            runs += _drive("mcp-proxy", front, ("stateless",), setting, round_no)
    return runs


def run(
    kinds: list[str], quick: bool, logdir: Path, rounds: int | None = None, duration_s: float | None = None
) -> dict[str, Any]:
    """Every round of the chosen items (and their peers, when installed) with the load average around them."""
    setting = Setting([1, 16, 64], duration_s or (2.0 if quick else 10.0), 1.0 if quick else 2.0)
    missing = [peer for peer in ("fastmcp", "mcp-proxy") if _peer_python(peer) is None]
    if missing:
        print(f"   peers not installed ({', '.join(missing)}: run `make bench-peers`); quoting {BASELINE}", flush=True)
    load_before = os.getloadavg()
    runs: list[Run] = []
    for round_no in range(1, (rounds or (1 if quick else 3)) + 1):
        print(f"[proxy round {round_no}] {', '.join(kinds)} ...", flush=True)
        runs += _round(kinds, setting, round_no, logdir)
    result = {
        "runs": [asdict(r) for r in runs],
        "load": [load_before, os.getloadavg()],
        "missing_peers": missing,
        "duration_s": setting.duration_s,
    }
    raw = logdir / "proxy.json"
    raw.write_text(json.dumps(result, indent=1) + "\n")
    print(f"   raw results: {raw} (python -m bench.proxy --from {raw} rewrites the section)", flush=True)
    return result


# -- the report -----------------------------------------------------------------------------------------------

Key = tuple[str, str, int]


def _medians(runs: list[dict[str, Any]]) -> dict[Key, dict[str, float]]:
    """Per (kind, era, connections): the median over rounds of every measured figure."""
    grouped: dict[Key, list[dict[str, Any]]] = {}
    for run_ in runs:
        for level in run_["levels"]:
            grouped.setdefault((run_["kind"], run_["era"], level["connections"]), []).append(level)
    figures = ("rps", "p50_ms", "p99_ms", "own_cpu_us", "upstream_cpu_us", "others_cpu0_pct")
    out: dict[Key, dict[str, float]] = {}
    for key, levels in grouped.items():
        out[key] = {name: statistics.median(lv[name] for lv in levels) for name in figures}
        out[key]["errors"] = sum(lv["errors"] for lv in levels)
    return out


def _handshakes(runs: list[dict[str, Any]], kind: str, era: str) -> str:
    """Upstream handshakes per 1,000 calls after warm-up, as "initialize / server/discover"."""
    chosen = [r for r in runs if r["kind"] == kind and r["era"] == era]
    calls = sum(lv["calls"] for r in chosen for lv in r["levels"])
    if not calls:
        return "—"
    shakes = [sum(r["handshakes"].get(m, 0) for r in chosen) * 1000 / calls for m in ("initialize", "server/discover")]
    return f"{shakes[0]:g} / {shakes[1]:g} ({calls:,} calls)"


def _direct_era(era: str) -> str:
    return "session" if era == "stateless" else era  # a stateless 2025 call is compared with the 2025 direct one


def _added(runs: list[dict[str, Any]], kind: str, era: str, connections: int) -> float | None:
    """Median over rounds of (this front's p50 - the direct upstream's p50 in the same round), in ms."""
    direct = {
        r["round"]: lv["p50_ms"]
        for r in runs
        if r["kind"] == "direct" and r["era"] == _direct_era(era)
        for lv in r["levels"]
        if lv["connections"] == connections
    }
    added = [
        lv["p50_ms"] - direct[r["round"]]
        for r in runs
        if r["kind"] == kind and r["era"] == era and r["round"] in direct
        for lv in r["levels"]
        if lv["connections"] == connections
    ]
    return statistics.median(added) if added else None


def _rows(result: dict[str, Any], medians: dict[Key, dict[str, float]]) -> list[str]:
    rows = []
    for (kind, era, connections), m in medians.items():
        added = _added(result["runs"], kind, era, connections) if kind != "direct" else None
        upstream = f"{m['upstream_cpu_us']:,.0f}" if kind != "direct" else "—"
        shakes = _handshakes(result["runs"], kind, era) if connections == 1 and kind != "direct" else ""
        errors = f" ({m['errors']:.0f} errors)" if m["errors"] else ""
        rows.append(
            f"| {LABELS[kind]} | {era} | {connections} | {m['rps']:,.0f}{errors} | {m['p50_ms']:.2f} | "
            f"{m['p99_ms']:.1f} | {m['own_cpu_us']:,.0f} | {upstream} | "
            f"{'—' if added is None else f'{added:+.2f}'} | {shakes} | {m['others_cpu0_pct']:.0f} |"
        )
    return rows


def _verdicts(result: dict[str, Any], medians: dict[Key, dict[str, float]]) -> list[str]:
    lines = []
    for kind, limit in TARGET_ADDED_MS.items():
        for era in ERAS:
            cpu, added = medians.get((kind, era, 16)), _added(result["runs"], kind, era, 1)
            direct = medians.get(("direct", era, 16))
            if cpu is None or added is None or direct is None:
                continue
            lines.append(
                f"- {LABELS[kind]}, {era}: Patchbay's own CPU per proxied call {cpu['own_cpu_us']:,.0f} µs at c=16 "
                f"(target ≤ {TARGET_CPU_US:.0f} µs: {'met' if cpu['own_cpu_us'] <= TARGET_CPU_US else 'NOT met'}; "
                f"{cpu['own_cpu_us'] - direct['own_cpu_us']:,.0f} µs more than the upstream Patchbay spends serving "
                "the call itself); "
                f"added p50 at c=1 {added:.2f} ms (target ≤ {limit:g} ms: {'met' if added <= limit else 'NOT met'})"
            )
    return lines


def markdown(result: dict[str, Any], date: str = "") -> str:
    medians = _medians(result["runs"])
    rounds = len({r["round"] for r in result["runs"]})
    before, after = result["load"]
    lines = [
        f"{HEADING}\n",
        "Issue 13's benchmark (`python -m bench --only 'patchbay-proxy*'`): wrk → a front → one upstream, the upstream",
        "a second Patchbay serving the trivial `add` (over HTTP, or as a stdio child with `patchbay serve --stdio`),",
        f"connected in the 2025-11-25 handshake era. Front and upstream on CPU 0, wrk on CPU 1; {rounds} round(s) of",
        f"{result['duration_s']:g} s per level, medians. *Own CPU* is the front's process alone; *upstream CPU* its",
        "upstream's, measured apart (/proc). *Added p50* is the front's p50 minus the upstream's own (direct) p50 at",
        "the same era and concurrency in the same round (mcp-proxy's stateless 2025 calls: against the 2025 session",
        "direct). *Handshakes* are what the upstream itself counted after warm-up: `initialize` / `server/discover`",
        "per 1,000 calls. At c ≥ 16 the added p50 is mostly queueing: front and upstream share CPU 0, so the",
        "latency targets are read at c=1 and the CPU target at c=16. *Others on CPU 0* is the share of the server",
        "CPU that other processes of the shared machine took during the level (median): above ~10 % the row is noisy.",
        f"{date} load average {before[0]:.2f} before, {after[0]:.2f} after (2 CPUs shared with other work).\n",
        "| front | era | c | req/s | p50 ms | p99 ms | own CPU µs/call | upstream CPU µs/call | added p50 ms "
        "| handshakes /1,000 calls | others on CPU 0 % |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        *_rows(result, medians),
        "",
        *_verdicts(result, medians),
    ]
    if result["missing_peers"]:
        lines.append(f"- Peers not installed in this run ({', '.join(result['missing_peers'])}); {BASELINE}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", type=Path, required=True, help="a proxy.json a bench run wrote")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    section = markdown(json.loads(args.source.read_text()))
    print(section)
    if not args.no_doc:
        from bench.sql import write_doc

        write_doc(section, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
