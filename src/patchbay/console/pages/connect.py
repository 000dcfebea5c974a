"""Connect: how each client reaches this server (the steps ``patchbay serve`` prints, from the same source), and
a button that runs the doctor against the public URL and shows its report.

The report is kept in this process for the person who asked (the newest few), and the action answers with a
redirect to the page (post/redirect/get), so reloading the page never re-runs the doctor. In a fleet the report is
kept in Redis (patchbay.fleet.notices.DoctorReports), so the redirect shows it on whichever replica it reaches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.body import Form
from patchbay.connect_steps import client_setups, is_public_https
from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.fleet.notices import DoctorReports

if TYPE_CHECKING:
    from patchbay.console.connect_doctor import DoctorOutcome


def register(console: Console) -> None:
    reports = DoctorReports(console.runtime.fleet)

    @console.page("/connect")
    async def connect(request: Request, who: Admin) -> PageResult:
        settings = console.settings
        return Page(
            "connect.html",
            {
                "mcp_url": settings.mcp_url,
                "auth_mode": settings.auth.mode,
                "public": is_public_https(settings.mcp_url),
                "setups": client_setups(settings),
                "report": await reports.get(who.subject),
            },
        )

    @console.action("/connect/doctor")
    async def doctor(request: Request, who: Admin, form: Form) -> Response:
        # Imported when the button is used: the doctor brings httpx, which a server otherwise never loads.
        from patchbay.console.connect_doctor import run_doctor

        outcome = await run_doctor(console.settings)
        await reports.put(who.subject, outcome)
        verdict = _verdict(outcome)
        console.audit(
            "console.connect.doctor",
            by=who.username,
            subject=who.subject,
            url=outcome.url,
            outcome="error" if outcome.error else "ok",
            verdict=verdict,
        )
        return console.redirect(request, "/connect#doctor", f"Doctor: {verdict}.")


def _verdict(outcome: DoctorOutcome) -> str:
    if outcome.error:
        return f"could not run ({outcome.error})"
    failing = [client.title for client in outcome.clients if not client.ready]
    if not failing:
        return "every client would connect"
    return "would fail for " + ", ".join(failing)
