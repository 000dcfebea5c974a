"""Configuration: the effective settings, read-only, with every secret hidden (``patchbay.console.redact``).

Read-only on purpose: the configuration lives in ``patchbay.toml`` and ``PATCHBAY_*`` variables, and a console
that edits a copy of it drifts from the file (reference: agentgateway#555). For the same reason it cannot change
while the server runs (SIGHUP reloads connectors' definitions, not settings), so the sections are built on the
first visit and kept: building them walks every setting and asks the installed connector types for their
options' defaults, which costs more than the rest of the page.
"""

from __future__ import annotations

from starlette.requests import Request

from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.console.redact import Section, sections


def register(console: Console) -> None:
    built: list[Section] = []

    @console.page("/config")
    async def config(request: Request, who: Admin) -> PageResult:
        if not built:
            built.extend(sections(console.settings))
        context = {
            "title": "Configuration",
            "source": console.settings.source,
            "base_dir": str(console.settings.base_dir),
            "sections": built,
        }
        return Page("config.html", context)
