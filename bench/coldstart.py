"""Cold start: time from process spawn to the first 200 answer carrying a tools/call result.

The first call is the 2026-07-28 envelope (no handshake needed), sent as soon as the port accepts
connections; connection errors mean "not up yet" and are retried every 5 ms until a deadline.
"""

from __future__ import annotations

import http.client
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench import harness, wire
from bench.configs import REPO, ServerSpec

POLL_S = 0.005
DEADLINE_S = 30.0


@dataclass
class ColdStart:
    server: str
    runs_s: list[float]

    @property
    def median_s(self) -> float:
        return statistics.median(self.runs_s)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s}


def _first_call(server: harness.Server) -> float:
    body = wire.fill(wire.modern_call_template("add"), 1)
    headers = wire.modern_headers("add")
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"{server.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            reply = wire.post(server.port, body, headers, timeout=5.0)
        except (OSError, http.client.HTTPException):
            time.sleep(POLL_S)
            continue
        elapsed = time.perf_counter() - server.started_at
        problem = wire.check_add_result(reply)
        if problem is None:
            return elapsed
        if reply.status not in (404, 502, 503):  # a wrong answer, not "still starting"
            raise RuntimeError(f"{server.name}: first call failed: {problem}")
        time.sleep(POLL_S)
    raise RuntimeError(f"{server.name}: no successful tools/call within {DEADLINE_S:.0f} s")


def measure(spec: ServerSpec, runs: int, logdir: Path) -> ColdStart:
    times = []
    for run in range(runs):
        port = harness.free_port()
        server = harness.spawn(spec.name, spec.argv(port), port, logdir / f"coldstart-{spec.name}.{run}.log", REPO)
        try:
            times.append(_first_call(server))
        finally:
            harness.stop(server)
    return ColdStart(spec.name, times)
