"""Overview: connectors with their health and why, what the server publishes, and the last hour's traffic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from starlette.requests import Request

from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.console.traffic import HourCache, Minute, charts


@dataclass(frozen=True)
class ConnectorRow:
    name: str
    type: str
    ok: bool
    detail: str
    retry_in: float | None
    tools: int


async def connector_rows(console: Console) -> list[ConnectorRow]:
    """Each enabled connector's health, as /readyz reports it (its detail is already free of URL passwords)."""
    runtime = console.runtime
    health = await runtime.connector_health()
    kinds = {c.name: c.type for c in console.settings.connectors}
    rows = []
    for connector in runtime.connectors:
        state = health.get(connector.name, {})
        up = runtime.supervisor.is_up(connector.name)
        rows.append(
            ConnectorRow(
                connector.name,
                kinds.get(connector.name, "?"),
                bool(state.get("ok")),
                str(state.get("detail") or ""),
                state.get("retry_in"),
                len(connector.tools()) if up else 0,
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

    @console.page("/")
    async def overview(request: Request, who: Admin) -> PageResult:
        minutes = await traffic(console, cache)
        context = {
            "title": "Overview",
            "connectors": await connector_rows(console),
            "counts": counts(console),
            "charts": charts(minutes) if minutes is not None else None,
            "minutes": [m for m in minutes if m.calls] if minutes is not None else [],
        }
        return Page("overview.html", context)
