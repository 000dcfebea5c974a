"""Embedded store under concurrent writes: kanban card writes through a real Patchbay server on a SQLite file.

Sixteen MCP clients (one 2025-era session and one keep-alive connection pool each) share a fixed offered load
of 100 writes/s, half `create_card` and half `delete_card` of a card the same client created, plus 20 reads/s
(`get_card`, `list_cards`). The load is open-loop: request *i* is due at ``start + i / rate`` whatever happened
to the earlier ones, and its latency runs from that due time to the answer, so a stalled server is charged for
the time requests waited to be sent (no coordinated omission). The first seconds are a warm-up and are not
counted. The server is `patchbay serve` with the kanban connector on Patchbay's own SQLite store.

Run: ``python -m bench --only store-writes`` (or ``python -m bench.store_writes [--quick]``). Results are printed
and written under "Embedded store: concurrent writes" in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from tests.support.servers import run_patchbay

from bench.sql import write_doc

CLIENTS = 16
WRITES_PER_S = 100.0
READS_PER_S = 20.0
SPARE_CARDS = 3
HEADING = "## Embedded store: concurrent writes"
PROTOCOL = "2025-06-18"
CONFIG = """\
[server]
log_level = "warning"
[store]
url = "sqlite:///store.db"
[[connectors]]
name = "kanban"
type = "kanban"
prefix = ""
seed = true
"""


@dataclass
class Samples:
    write: list[float] = field(default_factory=list)
    read: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Client:
    """One MCP session; ``call`` returns the tool's structured result or raises RuntimeError."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.AsyncClient(timeout=30, trust_env=False, limits=httpx.Limits(max_connections=32))
        self.headers = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL}
        self.cards: list[int] = []
        self.ids = 0

    async def open(self) -> None:
        params = {"protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
        opened = await self.http.post(
            self.url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}, headers=self.headers
        )
        opened.raise_for_status()
        if session := opened.headers.get("mcp-session-id"):
            self.headers["Mcp-Session-Id"] = session
        note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        (await self.http.post(self.url, json=note, headers=self.headers)).raise_for_status()
        # A few cards of its own before the clock starts, so a delete always has a card to delete even while
        # the create before it is still in flight: the mix stays half and half and the board stays small.
        for n in range(SPARE_CARDS):
            card = await self.call("create_card", {"board_id": 1, "column": "To do", "title": f"spare {n}"})
            self.cards.append(card["id"])

    async def call(self, tool: str, arguments: dict[str, Any]) -> Any:
        self.ids += 1
        body = {
            "jsonrpc": "2.0",
            "id": self.ids,
            "method": "tools/call",
            "params": {"name": tool, "arguments": arguments},
        }
        answer = await self.http.post(self.url, json=body, headers=self.headers)
        if answer.status_code != 200:
            raise RuntimeError(f"{tool}: HTTP {answer.status_code}")
        result = answer.json().get("result")
        if result is None or result.get("isError"):
            raise RuntimeError(f"{tool}: {answer.text[:300]}")
        return result["structuredContent"]

    async def write(self, n: int) -> None:
        # Every second write deletes a card this client made, so the board stays the same size.
        if n % 2 and self.cards:
            await self.call("delete_card", {"card_id": self.cards.pop(0)})
            return
        card = await self.call("create_card", {"board_id": 1, "column": "To do", "title": f"bench card {n}"})
        self.cards.append(card["id"])

    async def read(self, n: int) -> None:
        if n % 2:
            # One of the eight seeded cards: never deleted, so the read cannot race this client's deletes.
            await self.call("get_card", {"card_id": 1 + n % 8})
        else:
            await self.call("list_cards", {"board_id": 1, "limit": 20})


async def _timed(due: float, counted: bool, op: Any, into: list[float], samples: Samples) -> None:
    try:
        await op
    except (RuntimeError, httpx.HTTPError) as exc:
        samples.errors.append(str(exc) or exc.__class__.__name__)
        return
    if counted:
        into.append(time.perf_counter() - due)


async def _drive(url: str, seconds: float, warmup: float) -> Samples:
    clients = [Client(url) for _ in range(CLIENTS)]
    await asyncio.gather(*(c.open() for c in clients))
    plan = [(i / WRITES_PER_S, True, i) for i in range(int((seconds + warmup) * WRITES_PER_S))]
    plan += [(i / READS_PER_S, False, i) for i in range(int((seconds + warmup) * READS_PER_S))]
    plan.sort()
    samples = Samples()
    tasks = []
    start = time.perf_counter() + 0.2
    for offset, is_write, n in plan:
        due = start + offset
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        client = clients[n % CLIENTS]
        op = client.write(n // CLIENTS) if is_write else client.read(n // CLIENTS)
        into = samples.write if is_write else samples.read
        tasks.append(asyncio.create_task(_timed(due, offset >= warmup, op, into, samples)))
    await asyncio.gather(*tasks)
    await asyncio.gather(*(c.http.aclose() for c in clients))
    return samples


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] * 1000 if ordered else float("nan")


def run(quick: bool = False) -> dict[str, Any]:
    """Start the server on a fresh store, drive it, and return the percentiles (ms) and counts."""
    seconds, warmup = (8.0, 2.0) if quick else (30.0, 3.0)
    folder = Path(tempfile.mkdtemp(prefix="patchbay-bench-store-"))
    config = folder / "patchbay.toml"
    config.write_text(CONFIG)
    with run_patchbay(config, log_dir=folder) as server:
        cpu_before, wall_before = _cpu_seconds(server.proc.pid), time.perf_counter()
        samples = asyncio.run(_drive(server.url, seconds, warmup))
        cpu = _cpu_seconds(server.proc.pid) - cpu_before
        wall = time.perf_counter() - wall_before
    out: dict[str, Any] = {"seconds": seconds, "writes": len(samples.write), "reads": len(samples.read)}
    # The server's own CPU tells a slow path from a starved one on a shared machine.
    out["server_cpu_pct"] = 100 * cpu / wall
    out["server_cpu_ms_per_call"] = 1000 * cpu / max(1, round((seconds + warmup) * (WRITES_PER_S + READS_PER_S)))
    for kind, values in (("write", samples.write), ("read", samples.read)):
        for q in (0.5, 0.95, 0.99):
            out[f"{kind}_p{round(q * 100)}"] = _pct(values, q)
        out[f"{kind}_max"] = max(values, default=float("nan")) * 1000
    out["errors"] = len(samples.errors)
    out["first_error"] = samples.errors[0] if samples.errors else ""
    out["achieved_writes_per_s"] = len(samples.write) / seconds
    out["write_mean"] = statistics.fmean(samples.write) * 1000 if samples.write else float("nan")
    return out


def markdown(r: dict[str, Any]) -> str:
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    met = "met" if r["write_p99"] < 50 and not r["errors"] else "NOT met"
    lines = [
        HEADING,
        "",
        f"{CLIENTS} MCP clients (2025-era sessions over HTTP) share an open-loop load of {WRITES_PER_S:.0f} "
        f"writes/s (`create_card`, and `delete_card` of a card the client created) and {READS_PER_S:.0f} reads/s "
        f"(`get_card`, `list_cards`) against `patchbay serve` with the kanban connector on Patchbay's SQLite store, "
        f"{r['seconds']:.0f} s after a warm-up. Latency runs from the time a request was due, not sent. Measured "
        f"{stamp} on {os.cpu_count()} CPUs (load average {load:.1f}) with `python -m bench --only store-writes`.",
        "",
        "| | requests | p50 | p95 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind in ("write", "read"):
        lines.append(
            f"| {kind}s | {r[kind + 's']:,} | {r[kind + '_p50']:.1f} ms | {r[kind + '_p95']:.1f} ms | "
            f"{r[kind + '_p99']:.1f} ms | {r[kind + '_max']:.1f} ms |"
        )
    lines += [
        "",
        "Every write of the process to the SQLite file takes its turn on the file's one writer connection, and "
        "writes queued together share one commit (see `patchbay.store.writes`). Before that, each write opened "
        "its own transaction and losers polled in SQLite's busy handler: write p99 1,272 ms (max 3,371 ms; load "
        "average 3.3-3.8, `--quick`, 2026-12-06, code that also renumbered a whole column per delete).",
        "",
        "The writer path alone then spent 4.7-6.1 ms of server CPU per call and still missed the target: the "
        "writer thread ran each job through an ORM session (identity map, eager loads, relationship cascades), "
        "compiled a SAVEPOINT and RELEASE per job, and synced the disk at every commit (`synchronous=FULL`), "
        "while ORM reads in worker threads competed with it for the interpreter lock. Now creating and deleting a "
        "card are a few cached Core statements on the writer thread, savepoints are fixed statements, the "
        "write tools wait for the writer without holding a worker thread, `get_card` and `list_cards` read with "
        "Core, and SQLite runs with `synchronous=NORMAL` (durable against a crash of the process, not of the "
        "machine; docs/configuration.md, `[store]`). Measured back to back on 2026-12-06 while other engineers' "
        "tests and benchmarks ran (load average 1.9-2.9), 30 s runs: before, write p99 329-439 ms (max 460-592 "
        "ms) at 5.6-6.1 ms server CPU per call; after, write p99 17.5-28.7 ms (max 50-124 ms) at 1.9-2.3 ms. "
        "(Before, on a nearly quiet machine, load average 0.5, `--quick`: write p99 97.7 ms, 4.7 ms per call.) "
        "Generation-2 garbage collections happen only during start-up, not under this load.",
        "",
        "The server's CPU share shows how much of a core it got: below 100 % while the load needs more, the "
        "machine, not the store, is the limit. On this 2-CPU machine the load generator runs beside the server.",
    ]
    first = f" (first: {r['first_error']})" if r["errors"] else ""
    lines += [
        "",
        f"Server CPU during the run: {r['server_cpu_pct']:.0f} % of one core, {r['server_cpu_ms_per_call']:.1f} ms "
        f"per call. Errors: {r['errors']}{first}. Target write p99 < 50 ms at 100 writes/s: {met}.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.store_writes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 s of load instead of 30 s")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    section = markdown(run(quick=args.quick))
    print(section)
    if not args.no_doc:
        write_doc(section, HEADING)
        print(f"wrote the '{HEADING[3:]}' section of docs/performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
