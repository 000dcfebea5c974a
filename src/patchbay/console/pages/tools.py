"""The Tools page: every served tool (50 a page, filtered by name) with its annotations, scopes, the policy rules
that name it, its manifest digest and token cost; one tool in detail; and trying a tool as a chosen user.

Trying a tool that may write (no ``readOnlyHint``) is a dangerous action: it needs a recent sign-in. The form of a
read-only tool posts to ``/try``, that of a write tool to ``/try-write``; each refuses a tool of the other kind, so
a tool that became a write tool after the page was drawn never runs without the re-authentication.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.body import Form
from patchbay.console.answer import answer
from patchbay.console.core import Admin, Console, Page, PageResult
from patchbay.console.tool_index import ToolDetail, ToolIndex
from patchbay.console.tool_try import ANONYMOUS, Tried, TryRefused, parse_arguments, principal_for, try_tool

MAX_FILTER = 200


def register(console: Console) -> None:
    index = ToolIndex(console.runtime)

    @console.page("/tools")
    async def tools(request: Request, who: Admin) -> PageResult:
        query = request.query_params.get("q", "")[:MAX_FILTER]
        after = request.query_params.get("after", "")[:MAX_FILTER]
        found = index.page(query, after)
        context = {
            "tools": found.rows,
            "q": query,
            "total": found.total,
            "served": len(index),
            "prev_url": _list_url(query, found.prev_after),
            "next_url": _list_url(query, found.next_after),
        }
        return Page("tools.html", context)

    @console.page("/tools/{name}")
    async def tool(request: Request, who: Admin) -> PageResult:
        detail = index.detail(request.path_params["name"])
        if detail is None:
            return _missing(request.path_params["name"])
        return Page("tool.html", await _tool_context(console, detail))

    async def run(request: Request, who: Admin, form: Form, *, write: bool) -> Response:
        name = request.path_params["name"]
        detail = index.detail(name)
        if detail is None:
            return answer(console, request, who, _missing(name))
        if detail.row.read_only == write:
            return answer(console, request, who, _wrong_form(detail, write))
        username, text = form.get("user") or "", form.get("arguments") or ""
        context = await _tool_context(console, detail, username, text)
        try:
            arguments = parse_arguments(text)
            principal = await principal_for(console.runtime, username, name)
        except TryRefused as exc:
            context["problem"] = str(exc)
            return answer(console, request, who, Page("tool.html", context, 400))
        tried = await try_tool(console.runtime, name, arguments, principal)
        _audit(console, who, tried, username)
        context["tried"] = tried
        return answer(console, request, who, Page("tool.html", context))

    @console.action("/tools/{name}/try")
    async def try_read(request: Request, who: Admin, form: Form) -> Response:
        return await run(request, who, form, write=False)

    @console.action("/tools/{name}/try-write", dangerous=True)
    async def try_write(request: Request, who: Admin, form: Form) -> Response:
        return await run(request, who, form, write=True)


def _list_url(query: str, after: str | None) -> str | None:
    if after is None:
        return None
    params = {k: v for k, v in (("q", query), ("after", after)) if v}
    return "/admin/tools" + (f"?{urlencode(params)}" if params else "")


async def _tool_context(console: Console, detail: ToolDetail, user: str = "", arguments: str = "") -> dict[str, Any]:
    name = detail.row.name
    return {
        "tool": detail,
        "users": await _users(console),
        "sign_in": console.runtime.auth is not None,
        "chosen_user": user,
        "arguments": arguments or "{}",
        "try_url": f"/admin/tools/{quote(name)}/{'try' if detail.row.read_only else 'try-write'}",
        "reauth_minutes": console.settings.console.reauth_minutes,
        "problem": None,
        "tried": None,
    }


async def _users(console: Console) -> list[str]:
    """The local users a tool can be tried as (enabled ones); none when sign-in is off (every caller is
    anonymous)."""
    auth = console.runtime.auth
    if auth is None:
        return [ANONYMOUS]
    users = await auth.core.run(auth.core.users.list)
    return [u.username for u in users if not u.disabled]


def _audit(console: Console, who: Admin, tried: Tried, username: str) -> None:
    console.audit(
        "console.tools.try",
        by=who.username,
        subject=who.subject,
        name=tried.tool,
        as_user=username or "anonymous",
        request_ref=tried.request_ref,
        decision=tried.decision.effect if tried.decision is not None else None,
        rule=tried.decision.rule if tried.decision is not None else None,
        outcome="error" if tried.is_error else "ok",
    )


def _missing(name: str) -> Page:
    text = f"No tool named {name!r} is served (it may be held back for review, or its connector is down)."
    return Page("error.html", {"title": "No such tool", "text": text}, 404)


def _wrong_form(detail: ToolDetail, write: bool) -> Page:
    now = "may write now" if not detail.row.read_only else "is read-only now"
    text = f"The tool {detail.row.name!r} {now}; reload its page and try it again. Nothing was run."
    return Page("error.html", {"title": "The tool changed", "text": text}, 409)
