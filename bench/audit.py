"""Audit trail on versus off, same run: the added cost per call of recording it.

Two runtimes serve the same tools in one process, one with the audit trail on (a SQLite file, or PostgreSQL) and
one with ``[audit] enabled = false``. An open-loop driver offers calls to both at a fixed rate, interleaved, so
both see the same machine: call *i* is due at ``start + i / rate`` and its latency runs from that due time to the
result (no coordinated omission). The difference of the two latency distributions is what the trail costs. Reads
wait for one group commit, writes for two (intent before the tool runs, completion before the answer). The
writes are offered by 16 concurrent writers, which also gives the store's write latency under 16 writers.

Run: ``python -m bench --only audit`` (or ``python -m bench.audit [--quick]``). Results go under "Audit trail" in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.sql import write_doc

HEADING = "## Audit trail: on versus off"
BENCH = Path(__file__).resolve().parent
READ_RATE = 1000.0  # calls/s offered to EACH of the two runtimes
WRITERS = 16
WRITE_RATE = 60.0  # calls/s per writer


def _runtime(store_url: str | None, folder: Path) -> Any:
    from patchbay.app import Runtime
    from patchbay.settings import from_dict

    data: dict[str, Any] = {
        "connectors": [{"name": "b", "type": "python", "path": str(BENCH / "audit_tools.py"), "prefix": ""}],
        "audit": {"enabled": store_url is not None, "keep_days": 0},
    }
    if store_url is not None:
        data["store"] = {"url": store_url}
    return Runtime(from_dict(data, base_dir=folder))  # checkpoints of a PostgreSQL store land in folder


def _scope(index: int) -> Any:
    from patchbay.auth.principal import Principal
    from patchbay.protocol.scope import CallScope

    ada = Principal("user:ada", "user", roles=frozenset({"staff"}), username="ada", client_id="bench")
    return CallScope("modern", "2026-07-28", index, "tools/call", {}, principal=ada)


async def _offer(dispatchers: list[Any], tool: str, rate: float, seconds: float, offset: int) -> list[list[float]]:
    """Open loop at ``rate`` calls/s to each dispatcher, interleaved; latencies in µs per dispatcher."""
    samples: list[list[float]] = [[] for _ in dispatchers]
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int(rate * seconds) * len(dispatchers)

    async def one(index: int, due: float) -> None:
        which = index % len(dispatchers)
        arguments = {"q": "x"} if tool == "look" else {"text": "t", "secret": "s"}
        params = {"name": tool, "arguments": arguments}
        await dispatchers[which].dispatch("tools/call", params, _scope(offset + index))
        samples[which].append((loop.time() - due) * 1e6)

    for index in range(total):
        due = start + index / (rate * len(dispatchers))
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, due)))
    await asyncio.gather(*tasks)
    return samples


async def _writers(dispatchers: list[Any], seconds: float) -> list[list[float]]:
    runs = await asyncio.gather(
        *(_offer(dispatchers, "note", WRITE_RATE, seconds, 10_000_000 * (w + 1)) for w in range(WRITERS))
    )
    return [[x for run in runs for x in run[i]] for i in range(len(dispatchers))]


def _cut(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": cuts[49], "p99": cuts[98], "n": float(len(values))}


async def _measure(store_url: str, seconds: float, folder: Path) -> dict[str, dict[str, float]]:
    on, off = _runtime(store_url, folder), _runtime(None, folder)
    await on.start()
    await off.start()
    try:
        pair = [on.dispatcher, off.dispatcher]
        await _offer(pair, "look", READ_RATE, min(1.0, seconds), 0)  # warm-up, not counted
        reads = await _offer(pair, "look", READ_RATE, seconds, 1_000_000)
        writes = await _writers(pair, seconds)
        health = on.dispatcher.audit.health()
    finally:
        await on.stop()
        await off.stop()
    result = {"read on": _cut(reads[0]), "read off": _cut(reads[1])}
    result |= {"write on": _cut(writes[0]), "write off": _cut(writes[1])}
    result["health"] = {
        "written": float(health["written"]),
        "lost": float(health["lost"]),
        "late": float(health["late"]),
    }
    return result


@contextlib.contextmanager
def _stores(postgres: bool) -> Iterator[tuple[Path, list[tuple[str, str]]]]:
    with tempfile.TemporaryDirectory(prefix="patchbay-bench-audit-") as name:
        folder = Path(name)
        stores = [("SQLite", f"sqlite:///{folder / 'audit.db'}")]
        if not postgres:
            yield folder, stores
            return
        from tests.support.postgres import PostgresMissing, postgres_cluster

        try:
            with postgres_cluster() as pg:
                pg.execute('CREATE DATABASE "bench_audit"')
                yield folder, [*stores, ("PostgreSQL", pg.url("bench_audit"))]
        except PostgresMissing as exc:
            print(f"PostgreSQL skipped: {exc}")
            yield folder, stores


def run(quick: bool = False, postgres: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    seconds = 3.0 if quick else 10.0
    with _stores(postgres) as (folder, stores):
        return {label: asyncio.run(_measure(url, seconds, folder)) for label, url in stores}


def markdown(results: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = [
        f"{HEADING}\n",
        f"`python -m bench.audit`: in-process, reads offered at {READ_RATE:,.0f} calls/s to a runtime with the audit "
        f"trail on and {READ_RATE:,.0f} calls/s to one with it off, interleaved; writes from {WRITERS} writers at "
        f"{WRITE_RATE:.0f} calls/s each (to each runtime). Latency from each call's due time to its result, on "
        "this 2-core machine; `make bench` rewrites this section.\n",
        "| store | calls | p50 off µs | p50 on µs | added p50 µs | p99 off µs | p99 on µs | added p99 µs |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for store, r in results.items():
        for kind in ("read", "write"):
            on, off = r[f"{kind} on"], r[f"{kind} off"]
            lines.append(
                f"| {store} | {kind}s ({on['n']:,.0f}) | {off['p50']:.0f} | {on['p50']:.0f} | "
                f"{on['p50'] - off['p50']:.0f} | {off['p99']:.0f} | {on['p99']:.0f} | {on['p99'] - off['p99']:.0f} |"
            )
    lines.append("")
    lines.append(
        "A write's added latency is the store's write latency under 16 concurrent writers: two group commits "
        "(intent, completion). Records lost or late in these runs: "
        + ", ".join(f"{s} {r['health']['lost']:.0f}/{r['health']['late']:.0f}" for s, r in results.items())
        + ". Reads are answered once their record is queued while the writer keeps up ([audit] read_window_ms), "
        "so they pay for building the record only; a write waits for two commits on the one writer thread, where "
        "each record costs its redaction, canonical text and hash and each commit the store's transaction "
        "overhead: that thread shares the event loop's GIL."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 s per measurement instead of 10")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    section = markdown(run(quick=args.quick, postgres=not args.no_postgres))
    print(section)
    if not args.no_doc:
        write_doc(section, HEADING)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
