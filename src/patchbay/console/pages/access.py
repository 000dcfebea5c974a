"""Access: who may reach this server. Users (add, disable, enable, unlock, roles), API keys (create, shown once;
revoke), OAuth clients and their grants (revoke), linked upstream accounts (revoke), and a policy playground.

The stores are the authorization server's own (``auth.core``: users, keys, clients, grants) and the links hub's;
the handlers that change them are in ``patchbay.console.access_actions``. With ``[auth] mode = "none"`` nobody
signs in: there are no accounts to show, and the playground answers for an anonymous caller only.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from patchbay.console import access_actions, access_data
from patchbay.console.access_actions import SECTIONS
from patchbay.console.access_data import FormError
from patchbay.console.core import Admin, Console, Page, PageResult

if TYPE_CHECKING:  # the lists' queries (SQLAlchemy) load with the first list shown
    from patchbay.console import access_pages

NO_SIGN_IN = 'Sign-in is off ([auth] mode = "none"): there are no users, API keys, clients or linked accounts.'


def _page(section: str, template: str, context: dict[str, Any], status: int = 200) -> Page:
    base = {"title": "Access", "section": section, "sections": SECTIONS, "off": None}
    return Page(template, {**base, **context}, status)


def register(console: Console) -> None:
    core = console.runtime.auth.core if console.runtime.auth is not None else None

    async def listed(request: Request, section: str, read: Any, **extra: Any) -> Page:
        """One page of the list ``section`` (users, keys or clients: the rows' name in its template too) for the
        request's filter and cursor; ``extra`` goes into the context as it is."""
        template = f"access_{section}.html"
        if core is None:
            return _page(section, template, {"off": NO_SIGN_IN, section: [], **extra})
        found = await _list(core, read, request)
        if isinstance(found, Page):
            return _page(section, template, {**found.context, section: [], **extra}, found.status)
        return _page(section, template, {section: found.rows, "listing": found, **extra})

    @console.page("/access")
    async def users(request: Request, who: Admin) -> PageResult:
        from patchbay.console import access_pages

        return await listed(request, "users", access_pages.users, now=time.time())

    @console.page("/access/keys")
    async def keys(request: Request, who: Admin) -> PageResult:
        from patchbay.console import access_pages

        return await listed(request, "keys", access_pages.keys, created=None)

    @console.page("/access/clients")
    async def clients(request: Request, who: Admin) -> PageResult:
        from patchbay.console import access_pages

        return await listed(request, "clients", access_pages.clients)

    @console.page("/access/client")
    async def client(request: Request, who: Admin) -> PageResult:
        client_id = request.query_params.get("id", "")
        found = await core.run(core.clients.get, client_id) if core is not None and client_id else None
        if core is None or found is None:
            context: dict[str, Any] = {"client": None, "grants": [], "off": None if core is not None else NO_SIGN_IN}
            return _page("clients", "access_client.html", context, 404)
        grants = await core.run(access_data.client_grants, core.engine, client_id, time.time())
        return _page("clients", "access_client.html", {"client": found, "grants": grants})

    @console.page("/access/links")
    async def links(request: Request, who: Admin) -> PageResult:
        if core is None:
            return _page("links", "access_links.html", {"off": NO_SIGN_IN, "accounts": []})
        subject = request.query_params.get("user", "").strip()[:1024] or None
        connector = request.query_params.get("connector", "").strip()[:200] or None
        accounts = await core.run(access_data.link_store(core.engine).accounts, subject, connector)
        return _page(
            "links",
            "access_links.html",
            {"accounts": accounts, "user": subject or "", "connector": connector or ""},
        )

    @console.page("/access/policy")
    async def policy(request: Request, who: Admin) -> PageResult:
        return await _playground(console, request)

    access_actions.register(console)


async def _list(core: Any, read: Any, request: Request) -> access_pages.Listing[Any] | Page:
    """One page of a list for the request's ``q`` and ``after``; a damaged ``after`` is a 400 saying so."""
    query, after = request.query_params.get("q", ""), request.query_params.get("after", "")
    try:
        listing: access_pages.Listing[Any] = await core.run(read, core.engine, query, after)
    except FormError as exc:
        return Page("", {"problem": str(exc), "listing": None}, 400)
    return listing


async def _playground(console: Console, request: Request) -> Page:
    query = request.query_params
    form = {k: query.get(k, "") for k in ("kind", "name", "client", "tool", "args")}
    form["kind"] = form["kind"] or ("user" if console.runtime.auth is not None else "anonymous")
    context: dict[str, Any] = {"form": form, "answer": None, "problem": None, "asked": "tool" in query}
    if not context["asked"]:
        return _page("policy", "access_policy.html", context)
    runtime = console.runtime
    try:
        if not form["tool"] or form["tool"] not in runtime.catalog.tools:
            raise FormError("tool", f"no tool is named {form['tool'][:200]!r} (see the Tools page)")
        arguments = access_data.arguments(form["args"])
        who = access_data.caller(query)
        if who.kind != "anonymous" and runtime.auth is None:
            raise FormError("kind", 'with [auth] mode = "none" every caller is anonymous')
        core = runtime.auth.core if runtime.auth is not None else None
        scopes = tuple(console.settings.auth.default_scopes)
        caller = None if core is None else await core.run(access_data.principal, who, core, scopes)
    except FormError as exc:
        return _page("policy", "access_policy.html", {**context, "problem": str(exc)}, 400)
    gate = runtime.dispatcher.gate
    decision = gate.decide(form["tool"], caller, arguments)
    answer = {
        "effect": decision.effect,
        "rule": decision.rule,
        "reason": decision.reason,
        "listed": gate.is_listed(form["tool"], caller),
        "subject": "anonymous" if caller is None else caller.subject,
    }
    return _page("policy", "access_policy.html", {**context, "answer": answer})
