"""The Changes page: pending manifest changes with a side-by-side diff and their risk labels; approving or
rejecting some or all of them (a dangerous action: it needs a recent sign-in)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.body import Form
from patchbay.console.answer import answer
from patchbay.console.changes_view import (
    ChangeRefused,
    approve,
    choice,
    key_of,
    reject,
    review,
    risks,
    side_by_side,
)
from patchbay.console.core import Admin, Console, Page, PageResult

MAX_CURSOR = 400


def register(console: Console) -> None:
    @console.page("/changes")
    async def changes(request: Request, who: Admin) -> PageResult:
        after = request.query_params.get("after", "")[:MAX_CURSOR]
        return Page("changes.html", await _context(console, after))

    @console.action("/changes/decide", dangerous=True, repeatable=frozenset({"change"}))
    async def decide(request: Request, who: Admin, form: Form) -> Response:
        decision = form.get("decision")
        chosen, everything = form.getlist("change"), form.get("all")
        if decision not in ("approve", "reject"):
            return await _refused(console, request, who, "Choose Approve or Reject.", 400)
        try:
            if decision == "approve":
                done = await approve(console.runtime, chosen, everything, who.username)
            else:
                done = await reject(console.runtime, chosen, everything, who.username)
        except ChangeRefused as exc:
            console.audit(f"console.manifest.{decision}", by=who.username, reason=str(exc), outcome="refused")
            return await _refused(console, request, who, str(exc), 409)
        console.audit(
            f"console.manifest.{decision}",
            by=who.username,
            subject=who.subject,
            version=done.version,
            changes=done.summary,
            outcome="ok",
        )
        if decision == "approve":
            notice = f"Approved version {done.version}: {done.summary}. Connected clients are told the list changed."
        else:
            notice = f"Rejected: {done.summary}. They come back only if the connector changes them again."
        return console.redirect(request, "/changes", notice)


async def _context(console: Console, after: str = "") -> dict[str, Any]:
    found = await review(console.runtime)
    context: dict[str, Any] = {"review": found, "changes": [], "prev_url": None, "next_url": None, "problem": None}
    if found is not None:
        shown, prev_after, next_after = found.page(after)
        context.update(
            changes=[_change(c) for c in shown],
            prev_url=_url(prev_after),
            next_url=_url(next_after),
        )
    return context


def _change(change: Any) -> dict[str, Any]:
    return {
        "key": key_of(change),
        "choice": choice(change),
        "kind": change.kind,
        "name": change.name,
        "status": change.status,
        "connector": change.connector,
        "level": change.level,
        "risks": risks(change),
        "details": change.details,
        "hold": change.hold,
        "renamed_from": change.renamed_from,
        "lines": side_by_side(change),
    }


def _url(after: str | None) -> str | None:
    if after is None:
        return None
    return "/admin/changes" + (f"?{urlencode({'after': after})}" if after else "")


async def _refused(console: Console, request: Request, who: Admin, problem: str, status: int) -> Response:
    context = await _context(console)
    context["problem"] = problem
    return answer(console, request, who, Page("changes.html", context, status))
