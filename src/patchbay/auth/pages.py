"""The sign-in and consent pages: small, server-rendered, accessible, with no external assets.

Every value is HTML-escaped; forms carry the request handle and a CSRF token that must match a cookie set on
the same browser. Responses forbid framing (clickjacking on a consent button) and caching.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from patchbay.auth.redirects import csp_source

# One message for a wrong name, a wrong password, a locked account and a throttled address: the page must not
# tell which accounts exist or are locked (see patchbay.auth.lockout).
REFUSED = "Wrong username or password, or too many attempts. Check them and try again in a few minutes."
DISABLED = "This account is disabled. Ask your administrator."

STYLE = """
body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#f4f5f7;color:#1b1d21}
main{max-width:26rem;margin:8vh auto;background:#fff;padding:2rem;border-radius:.75rem;
box-shadow:0 1px 3px rgba(0,0,0,.15)}
h1{font-size:1.35rem;margin:0 0 1rem}label{display:block;font-weight:600;margin:.75rem 0 .25rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.55rem;border:1px solid #767676;
border-radius:.4rem;font:inherit}button,.button{margin-top:1.25rem;padding:.6rem 1.1rem;border-radius:.4rem;
border:1px solid #1a56db;background:#1a56db;color:#fff;font:inherit;cursor:pointer;text-decoration:none;
display:inline-block}button.secondary{background:#fff;color:#1a56db}
:focus-visible{outline:3px solid #f59e0b;outline-offset:2px}
.error{background:#fde8e8;border:1px solid #c81e1e;padding:.6rem;border-radius:.4rem}
.note{color:#4b5563;font-size:.9rem}ul{padding-left:1.2rem}code{font-size:.9em}
"""


@dataclass(frozen=True)
class PageContext:
    client_name: str
    redirect_uri: str
    handle: str
    csrf: str
    server_name: str

    @property
    def redirect_host(self) -> str:
        parts = urlsplit(self.redirect_uri)
        return parts.netloc or f"{parts.scheme}:"

    @property
    def redirect_source(self) -> str | None:
        """The redirect's origin as a CSP source, rebuilt from its parts (never the client's text)."""
        return csp_source(self.redirect_uri)


def _headers(form_targets: tuple[str | None, ...] = ()) -> dict[str, str]:
    # form-action must allow the client's redirect: browsers apply it to the redirect after a form POST. Each
    # target is a csp_source() result, so no client text can add a directive (";") or a source (" ").
    action = " ".join(dict.fromkeys(["'self'", *(t for t in form_targets if t)]))
    return {
        "Content-Security-Policy": (
            f"default-src 'none'; style-src 'unsafe-inline'; form-action {action}; frame-ancestors 'none'; "
            "base-uri 'none'"
        ),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def _page(title: str, body: str, status: int = 200, form_targets: tuple[str | None, ...] = ()) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><main id="main">{body}</main></body></html>'
    )
    return HTMLResponse(html, status_code=status, headers=_headers(form_targets))


def _hidden(ctx: PageContext) -> str:
    return (
        f'<input type="hidden" name="request" value="{escape(ctx.handle)}">'
        f'<input type="hidden" name="csrf" value="{escape(ctx.csrf)}">'
    )


def _who(ctx: PageContext) -> str:
    return (
        f"<p><strong>{escape(ctx.client_name)}</strong> wants to use {escape(ctx.server_name)} on your behalf. "
        f"After you agree you are sent back to <code>{escape(ctx.redirect_host)}</code>.</p>"
    )


def login_page(
    ctx: PageContext,
    *,
    error: str | None = None,
    upstream: str | None = None,
    upstream_origin: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    parts = [f"<h1>Sign in to {escape(ctx.server_name)}</h1>", _who(ctx)]
    if error:
        parts.append(f'<p class="error" role="alert" id="login-error">{escape(error)}</p>')
    if upstream:
        parts.append(
            f'<form method="post" action="/authorize/upstream">{_hidden(ctx)}'
            f'<button type="submit">Sign in with {escape(upstream)}</button></form>'
            '<p class="note">Or with a local account:</p>'
        )
    described = ' aria-describedby="login-error"' if error else ""
    parts.append(
        f'<form method="post" action="/authorize/login">{_hidden(ctx)}'
        f'<label for="username">Username</label><input type="text" id="username" name="username" '
        f'autocomplete="username" required autofocus{described}>'
        '<label for="password">Password</label><input type="password" id="password" name="password" '
        'autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
    )
    # The upstream form's POST answers with a redirect to the identity provider, which form-action must allow too.
    targets = (ctx.redirect_source, csp_source(upstream_origin) if upstream and upstream_origin else None)
    return _page(f"Sign in · {ctx.server_name}", "".join(parts), status, targets)


def consent_page(ctx: PageContext, *, user: str, scopes: list[str], loopback_only: bool) -> HTMLResponse:
    items = "".join(f"<li><code>{escape(s)}</code></li>" for s in scopes) or "<li>basic access</li>"
    warning = ""
    if loopback_only:
        # MCP 2025-11-25 security: a URL-identified client whose only redirects are loopback could be anyone.
        warning = (
            '<p class="error" role="note">This client only redirects to this computer (localhost). Allow it '
            "only if you started it yourself just now.</p>"
        )
    body = (
        f"<h1>Allow access?</h1><p>Signed in as <strong>{escape(user)}</strong>.</p>{_who(ctx)}{warning}"
        f"<p>It asks for:</p><ul>{items}</ul>"
        f'<form method="post" action="/authorize/consent">{_hidden(ctx)}'
        '<button type="submit" name="decision" value="allow" autofocus>Allow</button> '
        '<button type="submit" name="decision" value="deny" class="secondary">Deny</button></form>'
        '<p class="note">You can withdraw this later; your administrator can revoke it at any time.</p>'
    )
    return _page(f"Allow access · {ctx.server_name}", body, 200, (ctx.redirect_source,))


def error_page(title: str, message: str, status: int = 400) -> HTMLResponse:
    body = f'<h1>{escape(title)}</h1><p role="alert">{escape(message)}</p>'
    return _page(title, body, status)
