"""The policy gate's cost: `decide` with 100 rules (p50/p99 per call, with and without argument conditions), and the
config of the gate-on throughput runs (`patchbay-*-gate` in bench/configs.py: 100 rules, none denying `add`).

`python -m bench.policy` prints the micro-benchmark; `python -m bench --only 'policy,patchbay-*'` runs it with
the throughput pairs.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
HEADING = "## Policy gate"
RULES = 100


def rules(count: int = RULES, conditions: bool = False) -> list[dict[str, Any]]:
    """``count`` rules over other tools and roles (none denies ``add``), the last one allowing ``add`` to everyone,
    with an argument condition on it when ``conditions``."""
    made: list[dict[str, Any]] = [
        {"subjects": [f"role:team{i}"], "tools": [f"svc{i}_*"], "effect": "deny" if i % 3 == 0 else "allow"}
        for i in range(count - 1)
    ]
    last: dict[str, Any] = {"subjects": ["*"], "tools": ["add*"], "effect": "allow"}
    if conditions:
        last["when"] = {"a": {"ge": 0, "lt": 1_000_000}, "b": {"exists": True}}
    return [*made, last]


def _toml(rule: dict[str, Any]) -> str:
    lines = [f"subjects = {rule['subjects']!r}".replace("'", '"'), f"tools = {rule['tools']!r}".replace("'", '"')]
    lines.append(f'effect = "{rule["effect"]}"')
    return "\n[[policy]]\n" + "\n".join(lines) + "\n"


@functools.cache
def config_path() -> Path:
    """bench/patchbay.toml plus 100 rules (and so a per-caller gate on every list and call)."""
    folder = Path(tempfile.mkdtemp(prefix="patchbay-bench-gate-"))
    config = folder / "patchbay.toml"
    body = "".join(_toml(rule) for rule in rules())
    roles = ", ".join(f'"team{i}"' for i in range(RULES))
    config.write_text(
        f'[server]\nname = "bench"\n\n[gate]\nroles = [{roles}]\n\n[[connectors]]\nname = "bench"\ntype = "python"\n'
        f'path = "{BENCH / "tools.py"}"\nprefix = ""\n{body}',
        encoding="utf-8",
    )
    return config


def _timings(gate: Any, principal: Any, arguments: dict[str, Any], calls: int) -> list[float]:
    decide = gate.decide
    for _ in range(1000):
        decide("add", principal, arguments)
    samples = []
    for _ in range(calls):
        start = time.perf_counter_ns()
        decide("add", principal, arguments)
        samples.append((time.perf_counter_ns() - start) / 1000)
    return samples


def run(quick: bool = False) -> dict[str, dict[str, float]]:
    from patchbay.app import Runtime
    from patchbay.auth.principal import Principal
    from patchbay.settings import from_dict

    calls = 20_000 if quick else 200_000
    principal = Principal("user:ada", "user", frozenset({"mcp"}), frozenset({"team1"}), username="ada")
    results = {}
    for label, policy in (("no rules", []), ("100 rules", rules()), ("100 rules, when", rules(conditions=True))):
        connector = {"name": "bench", "type": "python", "path": str(BENCH / "tools.py"), "prefix": ""}
        roles = [f"team{i}" for i in range(RULES)]
        runtime = Runtime(from_dict({"connectors": [connector], "policy": policy, "gate": {"roles": roles}}))
        asyncio.run(runtime.start())
        try:
            samples = _timings(runtime.dispatcher.gate, principal, {"a": 1, "b": 2}, calls)
        finally:
            asyncio.run(runtime.stop())
        cuts = statistics.quantiles(samples, n=100)
        results[label] = {"p50_us": cuts[49], "p99_us": cuts[98], "calls": float(calls)}
    return results


def markdown(results: dict[str, dict[str, float]]) -> str:
    lines = [
        f"{HEADING}\n",
        "`decide` for one call to `add` by a signed-in user (its view cached, as after the first call), measured "
        "in-process with `python -m bench.policy`; `make bench` rewrites this section.\n",
        "| rules | p50 µs | p99 µs |",
        "|---|---:|---:|",
    ]
    lines += [f"| {label} | {r['p50_us']:.2f} | {r['p99_us']:.2f} |" for label, r in results.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.policy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 decisions per case instead of 200,000")
    args = parser.parse_args(argv)
    print(markdown(run(quick=args.quick)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
