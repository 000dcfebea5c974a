"""Overview: connectors with their health and why, what the server publishes, and the last hour's traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from starlette.requests import Request

from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.console.traffic import HourCache, Minute, charts

if TYPE_CHECKING:
    from patchbay.app import Runtime


@dataclass(frozen=True)
class ConnectorRow:
    name: str
    type: str
    ok: bool
    detail: str
    retry_in: float | None
    tools: int


class ToolCounts:
    """Each open connector's published tool count, counted once per catalog build.

    Counting asks a connector for its list, which may cost (a python connector re-reads its module: 10,000 tools
    take tens of milliseconds). A connector's list reaches the server only through a catalog rebuild, which swaps
    the catalog's tool map, so that map's identity (and which connectors are up) says when to count again.
    """

    def __init__(self) -> None:
        self._seen: tuple[object, frozenset[str]] | None = None
        self._counts: dict[str, int] = {}

    def of(self, runtime: Runtime) -> dict[str, int]:
        up = frozenset(c.name for c in runtime.connectors if runtime.supervisor.is_up(c.name))
        key = (runtime.catalog.tools, up)
        if self._seen is None or key[0] is not self._seen[0] or key[1] != self._seen[1]:
            self._counts = {c.name: len(c.tools()) for c in runtime.connectors if c.name in up}
            self._seen = key
        return self._counts


async def connector_rows(console: Console, tools: ToolCounts) -> list[ConnectorRow]:
    """Each enabled connector's health, as /readyz reports it (its detail is already free of URL passwords)."""
    runtime = console.runtime
    health = await runtime.connector_health()
    kinds = {c.name: c.type for c in console.settings.connectors}
    counted = tools.of(runtime)
    rows = []
    for connector in runtime.connectors:
        state = health.get(connector.name, {})
        rows.append(
            ConnectorRow(
                connector.name,
                kinds.get(connector.name, "?"),
                bool(state.get("ok")),
                str(state.get("detail") or ""),
                state.get("retry_in"),
                counted.get(connector.name, 0),
            )
        )
    return rows


def counts(console: Console) -> dict[str, Any]:
    catalog = console.runtime.catalog
    return {
        "tools": len(catalog.tools),
        "resources": len(catalog.resources) + len(catalog.templates),
        "prompts": len(catalog.prompts),
        "sessions": len(console.sessions) if console.sessions is not None else None,
        "legacy_streams": len(console.legacy.streams) if console.legacy is not None else None,
    }


async def traffic(console: Console, cache: HourCache) -> list[Minute] | None:
    """The last hour per minute, or None when the server keeps no audit trail ([audit] enabled = false)."""
    recorder = console.runtime.dispatcher.audit
    if recorder is None:
        return None
    minutes: list[Minute] = await anyio.to_thread.run_sync(cache.last_hour, recorder.engine)
    return minutes


def register(console: Console) -> None:
    cache = HourCache()
    tools = ToolCounts()

    @console.page("/")
    async def overview(request: Request, who: Admin) -> PageResult:
        minutes = await traffic(console, cache)
        context = {
            "title": "Overview",
            "connectors": await connector_rows(console, tools),
            "counts": counts(console),
            "charts": charts(minutes) if minutes is not None else None,
            "minutes": [m for m in minutes if m.calls] if minutes is not None else [],
        }
        return Page("overview.html", context)
