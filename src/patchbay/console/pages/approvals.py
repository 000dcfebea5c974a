"""The Approvals page: calls waiting for a person, with caller, client, tool, arguments and expiry; approving or
denying one, by the approval page's own rules (``patchbay.gate.approval_pages.decide``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.body import Form
from patchbay.console.answer import answer
from patchbay.console.core import Admin, Console, Page, PageResult

MAX_CURSOR = 100


def register(console: Console) -> None:
    runtime = console.runtime

    @console.page("/approvals", role="approver")
    async def approvals(request: Request, who: Admin) -> PageResult:
        return Page("approvals.html", await _context(console, who, request.query_params.get("before", "")))

    @console.action("/approvals/{approval_id}/decide", role="approver")
    async def decide_one(request: Request, who: Admin, form: Form) -> Response:
        # The approval store (SQLAlchemy, the vault's cryptography) loads when a call is decided, not at start.
        from patchbay.gate.approval_pages import APPROVAL_ID, catalog_lookup, decide

        approval_id, decision = request.path_params["approval_id"], form.get("decision")
        held = runtime.dispatcher.approvals
        if held is None or not APPROVAL_ID.match(approval_id):
            return await _refused(console, request, who, "There is no such approval request.", 404)
        settings, lookup = console.settings.approvals, catalog_lookup(runtime.catalog)
        outcome = await decide(held, settings, lookup, approval_id, who, decision)
        if outcome.done is None:
            console.audit(
                "console.approvals.decide",
                by=who.username,
                approval_id=approval_id,
                decision=decision,
                reason=outcome.problem,
                outcome="refused",
            )
            return await _refused(console, request, who, f"{outcome.title}: {outcome.problem}", outcome.status)
        console.audit(
            "console.approvals.decide",
            by=who.username,
            subject=who.subject,
            approval_id=approval_id,
            name=outcome.done.tool,
            decision=decision,
            outcome=outcome.done.status,
        )
        return console.redirect(request, "/approvals", f"{outcome.done.tool}: {outcome.notice}")


async def _context(console: Console, who: Admin, before: str = "") -> dict[str, object]:
    held = console.runtime.dispatcher.approvals
    settings = console.settings.approvals
    context: dict[str, object] = {
        "enabled": held is not None,
        "rows": [],
        "next_url": None,
        "prev_url": None,
        "problem": None,
        "required": settings.required_approvals,
        "self_approval": settings.allow_self_approval,
        "approver_roles": settings.approver_roles,
    }
    if held is not None:
        from patchbay.console.approval_queue import pending

        queue = await pending(held, who.username, before[:MAX_CURSOR])
        context["rows"] = queue.rows
        context["next_url"] = f"/admin/approvals?before={queue.next_before}" if queue.next_before else None
        context["prev_url"] = "/admin/approvals" if before else None
    return context


async def _refused(console: Console, request: Request, who: Admin, problem: str, status: int) -> Response:
    context = await _context(console, who)
    context["problem"] = problem
    return answer(console, request, who, Page("approvals.html", context, status))
