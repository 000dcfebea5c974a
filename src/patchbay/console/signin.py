"""Sign-in to the console: the pages' shared sign-in (``PageSignIn``), plus two things only the console needs.

Every sign-in (a local password or the organisation's provider) also sets the recent-sign-in mark that dangerous
actions ask for, and sends the person back to the console address they asked for (remembered in a short cookie),
not only to the first segment of it that names the sign-in page.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from patchbay.auth.page_signin import FORM_SECONDS, PageCookies, PageSignIn
from patchbay.console.security import SignInMark

PREFIX = "/admin"
COOKIES = PageCookies("patchbay_admin", PREFIX, "strict")
MARK_COOKIE = "patchbay_admin_signed"
NEXT_COOKIE = "patchbay_admin_next"


def safe_next(path: str | None) -> str | None:
    """``path`` when it is a console address on this origin (no scheme, no host, no ``//``, no backslash)."""
    if not path or not path.startswith(PREFIX + "/") or "//" in path or "\\" in path or len(path) > 2000:
        return None
    return path if path.isascii() and path.isprintable() else None


@dataclass
class ConsoleSignIn(PageSignIn):
    mark: SignInMark | None = field(default=None, kw_only=True)

    async def open_session(self, response: Response, user_id: int) -> None:
        cookie = await self.run(self.users.open_browser_session, user_id, float(self.session_seconds))
        self._cookie(response, self.cookies.session, cookie, self.session_seconds)
        if self.mark is not None:
            self._cookie(response, MARK_COOKIE, self.mark.make(cookie), self.session_seconds)

    async def login(self, request: Request) -> Response:
        response = await super().login(request)
        target = safe_next(_decode(request.cookies.get(NEXT_COOKIE)))
        if response.status_code == 303 and target is not None:
            response.headers["location"] = target
            response.delete_cookie(NEXT_COOKIE, path=self.cookies.path)
        return response

    def remember(self, response: Response, path: str) -> None:
        """Come back to ``path`` after the sign-in that ``response`` (the sign-in page) starts."""
        if safe_next(path) is not None:
            self._cookie(response, NEXT_COOKIE, base64.urlsafe_b64encode(path.encode()).decode(), FORM_SECONDS)


def _decode(value: str | None) -> str | None:
    try:
        return base64.urlsafe_b64decode((value or "").encode()).decode() if value else None
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
