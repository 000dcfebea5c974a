"""Configuration: the effective settings, read-only, with every secret hidden (``patchbay.console.redact``).

Read-only on purpose: the configuration lives in ``patchbay.toml`` and ``PATCHBAY_*`` variables, and a console
that edits a copy of it drifts from the file (reference: agentgateway#555).
"""

from __future__ import annotations

from starlette.requests import Request

from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.console.redact import sections


def register(console: Console) -> None:
    @console.page("/config")
    async def config(request: Request, who: Admin) -> PageResult:
        context = {
            "title": "Configuration",
            "source": console.settings.source,
            "base_dir": str(console.settings.base_dir),
            "sections": sections(console.settings),
        }
        return Page("config.html", context)
