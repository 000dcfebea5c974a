"""The openapi connector's benchmark (issue 14): GitHub's spec loaded, its tool list's size, the CPU of one call.

Run: python -m bench.openapi [--quick] [--no-doc]; `make bench` runs it as the item ``openapi`` and writes its
section of docs/performance.md. A benchmark, never a test.

1. **Load.** GitHub's published description (``@octokit/openapi``, api.github.com.json, 13 MB) read with
   ``load_path`` and turned into tools with ``build_tools`` in ``tools`` and in ``search`` mode, each run in a
   fresh interpreter (nothing cached, nothing warm). Peak RSS is ``ru_maxrss``: the absolute figure, and the
   growth over the interpreter's own peak once the connector's modules are imported. Median of 3 runs.
2. **Tokens.** The ``tools/list`` each mode publishes, estimated with ``patchbay.connectors.openapi.tokens``.
3. **Calls.** The connector's own CPU per call: three operations of tests/fixtures/openapi/rest_api.yaml (a GET
   with query parameters of every style, a POST with a JSON body, a GET answering a ~2 KB ticket) through each
   tool's handler (argument check, request build, credentials, send, answer shaping), called directly with a
   Context (no MCP dispatch, no gate: those are measured in the sections above). The API is a canned HTTP/1.1
   answerer in another process on CPU 0 (its work is not this process's CPU); this process runs on CPU 1. CPU
   per call = getrusage of this process around a batch of sequential calls / the batch size; the median batch
   is reported, with the wall-clock p50 of single calls. The parts (check, build, credentials, shaping, a bare
   round trip on the pooled client) are then timed alone, without I/O where they have none, and the whole handler
   once more with the route's client answering the recorded answer at once: the connector's own CPU, the issue's
   measure (the API's time, the socket and the kernel's loopback work excluded).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import inspect
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import harness
from bench.servers.canned_rest import CANNED

if TYPE_CHECKING:
    from patchbay.connectors.openapi import OpenApiConnector
    from patchbay.definitions import Tool, ToolResult

REPO = Path(__file__).resolve().parents[1]
HEADING = "## OpenAPI connector"
GITHUB = REPO / "tests" / "e2e" / "node" / "node_modules" / "@octokit" / "openapi" / "generated" / "api.github.com.json"
REST_SPEC = REPO / "tests" / "fixtures" / "openapi" / "rest_api.yaml"
PREFIX = "github_"  # the catalog's prefix for a connector named "github": counted in the names and the tokens
MODES = ("tools", "search")
TARGET_LOAD_S, TARGET_RSS_MB, TARGET_TOKENS, TARGET_CPU_US = 1.5, 150.0, 1500, 200.0

# -- 1 and 2: GitHub's spec, in a fresh interpreter ------------------------------------------------------------


def _child_load(mode: str, spec_path: Path) -> dict[str, Any]:
    """One load in this (fresh) interpreter; what the parent reads from its stdout."""
    from patchbay.catalog.catalog import tool_wire
    from patchbay.connectors.openapi.options import OpenApiOptions
    from patchbay.connectors.openapi.spec import load_path
    from patchbay.connectors.openapi.tokens import estimate_tokens
    from patchbay.connectors.openapi.tools import build_tools

    async def never(*args: Any) -> Any:
        raise AssertionError("the load benchmark makes no calls")

    options = OpenApiOptions.model_validate({"spec": str(spec_path), "mode": mode})
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux: KiB
    started, cpu = time.perf_counter(), time.process_time()
    spec = load_path(spec_path)
    intake_s, intake_cpu = time.perf_counter() - started, time.process_time() - cpu
    intake_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    built = build_tools(spec, options, never, prefix=PREFIX, label="github")
    total_s, total_cpu = time.perf_counter() - started, time.process_time() - cpu
    total_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "mode": built.mode,
        "operations": len(spec.operations),
        "skipped": len(spec.skipped),
        "tools": len(built.tools),
        "published_tokens": estimate_tokens([tool_wire(PREFIX + tool.name, tool) for tool in built.tools]),
        "operation_tokens": built.estimated_tokens,
        "intake_s": intake_s,
        "intake_cpu_s": intake_cpu,
        "total_s": total_s,
        "total_cpu_s": total_cpu,
        "baseline_mb": kb / 1024,
        "intake_peak_mb": intake_kb / 1024,
        "total_peak_mb": total_kb / 1024,
    }


def load_runs(mode: str, runs: int, spec_path: Path = GITHUB) -> list[dict[str, Any]]:
    """``runs`` fresh interpreters, each loading the spec once in ``mode``."""
    out = []
    for _ in range(runs):
        argv = [sys.executable, "-m", "bench.openapi", "--child-load", mode, "--spec", str(spec_path)]
        done = subprocess.run(
            harness.pinned(argv, harness.SERVER_CPU), cwd=REPO, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise RuntimeError(f"loading {spec_path.name} in {mode} mode failed: {done.stderr[-1500:]}")
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def _median(rows: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(row[key] for row in rows))


# -- 3: calls against a canned API in another process ----------------------------------------------------------


CALLS: dict[str, dict[str, Any]] = {
    "list_tickets": {
        "page": 2,
        "per_page": 50,
        "status": "open",
        "labels": ["hardware", "printer"],
        "filter": {"customer_id": 42, "priority": "high"},
        "X_Request_ID": "bench-1",
    },
    "create_ticket": {
        "title": "Printer on floor 3 prints blank pages",
        "description": "Since the toner was replaced the printer feeds paper but prints nothing.",
        "priority": "high",
        "labels": ["hardware", "printer"],
        "customer": {"id": 42},
        "comments": [{"author": "ann", "text": "Seen twice today."}],
    },
    "get_ticket": {"ticket_id": 7},
}
ROUTES = {
    "list_tickets": b"GET /api/tickets",
    "create_ticket": b"POST /api/tickets",
    "get_ticket": b"GET /api/tickets/7",
}
LABELS = {
    "list_tickets": "GET /tickets: 6 query/header arguments (form arrays, deepObject)",
    "create_ticket": "POST /tickets: JSON body of 6 properties",
    "get_ticket": "GET /tickets/{ticket_id}: ~2 KB JSON answer",
}


@dataclass
class CallRow:
    tool: str
    output_schema: bool  # the connector's option: whether answers are checked against the tool's outputSchema
    cpu_us: float  # median over batches of (user + system CPU of this process) / calls
    user_us: float
    wall_p50_us: float
    batches: int
    calls: int
    answer_bytes: int  # the JSON body the API answers
    parts_us: dict[str, float]  # each part alone: CPU µs per call (median of repeats)
    own_us: float = 0.0  # the whole handler with the answer recorded (no I/O): the connector's own CPU per call


async def _batch(handler: Callable[[], Awaitable[Any]], calls: int, walls: list[float]) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(calls):
        started = time.perf_counter()
        result = await handler()
        walls.append(time.perf_counter() - started)
        if result.is_error:
            raise RuntimeError(f"the call failed: {result.content}")
    after = resource.getrusage(resource.RUSAGE_SELF)
    user = after.ru_utime - before.ru_utime
    return (user + after.ru_stime - before.ru_stime) / calls * 1e6, user / calls * 1e6


async def _cpu_per_call(fn: Callable[[], Any], calls: int, repeats: int = 5) -> float:
    """CPU µs per call of ``fn`` (awaited when it returns an awaitable), the median of ``repeats`` loops."""
    samples = []
    for _ in range(repeats):
        started = time.process_time()
        for _ in range(calls):
            if inspect.isawaitable(outcome := fn()):
                await outcome
        samples.append((time.process_time() - started) / calls * 1e6)
    return statistics.median(samples)


def _context() -> Any:
    from patchbay.context import Context
    from patchbay.protocol.scope import CallScope

    return Context(CallScope(era="legacy", version="2025-11-25", request_id=1, method="tools/call", client_caps={}))


class _Recorded:
    """Stands in for a route's pooled client: answers every fetch at once with one recorded answer."""

    def __init__(self, client: Any, answer: Any) -> None:
        self.client, self.answer = client, answer
        self.scheme, self.host_header = client.scheme, client.host_header

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return self.answer


async def _own_cpu(connector: OpenApiConnector, tool: Tool, arguments: dict[str, Any], calls: int) -> float:
    """CPU µs per call of ``tool``'s whole handler with its route's client answering a recorded answer."""
    caller, built = connector._caller, connector._built
    assert caller is not None and built is not None, "the connector is open"
    route = caller._routes[id(built.plans[tool.name])]
    request = route.builder.build(arguments)
    answer = await route.client.fetch(
        request.method, request.headers, request.body, route.read_cap, target=request.target
    )
    client, route.client = route.client, _Recorded(route.client, answer)
    ctx = _context()
    try:
        await _cpu_per_call(lambda: tool.handler(dict(arguments), ctx), calls, repeats=1)  # warm
        return await _cpu_per_call(lambda: tool.handler(dict(arguments), ctx), calls, repeats=7)
    finally:
        route.client = client


async def _parts(connector: OpenApiConnector, tool: Tool, arguments: dict[str, Any], calls: int) -> dict[str, float]:
    """Each step of a call alone, CPU µs per call: what the handler's total is made of."""
    from patchbay.connectors.openapi.request import HttpRequest
    from patchbay.connectors.openapi.tools import ArgumentCheck

    caller, built = connector._caller, connector._built
    assert caller is not None and built is not None, "the connector is open"
    plan = built.plans[tool.name]
    route = caller._routes[id(plan)]
    check = ArgumentCheck(tool.input_schema)
    check.problem(arguments)  # compiled on first use, as in the handler
    request = route.builder.build(arguments)
    await route.auth.apply(HttpRequest(request.method, request.target, dict(request.headers), request.body), None)

    async def credentials() -> Any:
        fresh = HttpRequest(request.method, request.target, dict(request.headers), request.body)
        return await route.auth.apply(fresh, None)

    async def round_trip() -> Any:
        return await route.client.fetch(
            request.method, request.headers, request.body, route.read_cap, target=request.target
        )

    response, body = await round_trip()
    path = request.target.partition("?")[0]
    return {
        "check": await _cpu_per_call(lambda: check.problem(arguments), calls),
        "build": await _cpu_per_call(lambda: route.builder.build(arguments), calls),
        "credentials": await _cpu_per_call(credentials, calls),
        "shape": await _cpu_per_call(
            lambda: route.shaper.result(response.status_code, response.headers, body, method=request.method, path=path),
            calls,
        ),
        "round trip (pooled client)": await _cpu_per_call(round_trip, calls),
    }


async def _open(base_url: str, scratch: Path, output_schema: bool) -> OpenApiConnector:
    from patchbay.connectors.base import ConnectorEnv
    from patchbay.connectors.openapi import OpenApiConnector
    from patchbay.connectors.openapi.options import OpenApiOptions

    options = OpenApiOptions.model_validate(
        {
            "spec": str(REST_SPEC),
            "base_url": base_url,
            "mode": "tools",
            "auth": {"type": "bearer", "token": "b"},
            "output_schema": output_schema,
        }
    )
    connector = OpenApiConnector("tickets", options, ConnectorEnv(base_dir=scratch, store_url="sqlite://"))
    await connector.open()
    return connector


async def _measure_calls(base_url: str, batches: int, per_batch: int, scratch: Path) -> list[CallRow]:
    """Each operation through two connectors, outputSchema checked and not, batches interleaved (a busy machine
    then skews both alike)."""
    connectors = {flag: await _open(base_url, scratch, flag) for flag in (True, False)}
    ctx = _context()
    rows = []
    try:
        for name, arguments in CALLS.items():
            tools = {flag: next(t for t in c.tools() if t.name == name) for flag, c in connectors.items()}

            def call(
                flag: bool, tools: dict[bool, Tool] = tools, arguments: dict[str, Any] = arguments
            ) -> Callable[[], Awaitable[ToolResult]]:
                tool = tools[flag]
                return lambda: tool.handler(dict(arguments), ctx)

            walls: dict[bool, list[float]] = {flag: [] for flag in tools}
            samples: dict[bool, list[tuple[float, float]]] = {flag: [] for flag in tools}
            for flag in tools:
                await _batch(call(flag), 200, [])  # warm-up: validators compiled, connection open
            for _ in range(batches):
                for flag in tools:
                    samples[flag].append(await _batch(call(flag), per_batch, walls[flag]))
            answer = len(CANNED[ROUTES[name]].partition(b"\r\n\r\n")[2])
            for flag, tool in tools.items():
                cpu = statistics.median(s[0] for s in samples[flag])
                user = statistics.median(s[1] for s in samples[flag])
                wall = statistics.median(walls[flag]) * 1e6
                parts = await _parts(connectors[flag], tool, arguments, max(200, per_batch // 2))
                own = await _own_cpu(connectors[flag], tool, arguments, max(500, per_batch))
                rows.append(CallRow(name, flag, cpu, user, wall, batches, batches * per_batch, answer, parts, own))
    finally:
        for connector in connectors.values():
            await connector.close()
    return sorted(rows, key=lambda row: (not row.output_schema, list(CALLS).index(row.tool)))


def measure_calls(batches: int, per_batch: int) -> list[CallRow]:
    """The canned API on CPU 0 in a child process; the calls from this process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    child = subprocess.Popen(
        harness.pinned([sys.executable, "-m", "bench.servers.canned_rest", "--port", str(port)], harness.SERVER_CPU),
        cwd=REPO,
    )
    try:
        _wait_port(port, child)
        with tempfile.TemporaryDirectory(prefix="patchbay-bench-openapi-") as scratch:
            return asyncio.run(_measure_calls(f"http://127.0.0.1:{port}/api", batches, per_batch, Path(scratch)))
    finally:
        child.terminate()
        child.wait(10)


def _wait_port(port: int, child: subprocess.Popen[bytes], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the canned API exited with {child.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"the canned API did not listen on {port} within {within:g} s")


# -- the run and its report ------------------------------------------------------------------------------------


@dataclass
class Result:
    date: str
    load_average: tuple[float, float]  # before and after
    loads: dict[str, list[dict[str, Any]]]
    calls: list[CallRow]


def run(quick: bool = False, *, runs: int | None = None) -> Result:
    from patchbay.errors import PatchbayError

    if not GITHUB.exists():
        raise RuntimeError(f"{GITHUB.relative_to(REPO)} is missing: `make node` installs the npm test packages")
    before = os.getloadavg()[0]
    loads = {mode: load_runs(mode, runs or (1 if quick else 3)) for mode in MODES}
    try:
        calls = measure_calls(5 if quick else 20, 200 if quick else 500)
    except (PatchbayError, KeyError, AttributeError) as exc:
        # The fixture spec lost a measured tool or fails to load, or the connector's internals that _parts
        # times one by one were renamed: the item fails with the reason instead of stopping `python -m bench`.
        raise RuntimeError(f"calls through the openapi connector: {exc!r}") from exc
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return Result(date, (before, os.getloadavg()[0]), loads, calls)


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _load_lines(result: Result) -> list[str]:
    lines = [
        "| mode | operations (skipped) | published tools | intake s (CPU s) | intake + tools s (CPU s) "
        "| peak RSS after intake MB | peak RSS after tools MB | RSS before loading MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, rows in result.loads.items():
        base = _median(rows, "baseline_mb")
        lines.append(
            f"| {mode} | {rows[0]['operations']:,} ({rows[0]['skipped']}) | {rows[0]['tools']:,} "
            f"| {_median(rows, 'intake_s'):.2f} ({_median(rows, 'intake_cpu_s'):.2f}) "
            f"| {_median(rows, 'total_s'):.2f} ({_median(rows, 'total_cpu_s'):.2f}) "
            f"| {_median(rows, 'intake_peak_mb'):.0f} (+{_median(rows, 'intake_peak_mb') - base:.0f}) "
            f"| {_median(rows, 'total_peak_mb'):.0f} (+{_median(rows, 'total_peak_mb') - base:.0f}) | {base:.0f} |"
        )
    return lines


def _call_lines(rows: list[CallRow]) -> list[str]:
    names = list(rows[0].parts_us) if rows else []
    lines = [
        "| call | outputSchema checked | CPU µs/call p50 (user) | wall p50 µs | connector alone (no I/O) µs | "
        + " | ".join(f"{n} µs" for n in names)
        + " |",
        "|---|---|---:|---:|---:|" + "---:|" * len(names),
    ]
    for row in rows:
        parts = " | ".join(f"{row.parts_us[n]:.0f}" for n in names)
        checked = "yes" if row.output_schema else "no (`output_schema = false`)"
        lines.append(
            f"| {LABELS[row.tool]} | {checked} | {row.cpu_us:.0f} ({row.user_us:.0f}) | {row.wall_p50_us:.0f} "
            f"| {row.own_us:.0f} | {parts} |"
        )
    return lines


def _targets(result: Result) -> list[str]:
    tools, search = result.loads["tools"], result.loads["search"]
    worst_s = max(_median(rows, "total_s") for rows in result.loads.values())
    worst_cpu_s = max(_median(rows, "total_cpu_s") for rows in result.loads.values())
    worst_mb = max(_median(rows, "total_peak_mb") for rows in result.loads.values())
    grown = max(_median(rows, "total_peak_mb") - _median(rows, "baseline_mb") for rows in result.loads.values())
    tokens = int(_median(search, "published_tokens"))
    worst_cpu = max((row.cpu_us for row in result.calls if row.output_schema), default=0.0)
    unchecked = max((row.cpu_us for row in result.calls if not row.output_schema), default=0.0)
    worst_own = max((row.own_us for row in result.calls), default=0.0)
    return [
        f"- Load, intake + tools, slower mode: {worst_s:.2f} s wall, {worst_cpu_s:.2f} s CPU (target ≤ "
        f"{TARGET_LOAD_S:g} s: {_verdict(worst_s <= TARGET_LOAD_S)}; wall above CPU is time the shared CPU was "
        "given to other processes).",
        f"- Peak RSS: {worst_mb:.0f} MB absolute, +{grown:.0f} MB over the interpreter with the connector imported "
        f"(target ≤ {TARGET_RSS_MB:g} MB: {_verdict(worst_mb <= TARGET_RSS_MB)} absolute).",
        f"- `tools/list` in search mode: {tokens:,} tokens for {search[0]['tools']} tools (target ≤ "
        f"{TARGET_TOKENS:,}: {_verdict(tokens <= TARGET_TOKENS)}); tools mode: "
        f"{int(_median(tools, 'published_tokens')):,} tokens for {tools[0]['tools']:,} tools.",
        f"- The connector's own CPU per call (argument check, request build, credentials, answer shaping; the "
        f"API's time excluded), worst of the three operations and both configurations: {worst_own:.0f} µs (target "
        f"≤ {TARGET_CPU_US:g} µs: {_verdict(worst_own <= TARGET_CPU_US)}). With the pooled client's round trip "
        f"(its event loop, socket and the kernel's loopback work) the whole call is {worst_cpu:.0f} µs p50 "
        f"({_verdict(worst_cpu <= TARGET_CPU_US)} within {TARGET_CPU_US:g} µs), {unchecked:.0f} µs with "
        "`output_schema = false`.",
    ]


NOTES = (
    "Before the checks used jsonschema-rs (same bench, `--quick`, 2026-12-06, load average 1-2): the whole call "
    "took 1,169 / 1,043 / 2,083 µs with the outputSchema check and 581 / 687 / 249 µs without, for the three "
    "operations above; shaping the answer with the check (jsonschema's `iter_errors` over it) 520 / 300 / "
    "1,576 µs, the argument check (compiled predicates, plus a jsonschema validator for each argument whose schema "
    "holds a `$ref` or `uniqueItems`) 83-282 µs. Now both checks are compiled jsonschema-rs validators that only "
    "accept (checks.py; jsonschema words a refusal): 1-6 µs for the arguments, a few µs for an answer. The largest "
    "step left in the connector is building GET /tickets' request (nine `urllib.parse.quote` calls for its form "
    "and deepObject values); the whole call is dominated by the pooled client's round trip, the same HTTP/1.1 "
    'client the mcp connector uses (`bare-origin` under "Upstream MCP client" above), and by the event loop '
    "waking up for the answer, both of which cost more on a shared CPU (other processes run between two calls and "
    "leave the caches cold)."
)


def _findings(result: Result) -> list[str]:
    """Where a call's CPU goes, from the parts of the configuration that checks answers."""
    plain = {row.tool: row for row in result.calls if not row.output_schema}
    lines = []
    for row in (row for row in result.calls if row.output_schema):
        other = plain.get(row.tool)
        if other is None:
            continue
        parts, trip = row.parts_us, row.parts_us["round trip (pooled client)"]
        lines.append(
            f"- {LABELS[row.tool]} ({row.answer_bytes:,}-byte answer): the connector alone {row.own_us:,.0f} µs "
            f"({other.own_us:,.0f} without the outputSchema check): the argument check {parts['check']:,.0f}, "
            f"building the request {parts['build']:,.0f}, credentials {parts['credentials']:,.0f}, shaping the "
            f"answer {parts['shape']:,.0f} ({other.parts_us['shape']:,.0f} without the check); the round trip on "
            f"the pooled client {trip:,.0f} µs; the rest of the whole call's {row.cpu_us:,.0f} µs (the event "
            f"loop's wake-ups around the socket, parts costing more inside a call than in a tight loop) about "
            f"{max(row.cpu_us - row.own_us - trip, 0.0):,.0f} µs."
        )
    return lines


def markdown(result: Result) -> str:
    runs = len(result.loads["tools"])
    calls = result.calls[0] if result.calls else None
    batches = f"{calls.batches} batches of {calls.calls // calls.batches}" if calls else "no"
    lines = [
        f"{HEADING}\n",
        f"Issue 14's benchmark (`python -m bench.openapi`, item `openapi` of `make bench`), measured {result.date} "
        f"on {os.cpu_count()} CPUs shared with other work (load average {result.load_average[0]:.1f} before, "
        f"{result.load_average[1]:.1f} after): directional; the lead re-runs it on a quiet machine.\n",
        f"**Loading GitHub's description** (`@octokit/openapi` api.github.com.json, 13 MB): `load_path`, then "
        f"`build_tools` with the prefix `{PREFIX}`, each run in a fresh interpreter, median of {runs}. RSS is "
        "`ru_maxrss` (the process's peak); in brackets, the growth over the interpreter's peak with the "
        "connector's modules imported, before loading.\n",
        *_load_lines(result),
        "",
        f"**One call's CPU in the connector**: each tool's handler called directly with a Context (no MCP dispatch, "
        f"no gate; those are in the sections above), against a canned HTTP/1.1 API in another process on CPU 0 "
        f"(tests/fixtures/openapi/rest_api.yaml, bearer credentials), one call at a time, {batches} calls after "
        "200 warm-up calls. CPU per call is getrusage (user + system) of this process per batch, median batch. "
        "*Connector alone* is the same handler with the route's client answering the recorded answer at once: the "
        "issue's measure, the connector's own CPU with the API's time, the socket and the event loop's waits "
        "excluded. The part columns time each step alone (the round trip on the pooled client includes the "
        "kernel's loopback work).\n",
        *_call_lines(result.calls),
        "",
        "Where the CPU of a call goes (the check of the answer against the tool's outputSchema, which also keeps "
        "`structuredContent` out of a result that does not match, is part of shaping):\n",
        *_findings(result),
        "",
        NOTES + "\n",
        "Against the issue's targets:\n",
        *_targets(result),
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.openapi", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 load per mode, 5 batches of 200 calls")
    parser.add_argument("--runs", type=int, help="fresh interpreters per mode (default 3)")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    parser.add_argument("--child-load", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, default=GITHUB, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_load:
        print(json.dumps(_child_load(args.child_load, args.spec)))
        return 0
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {1})  # the canned API and the load children run on CPU 0
    result = run(args.quick, runs=args.runs)
    if args.json:
        args.json.write_text(json.dumps(asdict(result), indent=2) + "\n")
    section = markdown(result)
    print(section)
    if not args.no_doc:
        from bench.sql import write_doc

        write_doc(section, HEADING)
    return 0


if __name__ == "__main__":
    sys.exit(main())
