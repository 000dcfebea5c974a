"""Drawing a page as the answer to a console form (a try's result, a decision refused), inside the console's
frame, with the CSRF token of the session that posted it."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from patchbay.console.core import LOCAL_COOKIE, Admin, Console, Page


def answer(console: Console, request: Request, who: Admin, page: Page) -> Response:
    """``page`` as the answer to an action: the action has already checked the session this cookie carries."""
    name = console.signin.cookies.session if console.signin is not None else LOCAL_COOKIE
    return console.render(request, page, who, request.cookies.get(name, ""))
