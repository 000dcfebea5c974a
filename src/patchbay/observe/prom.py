"""Counters, gauges and histograms kept in plain dicts and rendered in the Prometheus text format (0.0.4).

Hand-written instead of ``prometheus_client`` because ``observe(call)`` runs on every call's hot path: a labelled
counter plus a labelled histogram cost about a third here of what the library's ``labels().inc()`` and
``labels().observe()`` cost (docs/dependencies.md has the measurement). Everything runs on the event loop thread,
so no locks are needed. Format: prometheus.io/docs/instrumenting/exposition_formats.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

Labels = tuple[str, ...]
# OpenTelemetry semconv advised buckets for mcp.server.operation.duration (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _series(name: str, keys: Labels, values: Labels, extra: str = "") -> str:
    pairs = [f'{k}="{_escape(v)}"' for k, v in zip(keys, values, strict=True)]
    if extra:
        pairs.append(extra)
    return f"{name}{{{','.join(pairs)}}}" if pairs else name


@dataclass(slots=True)
class Counter:
    name: str  # without _total; rendered with it
    help: str
    labels: Labels = ()
    values: dict[Labels, float] = field(default_factory=dict)

    def inc(self, key: Labels = (), amount: float = 1.0) -> None:
        self.values[key] = self.values.get(key, 0.0) + amount

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name}_total {self.help}"
        yield f"# TYPE {self.name}_total counter"
        for key, value in self.values.items():
            yield f"{_series(self.name + '_total', self.labels, key)} {_number(value)}"


@dataclass(slots=True)
class Gauge:
    """A value read when scraped (sessions open, connectors up): ``read`` returns (label values, value) pairs.
    ``kind="counter"`` renders a total kept elsewhere (the audit writer's) as a counter."""

    name: str
    help: str
    read: Callable[[], Iterable[tuple[Labels, float]]]
    labels: Labels = ()
    kind: str = "gauge"

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} {self.kind}"
        for key, value in self.read():
            yield f"{_series(self.name, self.labels, key)} {_number(value)}"


@dataclass(slots=True)
class _Buckets:
    counts: list[int]
    total: float = 0.0


@dataclass(slots=True)
class Histogram:
    name: str
    help: str
    labels: Labels = ()
    bounds: Sequence[float] = DURATION_BUCKETS
    series: dict[Labels, _Buckets] = field(default_factory=dict)

    def observe(self, key: Labels, value: float) -> None:
        buckets = self.series.get(key)
        if buckets is None:
            buckets = self.series[key] = _Buckets([0] * (len(self.bounds) + 1))
        # Counted in the first bucket whose bound is >= value (le is inclusive); made cumulative when rendered.
        buckets.counts[bisect.bisect_left(self.bounds, value)] += 1
        buckets.total += value

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        for key, buckets in self.series.items():
            running = 0
            for bound, count in zip((*self.bounds, math.inf), buckets.counts, strict=True):
                running += count
                le = f'le="{_number(bound)}"'
                yield f"{_series(self.name + '_bucket', self.labels, key, le)} {running}"
            yield f"{_series(self.name + '_sum', self.labels, key)} {buckets.total!r}"
            yield f"{_series(self.name + '_count', self.labels, key)} {running}"


Metric = Counter | Gauge | Histogram


def render(metrics: Iterable[Metric]) -> bytes:
    lines = [line for metric in metrics for line in metric.render()]
    return ("\n".join(lines) + "\n").encode()


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
