"""Patchbay's Prometheus metrics: what ``observe(call)`` counts on every call, and what is read when scraped.

Names follow prometheus.io/docs/practices/naming (reference/governance-and-fleet.md, "Prometheus naming"). Labels
are bounded: ``tool`` is a name from the approved manifest (an unknown tool is refused before a call exists),
``outcome`` and ``effect`` are fixed sets; no user, client or session id is ever a label.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from patchbay import __version__
from patchbay.gate.calls import Call
from patchbay.observe.prom import Counter, Gauge, Histogram, Labels, Metric, render

Reading = Callable[[], Iterable[tuple[Labels, float]]]


@dataclass
class Metrics:
    """The dispatcher's ``metrics`` hook (contract: ``observe(call)``, sync and cheap) and the registry behind
    ``/metrics``. Gauges are added by :func:`patchbay.observe.wiring.build` once the runtime exists."""

    tool_calls: Counter = field(
        default_factory=lambda: Counter(
            "patchbay_tool_calls", "tools/call requests by tool and outcome.", ("tool", "outcome")
        )
    )
    tool_duration: Histogram = field(
        default_factory=lambda: Histogram(
            "patchbay_tool_call_duration_seconds", "tools/call time from dispatch to answer, by tool.", ("tool",)
        )
    )
    operations: Counter = field(
        default_factory=lambda: Counter(
            "patchbay_operations",
            "resources/read and prompts/get requests by method and outcome.",
            ("method", "outcome"),
        )
    )
    decisions: Counter = field(
        default_factory=lambda: Counter(
            "patchbay_policy_decisions", "Policy decisions on tools/call by effect.", ("effect",)
        )
    )
    rate_limited: Counter = field(
        default_factory=lambda: Counter(
            "patchbay_rate_limited", "Calls refused by a [[limits]] rule, by method.", ("method",)
        )
    )
    gauges: list[Gauge] = field(default_factory=list)

    def observe(self, call: Call) -> None:
        seconds = time.perf_counter() - call.started
        outcome = call.outcome
        if call.method == "tools/call":
            self.tool_calls.inc((call.name, outcome))
            self.tool_duration.observe((call.name,), seconds)
            if call.decision is not None:
                self.decisions.inc((call.decision.effect,))
        else:
            self.operations.inc((call.method, outcome))
        if outcome == "rate_limited":
            self.rate_limited.inc((call.method,))

    def gauge(self, name: str, help: str, read: Reading, labels: Labels = ()) -> None:
        self.gauges.append(Gauge(name, help, read, labels))

    def counter_reading(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A total kept elsewhere (the audit writer's), rendered as a counter when scraped."""
        self.gauges.append(Gauge(name, help, lambda: [((), read())], kind="counter"))

    def exposition(self) -> bytes:
        build = Gauge(
            "patchbay_build_info", "The running Patchbay version.", lambda: [((__version__,), 1.0)], ("version",)
        )
        fixed: list[Metric] = [build, self.tool_calls, self.tool_duration, self.operations, self.decisions]
        return render([*fixed, self.rate_limited, *self.gauges])
