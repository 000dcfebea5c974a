"""Configuration: the effective settings, read-only, with every secret redacted."""

from __future__ import annotations

from starlette.requests import Request

from patchbay.console.core import Admin, Console, Page, PageResult


def register(console: Console) -> None:
    @console.page("/config")
    async def config(request: Request, who: Admin) -> PageResult:
        return Page("config.html", {"title": "Configuration", "source": console.settings.source, "sections": []})
