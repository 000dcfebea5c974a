"""A fleet's shared state: what Redis and PostgreSQL cost per call, 1 versus 2 replicas, and the capacity model.

Items of `make bench` (issue 16's benchmark), each selectable with ``--only``:

- ``fleet-redis-calls``: Redis commands per tools/call by era with ``[redis]`` on, from ``INFO commandstats``
  deltas over every call of a level (2026-07-28 JSON; 2025 session answered in JSON; 2025 session answered in SSE);
- ``fleet-cpu``: Patchbay's CPU per call with Redis-backed sessions versus in-memory ones (same tool, same load,
  c=1/16/64), and 2026-07-28 calls with and without ``[redis]``;
- ``fleet-replicas``: throughput through HAProxy round-robin of 1 replica, 2 replicas sharing one core, and 2
  replicas on the machine's two cores (the second shared with wrk, HAProxy, Redis and PostgreSQL);
- ``fleet-capacity``: own CPU per call for a direct tool, a proxied tool and with the audit trail off, and from all
  of it the capacity model written into docs/deploy.md.

Every replica reads one config: PostgreSQL store (a throwaway cluster, fsync off), audit trail on, bench/tools.py's
``add``. Replicas run on CPU 0 (unless said otherwise); wrk, HAProxy, Redis and PostgreSQL inherit the harness's
CPU 1. Results go under "Fleet" in docs/performance.md (bench/fleet_report.py). A benchmark, never a test.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench import harness, wire
from bench.configs import BENCH, REPO, patchbay_argv
from bench.throughput import LUA, Setting, _share, wrk_env

ITEMS = ("fleet-redis-calls", "fleet-cpu", "fleet-replicas", "fleet-capacity")
Era = Literal["modern", "session-json", "session-sse"]
ERAS: tuple[Era, ...] = ("modern", "session-json", "session-sse")
READY_S = 60.0
STATS_SETTLE_S = 12.0  # PostgreSQL flushes an idle backend's statistics within 10 s (PGSTAT_IDLE_INTERVAL)
ROUND_TRIPS = "~round trips"
IGNORED_COMMANDS = {"info", "auth", "hello", "client|setinfo", "client", "ping"}
"""The harness's own INFO, and connection set-up: not per call."""


@dataclass(frozen=True)
class Case:
    """One way of serving the call: era, with or without ``[redis]``, audit on or off, direct or proxied."""

    era: Era
    redis: bool = True
    audit: bool = True
    proxied: bool = False

    @property
    def name(self) -> str:
        parts = [self.era, "redis" if self.redis else "memory"]
        parts += [] if self.audit else ["audit-off"]
        parts += ["proxied"] if self.proxied else []
        return "/".join(parts)


@dataclass
class Level:
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    calls: int
    cpu_us: float
    """Patchbay's own CPU per call: every replica process, nothing else."""
    redis_cmds: dict[str, float]
    """Redis commands per call, by command (INFO commandstats delta ÷ calls); ROUND_TRIPS: replies written."""
    redis_cpu_us: float
    pg_cpu_us: float
    wal_bytes: float
    audit_rows: float
    haproxy_cpu_us: float = 0.0
    replica_share: list[float] = field(default_factory=list)
    """Each replica's share of the replicas' CPU (how evenly round-robin spread the work)."""
    others_cpu0_pct: float = 0.0
    redis_outages: int = 0
    """Times a replica logged Redis as unreachable during the level (its calls then skip Redis: fewer commands)."""


@dataclass
class Run:
    item: str
    case: str
    round: int
    topology: str = "1 replica"
    levels: list[Level] = field(default_factory=list)
    pg_xacts_per_call: float | None = None


# -- the shared services ------------------------------------------------------------------------------------------


@dataclass
class Services:
    """PostgreSQL and Redis, started once for every item; ``pg_pid``/``redis_pid`` for their CPU."""

    pg: Any
    redis: Any
    database: str
    folder: Path

    @property
    def store_url(self) -> str:
        url: str = self.pg.url(self.database)
        return url

    @property
    def pg_pid(self) -> int:
        return int((self.pg.datadir / "postmaster.pid").read_text().split()[0])

    @property
    def redis_pid(self) -> int:
        assert self.redis.process is not None
        return int(self.redis.process.pid)

    def commandstats(self) -> dict[str, int]:
        """Calls per command so far, and under ``ROUND_TRIPS`` the replies Redis has written (one per round trip:
        a pipeline's replies go out in one write)."""
        import redis

        with redis.Redis.from_url(self.redis.url) as client:
            stats: dict[str, Any] = client.execute_command("INFO", "stats", "commandstats")
        counts = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_")}
        counts[ROUND_TRIPS] = int(stats["total_writes_processed"]) - 1  # minus the answer to this INFO
        return counts

    def pg_counters(self) -> tuple[int, int, int]:
        """(WAL position in bytes, audit records, committed + rolled back transactions of the database)."""
        sql = (
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, "
            "(SELECT count(*) FROM audit_records), "
            "(SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database())"
        )
        row = self.pg.fetch(sql, self.database)[0]
        return int(row[0]), int(row[1]), int(row[2])

    def settled_xacts(self) -> int:
        """The database's transaction count once every backend has flushed its statistics (bounded wait)."""
        deadline, last = time.monotonic() + STATS_SETTLE_S, -1
        while time.monotonic() < deadline:
            current = self.pg_counters()[2]
            if current - last <= 1:  # only our own query since the last look
                return current
            last = current
            time.sleep(1.1)  # a backend flushes at most once a second (PGSTAT_MIN_INTERVAL)
        return last


@contextlib.contextmanager
def services(folder: Path) -> Iterator[Services]:
    """A throwaway PostgreSQL cluster and redis-server (tests/support, as bench/audit.py uses), stopped on exit."""
    sys.path.insert(0, str(REPO))
    from tests.support.postgres import postgres_cluster
    from tests.support.redis_server import redis_server

    with postgres_cluster() as pg, redis_server(folder / "redis") as redis:
        pg.execute("CREATE DATABASE bench")
        yield Services(pg, redis, "bench", folder)


def _config(svc: Services, case: Case, folder: Path, prefix: str, upstream: str | None) -> Path:
    lines = [
        "[server]",
        'name = "bench-fleet"',
        f'secret = "{secrets.token_urlsafe(32)}"',
        "",
        "[store]",
        f'url = "{svc.store_url}"',
        "",
        "[audit]",
        f"enabled = {'true' if case.audit else 'false'}",
    ]
    if case.redis:
        lines += ["", "[redis]", f'url = "{svc.redis.url}"', f'key_prefix = "{prefix}"']
    lines += ["", "[[connectors]]", 'name = "bench"', 'prefix = ""']
    if upstream is None:
        lines += ['type = "python"', f'path = "{BENCH / "tools.py"}"']
    else:
        lines += ['type = "mcp"', f'url = "{upstream}"', 'protocol = "2025-11-25"']
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "patchbay.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@contextlib.contextmanager
def _upstream(logdir: Path) -> Iterator[str]:
    """bench/servers/counted_upstream.py over HTTP (the proxy benchmark's upstream), on CPU 0 like the front."""
    port = harness.free_port()
    argv = [sys.executable, "-m", "bench.servers.counted_upstream", "--handshakes", str(logdir / "fleet-up.json")]
    server = harness.spawn("upstream", [*argv, "--port", str(port)], port, logdir / "fleet-upstream.log", REPO)
    try:
        harness.wait_ready(server, deadline_s=READY_S)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        harness.stop(server)


@contextlib.contextmanager
def replicas(config: Path, cpus: list[int], logdir: Path, tag: str) -> Iterator[list[harness.Server]]:
    """One `patchbay serve` per entry of ``cpus``, pinned there; the first starts alone (it migrates the store)."""
    started: list[harness.Server] = []
    try:
        for index, cpu in enumerate(cpus):
            port = harness.free_port()
            log = logdir / f"fleet-{tag}-r{index}.log"
            started.append(harness.spawn(f"replica-{index}", patchbay_argv(port, config), port, log, REPO, cpu=cpu))
            if index == 0:
                harness.wait_ready(started[0], deadline_s=READY_S)
        for server in started[1:]:
            harness.wait_ready(server, deadline_s=READY_S)
        yield started
    finally:
        for server in started:
            harness.stop(server)


HAPROXY = """\
global
    maxconn 4000
    nbthread 1

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    http-reuse always

frontend mcp
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
{servers}
"""


@contextlib.contextmanager
def haproxy(backends: list[harness.Server], logdir: Path, tag: str) -> Iterator[harness.Server]:
    """HAProxy round-robin per request (keep-alive both sides, nothing sticky) on the harness's CPU 1."""
    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        raise RuntimeError("haproxy is not installed: make haproxy (Debian package haproxy)")
    port = harness.free_port()
    lines = "\n".join(f"    server r{i} 127.0.0.1:{s.port}" for i, s in enumerate(backends))
    config = logdir / f"haproxy-{tag}.cfg"
    config.write_text(HAPROXY.format(port=port, servers=lines))
    server = harness.spawn("haproxy", [binary, "-db", "-f", str(config)], port, logdir / f"haproxy-{tag}.log", REPO,
                           cpu=harness.LOAD_CPU)  # fmt: skip
    try:
        harness.wait_ready(server, deadline_s=READY_S)
        yield server
    finally:
        harness.stop(server)


# -- the calls ----------------------------------------------------------------------------------------------------


def _headers(era: Era, session_id: str | None) -> dict[str, str]:
    if era == "modern":
        return wire.modern_headers("add")
    assert session_id is not None
    return wire.session_headers(session_id)


def _body(era: Era) -> str:
    if era == "modern":
        return wire.modern_call_template("add")
    if era == "session-json":
        return wire.session_call_template("add", False)
    return wire.session_call_template("add_with_progress", True)  # a progress notification: an SSE answer


def _prepare(port: int, era: Era) -> dict[str, str]:
    """Headers for wrk, after one call checked in full (and its answer's content type)."""
    session_id = None if era == "modern" else wire.open_session(port)
    headers = _headers(era, session_id)
    reply = wire.post(port, wire.fill(_body(era), 1), headers)
    if (problem := wire.check_add_result(reply)) is not None:
        raise RuntimeError(f"{era}: probe call failed: {problem}")
    expected = "text/event-stream" if era == "session-sse" else "application/json"
    if reply.content_type != expected:
        raise RuntimeError(f"{era}: answered {reply.content_type}, expected {expected}")
    return headers


def _sample(svc: Services, servers: list[harness.Server], lb: harness.Server | None) -> dict[str, Any]:
    return {
        "replicas": [harness.cpu_seconds(s.pid) for s in servers],
        "haproxy": harness.cpu_seconds(lb.pid) if lb else 0.0,
        "redis": harness.cpu_seconds(svc.redis_pid),
        "pg": harness.cpu_seconds(svc.pg_pid),
        "cmds": svc.commandstats(),
        "pgc": svc.pg_counters(),
        "busy": harness.cpu_busy_seconds(),
    }


def _outages(servers: list[harness.Server], offsets: list[int]) -> int:
    """How often the replicas logged Redis as unreachable after ``offsets`` (their log sizes before a level)."""
    count = 0
    for server, offset in zip(servers, offsets, strict=True):
        with server.log.open("rb") as log:
            log.seek(offset)
            count += log.read().count(b"is unreachable")
    return count


def _level(svc: Services, servers: list[harness.Server], lb: harness.Server | None, port: int,
           env: dict[str, str], connections: int, duration_s: float) -> Level:  # fmt: skip
    offsets = [s.log_size() for s in servers]
    before = _sample(svc, servers, lb)
    run = harness.run_wrk(port, LUA, env, connections, duration_s)
    after = _sample(svc, servers, lb)
    calls = max(run.requests, 1)
    spent = [b - a for a, b in zip(before["replicas"], after["replicas"], strict=True)]
    cmds = {k: (v - before["cmds"].get(k, 0)) / calls for k, v in after["cmds"].items() if k not in IGNORED_COMMANDS}
    on_cpu0 = sum(c for c, s in zip(spent, servers, strict=True) if s.cpu == harness.SERVER_CPU)
    return Level(
        connections=connections,
        rps=run.rps,
        p50_ms=run.p50_ms,
        p99_ms=run.p99_ms,
        errors=run.errors,
        calls=run.requests,
        cpu_us=sum(spent) / calls * 1e6,
        redis_cmds={k: v for k, v in sorted(cmds.items()) if v > 0},
        redis_cpu_us=(after["redis"] - before["redis"]) / calls * 1e6,
        pg_cpu_us=(after["pg"] - before["pg"]) / calls * 1e6,
        wal_bytes=(after["pgc"][0] - before["pgc"][0]) / calls,
        audit_rows=(after["pgc"][1] - before["pgc"][1]) / calls,
        haproxy_cpu_us=(after["haproxy"] - before["haproxy"]) / calls * 1e6,
        replica_share=[s / sum(spent) if sum(spent) else 0.0 for s in spent],
        others_cpu0_pct=_share(after["busy"], before["busy"], harness.SERVER_CPU, on_cpu0, run.duration_s),
        redis_outages=_outages(servers, offsets),
    )


def _drive(svc: Services, servers: list[harness.Server], lb: harness.Server | None, era: Era,
           setting: Setting, run: Run, base: int) -> Run:  # fmt: skip
    port = (lb or servers[0]).port
    headers = _prepare(port, era)
    if setting.warmup_s > 0:
        harness.run_wrk(port, LUA, wrk_env(_body(era), headers, base), 16, setting.warmup_s)
    xacts_before = svc.settled_xacts()
    for index, connections in enumerate(setting.levels, start=1):
        env = wrk_env(_body(era), headers, base + index)
        level = _level(svc, servers, lb, port, env, connections, setting.duration_s)
        run.levels.append(level)
    calls = sum(lv.calls for lv in run.levels)
    run.pg_xacts_per_call = (svc.settled_xacts() - xacts_before) / calls if calls else None
    print(summary(run), flush=True)
    return run


def summary(run: Run) -> str:
    cells = []
    for lv in run.levels:
        cmds = sum(v for k, v in lv.redis_cmds.items() if k != ROUND_TRIPS)
        errors = f" ERRORS {lv.errors}" if lv.errors else ""
        errors += f" REDIS UNREACHABLE {lv.redis_outages}x" if lv.redis_outages else ""
        trips = lv.redis_cmds.get(ROUND_TRIPS, 0.0)
        cells.append(
            f"c={lv.connections}: {lv.rps:,.0f} req/s {lv.cpu_us:,.0f} µs/call"
            f" redis {cmds:.2f} cmds {trips:.2f} round trips{errors}"
        )
    return f"   {run.item} {run.case} ({run.topology}): " + "  ".join(cells)


# -- the items ----------------------------------------------------------------------------------------------------

_counter = [0]


def _next_base() -> int:
    _counter[0] += 1
    return _counter[0] * 100


def _case_run(svc: Services, case: Case, item: str, setting: Setting, round_no: int, logdir: Path) -> Run:
    """One case on one replica (CPU 0), driven directly by wrk."""
    tag = f"{item}-{case.name.replace('/', '-')}-r{round_no}"
    with contextlib.ExitStack() as stack:
        upstream = stack.enter_context(_upstream(logdir)) if case.proxied else None
        config = _config(svc, case, logdir / tag, f"b{secrets.token_hex(3)}:", upstream)
        servers = stack.enter_context(replicas(config, [harness.SERVER_CPU], logdir, tag))
        return _drive(svc, servers, None, case.era, setting, Run(item, case.name, round_no), _next_base())


TOPOLOGIES = {
    "1 replica (CPU 0)": [harness.SERVER_CPU],
    "2 replicas, both on CPU 0": [harness.SERVER_CPU, harness.SERVER_CPU],
    "2 replicas, CPU 0 and CPU 1": [harness.SERVER_CPU, harness.LOAD_CPU],
}


def _replicas_runs(svc: Services, setting: Setting, round_no: int, logdir: Path) -> list[Run]:
    runs = []
    for topology, cpus in TOPOLOGIES.items():
        tag = f"replicas{len(cpus)}-{cpus[-1]}-r{round_no}"
        config = _config(svc, Case("modern"), logdir / tag, f"b{secrets.token_hex(3)}:", None)
        with replicas(config, cpus, logdir, tag) as servers, haproxy(servers, logdir, tag) as lb:
            for era in ("modern", "session-json"):
                run = Run("fleet-replicas", Case(era).name, round_no, topology)
                runs.append(_drive(svc, servers, lb, era, setting, run, _next_base()))
    return runs


def _cases(items: list[str]) -> dict[str, list[Case]]:
    """Which cases each chosen item needs; an item reuses the runs of another where they coincide."""
    plan: dict[str, list[Case]] = {}
    if "fleet-cpu" in items:
        plan["fleet-cpu"] = [Case(era, redis) for era in ERAS for redis in (False, True)]
    elif "fleet-redis-calls" in items:
        plan["fleet-redis-calls"] = [Case(era) for era in ERAS]
    if "fleet-capacity" in items:
        extra = [Case("modern", audit=False), Case("modern", proxied=True)]
        if not plan:
            extra = [Case("modern"), Case("session-json"), *extra]
        plan["fleet-capacity"] = extra
    return plan


def run(items: list[str], quick: bool, logdir: Path, rounds: int | None = None,
        duration_s: float | None = None) -> dict[str, Any]:  # fmt: skip
    """Every round of the chosen fleet items; the raw result (bench/fleet_report.py turns it into text)."""
    duration = duration_s or (2.0 if quick else 10.0)
    full = Setting([1, 16, 64], duration, 1.0 if quick else 2.0)
    one = Setting([16], duration, full.warmup_s)  # capacity inputs: the CPU target level of the other items
    plan = _cases(items)
    load_before = os.getloadavg()
    runs: list[Run] = []
    with services(logdir / "fleet-services") as svc:
        for round_no in range(1, (rounds or (1 if quick else 2)) + 1):
            print(f"[fleet round {round_no}] {', '.join(items)} ...", flush=True)
            for item, cases in plan.items():
                setting = full if item == "fleet-cpu" else one
                runs += [_case_run(svc, case, item, setting, round_no, logdir) for case in cases]
            if "fleet-replicas" in items:
                runs += _replicas_runs(svc, full, round_no, logdir)
    result = {
        "items": items,
        "runs": [asdict(r) for r in runs],
        "load": [load_before, os.getloadavg()],
        "duration_s": duration,
        "cpus": os.cpu_count(),
        "pinned": harness.can_pin(),
        "redis_version": _version(["redis-server", "--version"]),
        "haproxy_version": _version(["haproxy", "-v"]) if "fleet-replicas" in items else None,
    }
    raw = logdir / "fleet.json"
    raw.write_text(json.dumps(result, indent=1) + "\n")
    print(f"   raw results: {raw} (python -m bench.fleet_report --from {raw} rewrites the sections)", flush=True)
    return result


def _version(argv: list[str]) -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        return (done.stdout or done.stderr).splitlines()[0].strip()
    return None
