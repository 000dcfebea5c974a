"""The operator console at ``/admin``: server-rendered pages over the runtime, signed in like Patchbay's other pages.

``build(runtime, auth)`` gives the console of an app (or None when ``[console] enabled = false``); its routes go in
the app's router, behind the Edge's Host check like every other route. Page modules (``console/pages/``) register
their handlers on the :class:`Console` with ``@console.page`` and ``@console.action``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from patchbay.auth.body import Form
from patchbay.console.core import LOCAL, Admin, Console, NavItem, Page, PageResult
from patchbay.console.pages import PAGES, TITLES
from patchbay.console.security import SignInMark, is_loopback
from patchbay.console.signin import COOKIES, PREFIX, ConsoleSignIn

if TYPE_CHECKING:
    from patchbay.app import Runtime

__all__ = ["LOCAL", "Admin", "Console", "Form", "NavItem", "Page", "PageResult", "build"]

OFF = (
    'The console is off: [auth] mode is "none", so nobody signs in, and this server listens on {host}, which is '
    'not a loopback address. Set [auth] mode = "oauth" (and add an admin user), or listen on 127.0.0.1.'
)


def build(runtime: Runtime, auth: Any) -> Console | None:
    """The console for ``runtime``; ``auth`` is the app's AuthServer (None with ``[auth] mode = "none"``)."""
    settings = runtime.settings
    if not settings.console.enabled:
        return None
    if auth is None:
        host = settings.server.host
        console = Console(runtime, None, None if is_loopback(host) else OFF.format(host=host))
    else:
        console = Console(runtime, None)
        console.signin = _signin(runtime, auth, console.known)
    if console.off is None:
        _register_pages(console)
    return console


def _signin(runtime: Runtime, auth: Any, known: Callable[[str], bool]) -> ConsoleSignIn:
    settings = runtime.settings
    signin = ConsoleSignIn(
        auth.core.users,
        auth.authorization.throttle,
        auth.core.run,
        COOKIES,
        PREFIX + "/",
        prompt=lambda key: _prompt(settings.server.name),
        known=known,
        server_name=settings.server.name,
        session_seconds=settings.console.session_minutes * 60,
        continue_label="Continue to the console",
        missing=("Not found", "There is no console page at this address."),
        max_form_bytes=settings.auth.max_form_bytes,
        secure_cookies=settings.public_url.startswith("https://"),
        audit=lambda method, **fields: _audit(runtime, method, **fields),
        mark=SignInMark(settings),
    )
    signin.offer_provider_of(auth)
    return signin


def _audit(runtime: Runtime, method: str, **fields: Any) -> None:
    if runtime.dispatcher.audit is not None:
        runtime.dispatcher.audit.event(method, **fields)


def _prompt(server_name: str) -> str:
    from html import escape

    return (
        f"<h1>Sign in to the {escape(server_name)} console</h1><p>Sign in with an account that has the admin role "
        "(or an approver role, for the approvals page).</p>"
    )


def _register_pages(console: Console) -> None:
    for name in PAGES:
        module_name = f"patchbay.console.pages.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise  # the page exists but needs something missing: that is a real error
            continue
        module.register(console)
        role = console.page_roles.get("/" if name == "overview" else f"/{name}", "admin")
        console.nav_pages.append((name, TITLES.get(name, name.capitalize()), role))
