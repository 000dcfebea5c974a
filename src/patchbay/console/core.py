"""The console's framework: who is signed in, the page and action decorators, rendering, CSRF and re-auth.

A page module registers GET handlers with ``@console.page(path)`` and POST handlers with ``@console.action(path)``;
paths are relative to ``/admin`` (``"/tools"`` serves ``/admin/tools``; ``"/"`` is the overview). A GET handler
returns a :class:`Page` (a template and its context, rendered inside ``base.html`` with the common context, or
only its ``{% block main %}`` for a request with ``X-Console-Partial: 1``) or any Response. A POST handler gets the
parsed form after the console has checked, in this order, the Origin, the session, the CSRF token, the role and,
for a dangerous action, a recent sign-in; it records what it did with :meth:`Console.audit` and answers, usually,
with :meth:`Console.redirect` (303 and a notice shown once).
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from patchbay.auth.body import Form, read_form
from patchbay.auth.crypto import new_secret, same
from patchbay.auth.errors import OAuthError
from patchbay.auth.page_signin import KEY
from patchbay.console.assets import Static, environment
from patchbay.console.security import csrf_token, same_origin, secure
from patchbay.console.signin import COOKIES, MARK_COOKIE, PREFIX, ConsoleSignIn

if TYPE_CHECKING:
    import jinja2

    from patchbay.app import Runtime
    from patchbay.auth.users import UserView

FLASH_COOKIE = "patchbay_admin_flash"
# With [auth] mode = "none" (loopback only) nobody signs in; this cookie is what the CSRF token is bound to.
LOCAL_COOKIE = "patchbay_admin_local"
MAX_FIELDS = 200
PARTIAL_HEADER = "x-console-partial"


@dataclass(frozen=True)
class Admin:
    """The person using the console."""

    username: str
    subject: str
    roles: frozenset[str]
    user_id: int | None

    @classmethod
    def of(cls, user: UserView) -> Admin:
        return cls(user.username, f"user:{user.username}", user.roles, user.id)


# [auth] mode = "none" on loopback: whoever can reach the machine's loopback is the operator.
LOCAL = Admin("local", "local:operator", frozenset({"admin", "approver"}), None)


@dataclass
class Page:
    """What a GET handler renders: ``template`` (which extends base.html) with ``context``."""

    template: str
    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200


PageResult = Page | Response
PageHandler = Callable[[Request, Admin], Awaitable[PageResult]]
ActionHandler = Callable[[Request, Admin, Form], Awaitable[Response]]


@dataclass(frozen=True)
class NavItem:
    name: str
    title: str
    href: str
    current: bool


class Console:
    """The console of one app. Built by :func:`patchbay.console.build`; serve :meth:`routes`."""

    def __init__(self, runtime: Runtime, signin: ConsoleSignIn | None, off: str | None = None) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.signin = signin
        self.off = off
        self.static = Static()
        self.nav_pages: list[tuple[str, str, str]] = []  # (name, title, role) in navigation order
        self.page_roles: dict[str, str] = {}  # page path (under /admin) → role
        self._routes: list[BaseRoute] = []
        # The app's transports (set by create_app), for the session counts on the overview.
        self.sessions: Any = None
        self.legacy: Any = None
        self.action("/signout", role="")(self._sign_out)

    @functools.cached_property
    def templates(self) -> jinja2.Environment:
        """The pages' templates, made when the first page is rendered."""
        return environment(self.static.url)

    # -- registration ---------------------------------------------------------------------------------------

    def page(self, path: str, *, role: str = "admin") -> Callable[[PageHandler], PageHandler]:
        """Register a GET handler at ``/admin<path>`` for people with ``role``."""

        def register(handler: PageHandler) -> PageHandler:
            async def endpoint(request: Request) -> Response:
                return secure(await self._serve_page(request, handler, role))

            self.page_roles[path] = role
            self._routes.append(Route(PREFIX + path, endpoint, methods=["GET"]))
            return handler

        return register

    def action(
        self, path: str, *, role: str = "admin", dangerous: bool = False, repeatable: frozenset[str] = frozenset()
    ) -> Callable[[ActionHandler], ActionHandler]:
        """Register a POST handler at ``/admin<path>``; ``dangerous`` ones need a sign-in within reauth_minutes;
        ``repeatable`` names the form fields that may come more than once (checkboxes)."""

        def register(handler: ActionHandler) -> ActionHandler:
            async def endpoint(request: Request) -> Response:
                return secure(await self._serve_action(request, handler, role, dangerous, repeatable))

            self._routes.append(Route(PREFIX + path, endpoint, methods=["POST"]))
            return handler

        return register

    def routes(self) -> list[BaseRoute]:
        if self.off is not None:
            return [Route(PREFIX, self._off), Route(PREFIX + "/{rest:path}", self._off)]
        fixed: list[BaseRoute] = [
            Route(PREFIX, self._to_overview),
            Route(PREFIX + "/overview", self._to_overview),
            Route(PREFIX + "/static/{name}", self._static),
        ]
        if self.signin is not None:
            fixed += [Route(r.path, _secured(r.endpoint), methods=["POST"]) for r in self.signin.routes()]  # type: ignore[attr-defined]
        return fixed + self._routes

    # -- what handlers call ---------------------------------------------------------------------------------

    def audit(self, method: str, **fields: Any) -> None:
        """Record an event in the audit trail (``console.<page>.<verb>``, ``by=who.username``, ``outcome=``)."""
        recorder = self.runtime.dispatcher.audit
        if recorder is not None:
            recorder.event(method, **fields)

    def redirect(self, request: Request, path: str, notice: str | None = None) -> Response:
        """303 to ``path`` (under /admin unless it starts with it), showing ``notice`` once on the next page."""
        target = path if path == PREFIX or path.startswith(PREFIX + "/") else PREFIX + path
        response = RedirectResponse(target, 303)
        if notice:
            encoded = base64.urlsafe_b64encode(notice[:1000].encode()).decode()
            response.set_cookie(FLASH_COOKIE, encoded, max_age=120, path=PREFIX, httponly=True, samesite="strict")
        return secure(response)

    def allowed(self, who: Admin, role: str) -> bool:
        """``admin`` sees everything; ``approver`` pages admit [approvals] approver_roles too; ``""`` anyone."""
        if not role or "admin" in who.roles:
            return True
        if role == "approver":
            return bool(who.roles & set(self.settings.approvals.approver_roles))
        return role in who.roles

    def render(self, request: Request, page: Page, who: Admin, session: str) -> Response:
        """``page`` as HTML, inside base.html (or only its main block for a partial refresh)."""
        partial = request.headers.get(PARTIAL_HEADER) == "1"
        flash = None if partial else _flash(request)
        context: dict[str, Any] = {
            "who": who,
            "nav": self.nav(who, request.url.path),
            "csrf": csrf_token(session),
            "flash": flash,
            "request": request,
            "server_name": self.settings.server.name,
            "local": self.signin is None,
            **page.context,
        }
        context["ui"] = self.templates.get_template("_macros.html").make_module(context)
        template = self.templates.get_template(page.template)
        if partial and "main" in template.blocks:
            html = "".join(template.blocks["main"](template.new_context(context)))
        else:
            html = template.render(context)
        response = HTMLResponse(html, status_code=page.status)
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=PREFIX)
        return response

    def nav(self, who: Admin, path: str) -> list[NavItem]:
        items = []
        for name, title, role in self.nav_pages:
            if self.allowed(who, role):
                href = PREFIX + ("/" if name == "overview" else f"/{name}")
                current = path == href if name == "overview" else path == href or path.startswith(href + "/")
                items.append(NavItem(name, title, href, current))
        return items

    # -- serving --------------------------------------------------------------------------------------------

    async def _who(self, request: Request) -> tuple[Admin, str] | None:
        """The person and the cookie their CSRF token is bound to; None when nobody is signed in."""
        if self.signin is None:
            local = request.cookies.get(LOCAL_COOKIE)
            return (LOCAL, local) if local else None
        signed_in = await self.signin.user(request)
        return None if signed_in is None else (Admin.of(signed_in[0]), signed_in[1])

    async def _serve_page(self, request: Request, handler: PageHandler, role: str) -> Response:
        who = await self._who(request)
        fresh = None
        if who is None and self.signin is None:
            fresh = new_secret()
            who = (LOCAL, fresh)
        if who is None:
            return self._sign_in(
                request, None, request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
        admin, session = who
        if not self.allowed(admin, role):
            response = self.error(request, admin, session, 403, "Not allowed", _role_text(admin, role))
        else:
            result = await handler(request, admin)
            response = result if isinstance(result, Response) else self.render(request, result, admin, session)
        if fresh is not None:
            response.set_cookie(LOCAL_COOKIE, fresh, path=PREFIX, httponly=True, samesite="strict")
        return response

    async def _serve_action(
        self, request: Request, handler: ActionHandler, role: str, dangerous: bool, repeatable: frozenset[str]
    ) -> Response:
        if not same_origin(request.headers.get("origin"), self.settings.public_url, request.headers.get("host")):
            return self._bare(403, "Refused", "This form was posted from another site; nothing was done.")
        try:
            form = await self._form(request, repeatable)
        except OAuthError as exc:
            return self._bare(exc.status, "Form refused", f"{exc.description} Nothing was done.")
        who = await self._who(request)
        if who is None:
            if self.signin is None:
                return self._bare(403, "Form expired", _EXPIRED)
            return self._sign_in(request, "Your sign-in expired. Sign in again, then submit the form again.", None)
        admin, session = who
        if not same(form.get("csrf") or "", csrf_token(session)):
            where = request.url.path
            self.audit(
                "console.refused",
                by=admin.username,
                subject=admin.subject,
                path=where,
                reason="csrf",
                outcome="refused",
            )
            return self.error(request, admin, session, 403, "Form expired", _EXPIRED)
        if not self.allowed(admin, role):
            return self.error(request, admin, session, 403, "Not allowed", _role_text(admin, role))
        if dangerous and not self._recent(request, session):
            return self._sign_in(request, _REAUTH.format(self.settings.console.reauth_minutes), _back(request))
        return await handler(request, admin, form)

    async def _form(self, request: Request, repeatable: frozenset[str]) -> Form:
        """The posted form. A POST with no body at all (no fields, so no media type either) is an empty form: it
        lacks the CSRF token, which is the refusal it gets (403), not an objection to its media type (415)."""
        headers = request.headers
        if headers.get("content-length", "0").strip() == "0" and not {"content-type", "transfer-encoding"} & set(
            headers.keys()
        ):
            return Form()
        limit = self.settings.auth.max_form_bytes
        return await read_form(request, limit, max_fields=MAX_FIELDS, repeatable=repeatable)

    def _recent(self, request: Request, session: str) -> bool:
        if self.signin is None or self.signin.mark is None:
            return True  # loopback without sign-in: there is no password to ask again
        return self.signin.mark.recent(session, request.cookies.get(MARK_COOKIE))

    def _sign_in(self, request: Request, error: str | None, back: str | None) -> Response:
        assert self.signin is not None  # only called when the console has sign-in
        key = self.key_of(request.url.path)
        response = self.signin.page(key, error, 401)
        if back is not None:
            self.signin.remember(response, back)
        return response

    def key_of(self, path: str) -> str:
        """The sign-in page's key for a console address: its first segment (``overview`` for /admin/)."""
        first = path[len(PREFIX) :].strip("/").split("/")[0]
        return first if first and KEY.match(first) and self.known(first) else "overview"

    def known(self, key: str) -> bool:
        return key == "overview" or any(p.strip("/").split("/")[0] == key for p in self.page_roles)

    def error(self, request: Request, who: Admin, session: str, status: int, title: str, text: str) -> Response:
        """An error page inside the console's frame."""
        return self.render(request, Page("error.html", {"title": title, "text": text}, status), who, session)

    def _bare(self, status: int, title: str, text: str) -> Response:
        html = self.templates.get_template("bare.html").render(
            title=title, text=text, server_name=self.settings.server.name
        )
        return HTMLResponse(html, status_code=status)

    async def _sign_out(self, request: Request, who: Admin, form: Form) -> Response:
        if self.signin is not None:  # the session ends in the store: a copy of the cookie signs nobody in
            await self.signin.run(self.signin.users.close_browser_session, request.cookies.get(COOKIES.session))
        self.audit("console.sign_out", by=who.username, subject=who.subject, outcome="ok")
        response = self.redirect(request, "/", "Signed out.")
        for name in (COOKIES.session, MARK_COOKIE):
            response.delete_cookie(name, path=PREFIX)
        return response

    async def _off(self, request: Request) -> Response:
        return secure(self._bare(403, "The console is off", self.off or ""))

    async def _to_overview(self, request: Request) -> Response:
        return secure(RedirectResponse(PREFIX + "/", 303))

    async def _static(self, request: Request) -> Response:
        return secure(self.static.response(request.path_params["name"], request.headers.get("if-none-match")))


_EXPIRED = "This form was not opened in this browser session. Reload the page and submit it again; nothing was done."
_REAUTH = (
    "This change needs a sign-in within the last {} minutes. Sign in again, then submit the form again; "
    "nothing was done yet."
)


def _role_text(who: Admin, role: str) -> str:
    return f"You are signed in as {who.username}, who does not have the {role} role this page needs."


def _back(request: Request) -> str | None:
    """The console page a form was posted from (the Referer, same origin only), to come back to after re-auth."""
    referer = request.headers.get("referer")
    if not referer:
        return None
    host = request.headers.get("host")
    rest = referer.split("://", 1)[-1]
    where, _, path = rest.partition("/")
    return "/" + path if host is not None and where == host else None


def _flash(request: Request) -> str | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        return base64.urlsafe_b64decode(raw.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _secured(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        return secure(await endpoint(request))

    return wrapped
