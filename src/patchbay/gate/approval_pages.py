"""The approval page: ``/approvals/{id}``, where an approver signs in and approves or denies one held call.

Sign-in is the OAuth pages' own, shared by Patchbay's signed-in pages (``patchbay.auth.page_signin``): local
accounts and, with ``[auth.upstream]``, the organisation's OpenID provider, whose round trip lands back on the
approval with the roles ``role_map`` gives. The approver's short session is a browser session of the accounts'
table, in a ``SameSite=Strict`` HttpOnly cookie scoped to ``/approvals`` (``Secure`` when the public URL is
https). The Approve/Deny form carries a CSRF token derived from that session and the approval id, so a page of
another site can neither post a decision nor reuse a token for another approval. Pages forbid framing and caching
and load nothing external (``patchbay.auth.pages``).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from html import escape
from typing import Any, Protocol

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.lockout import AddressThrottle
from patchbay.auth.page_signin import PageCookies, PageSignIn, page_token
from patchbay.auth.pages import _page, error_page
from patchbay.auth.users import Users, UserView
from patchbay.catalog import Catalog
from patchbay.gate.approval_store import ApprovalRefused, ApprovalView, hidden_note
from patchbay.gate.approvals import Approvals
from patchbay.settings import ApprovalsSettings, Settings

log = logging.getLogger("patchbay.gate")
COOKIES = PageCookies("patchbay_approver", "/approvals", "strict")
APPROVAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# The current definition of a tool by public name: (digest, client-visible definition), None when it is gone.
ToolLookup = Callable[[str], tuple[str, dict[str, Any]] | None]


def decision_token(session_cookie: str, approval_id: str) -> str:
    """The Approve/Deny form's CSRF token: bound to the approver's session and to this one approval."""
    return page_token(session_cookie, "patchbay-approval", approval_id)


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def is_own_call(approval: ApprovalView, user: Approver) -> bool:
    return approval.username == user.username or approval.subject == f"user:{user.username}"


@dataclass
class ApprovalPages:
    approvals: Approvals
    signin: PageSignIn
    settings: ApprovalsSettings
    tool_lookup: ToolLookup
    server_name: str

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/approvals/{approval_id}", self.show, methods=["GET"]),
            Route("/approvals/{approval_id}/decide", self.decide, methods=["POST"]),
            *self.signin.routes(),
        ]

    # -- GET /approvals/{id} -------------------------------------------------------------------------------------

    async def show(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        approval = await self.approvals.run(self.approvals.store.get, approval_id)
        if approval is None:
            return error_page("No such approval", "There is no approval request at this address.", 404)
        signed_in = await self.signin.user(request)
        if signed_in is None:
            return self.signin.page(approval_id)
        user, cookie = signed_in
        return self._detail(approval, user, decision_token(cookie, approval_id))

    def prompt(self, approval_id: str) -> str:
        """The sign-in page's heading and introduction."""
        return (
            f"<h1>Sign in to approve</h1><p>A call to {escape(self.server_name)} is waiting for approval. Sign in "
            "with an account that has an approver role.</p>"
        )

    def _detail(self, approval: ApprovalView, user: UserView, token: str, notice: str = "") -> Response:
        current = self.tool_lookup(approval.tool)
        annotations = (current[1].get("annotations") if current else None) or {}
        rows = [
            ("Tool", f"<code>{escape(approval.tool)}</code>"),
            ("Why approval", escape(approval.reason or approval.rule)),
            ("Caller", escape(approval.username or approval.subject)),
            ("Client", escape(approval.client_name or approval.client_id or "-")),
            ("Requested", _when(approval.created_at)),
            ("Expires", _when(approval.expires_at)),
            ("Status", escape(approval.status)),
        ]
        if approval.approved_by:
            rows.append(("Approved by", escape(", ".join(approval.approved_by))))
        if annotations:
            rows.append(("Annotations", escape(", ".join(f"{k}={v}" for k, v in sorted(annotations.items())))))
        table = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
        pretty = orjson.dumps(approval.shown, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode()
        parts = [
            f"<h1>Approve this call?</h1><p>Signed in as <strong>{escape(user.username)}</strong>.</p>",
            f'<p role="status">{escape(notice)}</p>' if notice else "",
            f"<dl>{table}</dl><p>Exactly these arguments will run, once:</p><pre>{escape(pretty)}</pre>",
            f'<p class="note">{escape(hidden_note(approval.hidden))}</p>' if approval.hidden else "",
        ]
        if approval.status == "pending":
            parts.append(
                f'<form method="post" action="/approvals/{escape(approval.id)}/decide">'
                f'<input type="hidden" name="csrf" value="{escape(token)}">'
                '<button type="submit" name="decision" value="approve">Approve</button> '
                '<button type="submit" name="decision" value="deny" class="secondary">Deny</button></form>'
            )
        return _page(f"Approval · {self.server_name}", "".join(parts))

    # -- POST /approvals/{id}/decide -----------------------------------------------------------------------------

    async def decide(self, request: Request) -> Response:
        approval_id = request.path_params["approval_id"]
        signed = await self.signin.signed_form(request, approval_id, decision_token)
        if isinstance(signed, Response):
            return signed
        user, cookie, form = signed
        outcome = await decide(self.approvals, self.settings, self.tool_lookup, approval_id, user, form.get("decision"))
        if outcome.done is None:
            return error_page(outcome.title, outcome.problem, outcome.status)
        return self._detail(outcome.done, user, decision_token(cookie, approval_id), outcome.notice)

    def refusal(self, approval: ApprovalView, user: UserView, decision: str) -> str | None:
        """Why ``user`` may not make ``decision`` on ``approval``; None when they may."""
        return refusal(self.settings, approval, user, decision)


class Approver(Protocol):
    """Who decides: a signed-in account of the approval page or of the console."""

    @property
    def username(self) -> str: ...

    @property
    def roles(self) -> Collection[str]: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a decision came to: the approval as now stored and the notice for the approver, or why nothing was
    recorded (a page title, a sentence for the approver and the HTTP status)."""

    done: ApprovalView | None = None
    notice: str = ""
    title: str = ""
    problem: str = ""
    status: int = 200


def refusal(settings: ApprovalsSettings, approval: ApprovalView, user: Approver, decision: str) -> str | None:
    """Why ``user`` may not make ``decision`` on ``approval``; None when they may."""
    roles = settings.approver_roles
    if not set(user.roles) & set(roles):
        return (
            f"You are signed in as {user.username}, who has none of the approver roles ({', '.join(roles)}). "
            "Ask an administrator."
        )
    if decision == "approve" and not settings.allow_self_approval and is_own_call(approval, user):
        return "You made this call yourself; another approver must approve it ([approvals] allow_self_approval)."
    return None


async def decide(
    approvals: Approvals,
    settings: ApprovalsSettings,
    tool_lookup: ToolLookup,
    approval_id: str,
    user: Approver,
    decision: str | None,
) -> Outcome:
    """Record ``user``'s ``decision`` ("approve" or "deny") on one held call, as the approval page and the console
    both do: the approver roles and self-approval checked, a tool that changed or vanished refused (and the
    approval voided), the session waiting on it told, and ``approval.decided`` audited."""
    if decision not in ("approve", "deny"):
        return Outcome(title="Unknown decision", problem="Choose Approve or Deny.", status=400)
    approval = await approvals.run(approvals.store.get, approval_id)
    if approval is None:
        return Outcome(title="No such approval", problem="There is no approval request at this address.", status=404)
    refused = refusal(settings, approval, user, decision)
    if refused is not None:
        return Outcome(title="Cannot decide", problem=refused, status=403)
    if decision == "approve":
        gone = await _tool_gone(approvals, tool_lookup, approval)
        if gone is not None:
            approvals.decided(approval_id)
            return Outcome(title="Cannot approve", problem=gone, status=409)
    try:
        if decision == "approve":
            done = await approvals.run(approvals.store.approve, approval_id, user.username, settings.required_approvals)
        else:
            done = await approvals.run(approvals.store.deny, approval_id, user.username)
    except ApprovalRefused as exc:
        return Outcome(title="Cannot decide", problem=str(exc), status=409)
    log.info("approval %s: %s by %s (now %s)", approval_id, decision, user.username, done.status)
    if done.status != "pending":
        approvals.decided(approval_id)
    approvals.audit(
        "approval.decided",
        approval_id=approval_id,
        name=done.tool,
        subject=done.subject,
        decided_by=user.username,
        decision=decision,
        outcome=done.status,
    )
    return Outcome(done, _notice(done, settings))


async def _tool_gone(approvals: Approvals, tool_lookup: ToolLookup, approval: ApprovalView) -> str | None:
    """Issue 11: a tool that disappeared (or changed) while its approval was pending is refused, not run."""
    current = tool_lookup(approval.tool)
    if current is not None and current[0] == approval.tool_digest:
        return None
    await approvals.run(approvals.store.void, approval.id)
    what = "no longer exists" if current is None else "has changed"
    return f"The tool '{approval.tool}' {what} since this call was made, so it can never run. Nothing was approved."


def _notice(done: ApprovalView, settings: ApprovalsSettings) -> str:
    if done.status == "approved":
        return "Approved. The caller can now run this call once, with exactly these arguments."
    if done.status == "denied":
        return "Denied. The call will not run."
    return f"Your approval is recorded; {settings.required_approvals - len(done.approved_by)} more approver(s) needed."


def catalog_lookup(catalog: Catalog) -> ToolLookup:
    """The current digest and client-visible definition of a tool of ``catalog`` by public name."""

    def tool_lookup(name: str) -> tuple[str, dict[str, Any]] | None:
        if name not in catalog.tools:
            return None
        wire = next((t for t in catalog.tools_wire if t.get("name") == name), {})
        return getattr(catalog, "digests", {}).get(name, ""), wire

    return tool_lookup


def _throttle(limit: int, window: float, fleet: Any) -> Any:
    """The sign-in throttle per address: this process's, or in a fleet one budget for every replica."""
    if fleet is None:
        return AddressThrottle(limit, window)
    from patchbay.fleet.limits import SharedThrottle

    return SharedThrottle(fleet.link, fleet.replicas.live, limit, window)


def build(settings: Settings, dispatcher: Any, catalog: Catalog, auth: Any, fleet: Any = None) -> ApprovalPages:
    """The approvals and their page for an app: given to ``dispatcher.approvals``; routes from ``routes()``.

    With sign-in on, the store, accounts and sign-in throttle are the authorization server's; without it, the
    store is opened here (an approver still signs in with a local account, if the store has one), and in a
    ``fleet`` (patchbay.fleet.Fleet) the throttle per address is the fleet's.
    """
    from patchbay.gate.approval_store import redactor
    from patchbay.store import create_engine
    from patchbay.vault import Vault

    engine = auth.core.engine if auth is not None else create_engine(settings.store_url)
    approvals = Approvals(
        engine,
        settings.approvals,
        settings.public_url,
        owns_engine=auth is None,
        vault=Vault.from_settings(settings),
        redact=redactor(settings.audit.redact_fields),
    )

    def schema(name: str) -> Any:
        tool = catalog.tools.get(name)
        return tool.input_schema if tool is not None else None

    approvals.schemas = schema
    if auth is not None:
        users, throttle = auth.core.users, auth.authorization.throttle
    else:
        login = settings.auth
        users = Users(engine, max_attempts=login.login_attempts, lockout=login.lockout_seconds)
        throttle = _throttle(login.login_attempts_per_address, login.lockout_seconds, fleet)
    dispatcher.approvals = approvals

    tool_lookup = catalog_lookup(catalog)
    signin = PageSignIn(
        users,
        throttle,
        approvals.run,
        COOKIES,
        "/approvals/",
        prompt=lambda approval_id: pages.prompt(approval_id),
        known=lambda approval_id: bool(APPROVAL_ID.match(approval_id)),
        server_name=settings.server.name,
        session_seconds=settings.approvals.session_seconds,
        continue_label="Continue to the approval",
        missing=("No such approval", "There is no approval request at this address."),
        max_form_bytes=settings.auth.max_form_bytes,
        secure_cookies=settings.public_url.startswith("https://"),
        audit=lambda method, **fields: approvals.audit(method, **fields),
    )
    pages = ApprovalPages(approvals, signin, settings.approvals, tool_lookup, settings.server.name)
    signin.offer_provider_of(auth)
    return pages
