"""The console's protections: response headers, the CSRF token, the recent-sign-in mark and the loopback rule.

The CSRF token is bound to the person's session cookie (``page_token``, shared with the approval and link pages),
so a page of another site can neither post a console form nor reuse a token after the session ends. The
recent-sign-in mark is a cookie holding the time of the last sign-in, MACed with a key only the server holds and
bound to the session, so a person at an unlocked browser cannot extend it.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import time
from urllib.parse import urlsplit

from starlette.responses import Response

from patchbay.auth.page_signin import page_token
from patchbay.settings import Settings

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


def secure(response: Response) -> Response:
    """Add the console's headers to ``response``; a header the response already sets (the sign-in page's own,
    stricter CSP, a static file's cache policy) is kept."""
    for name, value in HEADERS.items():
        if name.lower() not in response.headers:
            response.headers[name] = value
    return response


def csrf_token(session_cookie: str) -> str:
    """The token every console form carries in its ``csrf`` field."""
    return page_token(session_cookie, "patchbay-console", "csrf")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (``[server] host``) binds loopback only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def same_origin(origin: str | None, public_url: str, host: str | None) -> bool:
    """Whether a POST's ``Origin`` (when the browser sends one) is this server: its public URL, or the Host the
    request came to (the Edge has already checked that Host is allowed)."""
    if origin is None:
        return True
    parts = urlsplit(origin)
    return origin.rstrip("/") == public_url.rstrip("/").lower() or (host is not None and parts.netloc == host)


class SignInMark:
    """When the person signed in last, as a cookie value: ``<epoch>.<mac>``."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.server.secret
        # With [server] secret every replica accepts every other's mark; without it, a restart asks again.
        self.key = (
            hashlib.sha256(b"patchbay console sign-in\0" + secret.get_secret_value().encode()).digest()
            if secret is not None
            else secrets.token_bytes(32)
        )
        self.window = settings.console.reauth_minutes * 60

    def _mac(self, session_cookie: str, issued: int) -> str:
        message = f"{hashlib.sha256(session_cookie.encode()).hexdigest()}\0{issued}".encode()
        return hmac.new(self.key, message, hashlib.sha256).hexdigest()[:40]

    def make(self, session_cookie: str, now: float | None = None) -> str:
        issued = int(time.time() if now is None else now)
        return f"{issued}.{self._mac(session_cookie, issued)}"

    def recent(self, session_cookie: str, mark: str | None, now: float | None = None) -> bool:
        """Whether ``mark`` says this session signed in within ``reauth_minutes``."""
        issued, _, mac = (mark or "").partition(".")
        if not (issued.isascii() and issued.isdigit()) or len(issued) > 12:
            return False
        age = (time.time() if now is None else now) - int(issued)
        return 0 <= age <= self.window and hmac.compare_digest(
            mac.encode(), self._mac(session_cookie, int(issued)).encode()
        )
