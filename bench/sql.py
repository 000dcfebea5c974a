"""SQL connector benchmark: ``query`` latency through a real Patchbay server's ``/mcp`` against the driver alone.

One table of 1,000,000 rows, in SQLite (generated once with a recursive CTE into a cache folder) and in a
throwaway PostgreSQL cluster (generate_series, about two seconds). For each backend and query (a primary-key
lookup, a small aggregate) it runs N sequential calls over one keep-alive connection and reports p50/p95, for
`tools/call` through `/mcp` and for the same SQL through the driver (sqlite3 / psycopg) with a held connection.
The difference is what Patchbay adds: HTTP + JSON-RPC, the SQL parser check, the read-only transaction and
timeout set-up, and result shaping. Results are printed and written under "SQL connector" in docs/performance.md.

Run: ``python -m bench --only sql`` (or ``python -m bench.sql [--quick]``).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from tests.support.postgres import PASSWORD, postgres_cluster
from tests.support.servers import run_patchbay

ROWS = 1_000_000
CACHE = Path(os.environ.get("PATCHBAY_BENCH_CACHE", Path.home() / ".cache" / "patchbay-bench"))
DOC = Path(__file__).resolve().parents[1] / "docs" / "performance.md"
HEADING = "## SQL connector"
QUERIES = {
    "pk lookup": "SELECT id, customer, amount, note FROM events WHERE id = {k}",
    "aggregate (1,000 rows)": "SELECT count(*), sum(amount), max(note) FROM events WHERE id BETWEEN {k} AND {k} + 999",
}


def sqlite_file() -> Path:
    """The cached 1M-row SQLite database, made on first use."""
    path = CACHE / "sql-events-1m.sqlite"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, customer INTEGER, amount REAL, note TEXT)")
        conn.execute(
            f"INSERT INTO events WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {ROWS}) "
            "SELECT n, n % 5000, (n % 977) * 1.5, 'event ' || n FROM s"
        )
    conn.close()
    partial.replace(path)
    return path


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1000, p95 * 1000


def _timed(n: int, warmup: int, once: Callable[[int], Any]) -> tuple[float, float]:
    rng = random.Random(7)
    keys = [rng.randrange(1, ROWS - 1000) for _ in range(n + warmup)]
    samples = []
    for i, key in enumerate(keys):
        start = time.perf_counter()
        once(key)
        if i >= warmup:
            samples.append(time.perf_counter() - start)
    return _percentiles(samples)


def _mcp_caller(url: str, http: httpx.Client) -> Callable[[str], Any]:
    headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
    init = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "bench", "version": "1"},
        },
    }
    opened = http.post(url, json=init, headers=headers)
    opened.raise_for_status()
    if session := opened.headers.get("mcp-session-id"):
        headers["Mcp-Session-Id"] = session
    http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=headers)

    def call(sql: str) -> Any:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "query", "arguments": {"sql": sql}},
        }
        answer = http.post(url, json=body, headers=headers)
        result = answer.json()["result"]
        if result["isError"]:
            raise RuntimeError(f"query failed: {result['content'][0]['text']}")
        return result

    return call


def _through_mcp(connector: dict[str, Any], env: dict[str, str], n: int, warmup: int) -> dict[str, tuple[float, float]]:
    folder = Path(tempfile.mkdtemp(prefix="patchbay-bench-sql-"))
    config = folder / "patchbay.toml"
    lines = ["[server]", 'log_level = "warning"', "[[connectors]]"]
    lines += [f"{k} = {json.dumps(v)}" for k, v in connector.items()]
    config.write_text("\n".join(lines) + "\n")
    out = {}
    with run_patchbay(config, env=env, log_dir=folder) as server, httpx.Client(timeout=30, trust_env=False) as http:
        call = _mcp_caller(server.url, http)
        for label, template in QUERIES.items():
            out[label] = _timed(n, warmup, lambda k, t=template: call(t.format(k=k)))
    return out


def _sqlite_driver(path: Path, n: int, warmup: int) -> dict[str, tuple[float, float]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {
            label: _timed(n, warmup, lambda k, t=template: conn.execute(t.format(k=k)).fetchall())
            for label, template in QUERIES.items()
        }
    finally:
        conn.close()


def _pg_driver(url: str, n: int, warmup: int) -> dict[str, tuple[float, float]]:
    import psycopg

    with psycopg.connect(url) as conn:
        return {
            label: _timed(n, warmup, lambda k, t=template: conn.execute(t.format(k=k).encode()).fetchall())
            for label, template in QUERIES.items()
        }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Measure both backends; returns one row per (backend, query)."""
    n, warmup = (100, 10) if quick else (1000, 50)
    rows: list[dict[str, Any]] = []
    path = sqlite_file()
    base = {"name": "bench", "type": "sql", "prefix": "", "max_rows": 500}
    mcp = _through_mcp({**base, "url": f"sqlite:///{path}"}, {}, n, warmup)
    driver = _sqlite_driver(path, n, warmup)
    rows += [_row("SQLite", label, mcp[label], driver[label], n) for label in QUERIES]
    with postgres_cluster() as pg:
        pg.execute("CREATE DATABASE bench")
        pg.execute(
            "CREATE TABLE events (id int PRIMARY KEY, customer int, amount double precision, note text);"
            f"INSERT INTO events SELECT n, n % 5000, (n % 977) * 1.5, 'event ' || n FROM generate_series(1, {ROWS}) n;"
            "ANALYZE events;",
            database="bench",
        )
        connector = {**base, "url": pg.url("bench", with_password=False), "password_env": "BENCH_PG_PASSWORD"}
        mcp = _through_mcp(connector, {"BENCH_PG_PASSWORD": PASSWORD}, n, warmup)
        driver = _pg_driver(pg.url("bench").replace("+psycopg", ""), n, warmup)
    rows += [_row("PostgreSQL 15", label, mcp[label], driver[label], n) for label in QUERIES]
    return rows


def _row(backend: str, query: str, mcp: tuple[float, float], driver: tuple[float, float], n: int) -> dict[str, Any]:
    return {"backend": backend, "query": query, "n": n, "mcp_p50": mcp[0], "mcp_p95": mcp[1],
            "driver_p50": driver[0], "driver_p95": driver[1]}  # fmt: skip


def markdown(rows: list[dict[str, Any]]) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        f"`query` on a 1,000,000-row table, {rows[0]['n']} sequential calls per row after a warm-up, one keep-alive "
        f"connection, measured {stamp} on {os.cpu_count()} CPUs with `python -m bench --only sql`. *Through /mcp* is "
        "a real `patchbay serve` answering `tools/call` (parse and check the SQL, read-only transaction with a "
        "timeout, fetch, JSON + text table); *driver* is the same SQL on a held sqlite3/psycopg connection.",
        "",
        "Where the overhead goes (in-process profile, SQLite pk lookup): about 0.7 ms parsing, checking and "
        "regenerating the SQL (sqlglot), about 0.5 ms for the pooled connection (pre-ping, read-only set-up, "
        "rollback) and result shaping; the rest is HTTP + JSON-RPC and the hop to a worker thread. PostgreSQL adds "
        "round trips per call: pre-ping, `SET TRANSACTION READ ONLY`, `SET LOCAL statement_timeout`, and a "
        "server-side cursor (DECLARE/FETCH/CLOSE).",
        "",
        "| backend | query | through /mcp p50 | p95 | driver p50 | p95 | overhead p50 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['query']} | {r['mcp_p50']:.2f} ms | {r['mcp_p95']:.2f} ms | "
            f"{r['driver_p50']:.3f} ms | {r['driver_p95']:.3f} ms | +{r['mcp_p50'] - r['driver_p50']:.2f} ms |"
        )
    return "\n".join(lines) + "\n"


def write_doc(section: str, heading: str = HEADING) -> None:
    """Replace (or append) the ``heading`` section of docs/performance.md, leaving the rest as it is."""
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    start = text.find(heading + "\n")
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        after = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[after + 1 :] if after != -1 else "")
        text = text if after == -1 else text.replace(section + "## ", section + "\n## ", 1)
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sql", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 calls per measurement instead of 1,000")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    section = markdown(run(quick=args.quick))
    print(section)
    if not args.no_doc:
        write_doc(section)
        print(f"wrote the '{HEADING[3:]}' section of {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
