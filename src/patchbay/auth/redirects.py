"""Redirect URIs: which ones a client may register, and the only form in which one reaches a response header.

A registered redirect URI ends up in two headers: ``Location`` (after sign-in) and the sign-in pages'
``Content-Security-Policy`` ``form-action`` (browsers apply it to the redirect that follows a form POST). So a URI
is held to RFC 3986 characters with a real host, and the CSP gets a source expression rebuilt from the parsed
parts, never the client's text.

Accepted (OAuth 2.1 §2.3.1, RFC 8252 §7): ``https`` to any host (``https://claude.ai/api/mcp/auth_callback``,
``https://chatgpt.com/connector_platform_oauth_redirect``), ``http`` only to a loopback host on any port
(``http://localhost:PORT/callback``, ``http://127.0.0.1:PORT/…``, ``http://[::1]:PORT/…``), and private-use
schemes of native apps (``com.example.app:/callback``, ``cursor://anysphere.cursor-retrieval/…``).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any
from urllib.parse import SplitResult, urlsplit

from patchbay.auth.errors import ErrorCode, OAuthError

MAX_LENGTH = 2000
# Schemes a redirect must never use, whatever the client says (RFC 8252 §7.1 allows private-use schemes).
FORBIDDEN_SCHEMES = {"javascript", "data", "file", "vbscript", "about", "blob", "ftp", "ws", "wss"}
# RFC 3986 §2: unreserved, reserved and "%" only. No space, quote, angle bracket, backslash, control or non-ASCII
# character; "#" is left out too (no fragment, OAuth 2.1 §2.3.1).
_URI_CHARS = re.compile(r"[A-Za-z0-9\-._~:/?\[\]@!$&'()*+,;=%]+")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*")
# A DNS name (RFC 1123 §2.1 labels) or a dotted IPv4 address; IPv6 literals are checked with ipaddress.
_HOST = re.compile(r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


def is_loopback_host(host: str) -> bool:
    # Here rather than with the client store (auth.clients): the sign-in pages check redirects without SQLAlchemy.
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse(uri: str, why: str, code: ErrorCode) -> OAuthError:
    shown = uri if len(uri) <= 100 else uri[:100] + "…"
    return OAuthError(code, f"redirect URI {shown!r}: {why}")


def check_redirect_uri(uri: Any, code: ErrorCode = "invalid_redirect_uri") -> str:
    """The URI, unchanged, when a client may register it.

    Raises:
        OAuthError: ``code`` (``invalid_redirect_uri`` by default, RFC 7591 §3.2.2) saying what is wrong.
    """
    if not isinstance(uri, str) or not uri or len(uri) > MAX_LENGTH:
        raise OAuthError(code, f"each redirect URI must be a non-empty string of at most {MAX_LENGTH} characters")
    if not _URI_CHARS.fullmatch(uri) or _BAD_ESCAPE.search(uri):
        raise _refuse(uri, "only RFC 3986 URI characters are allowed (no spaces, quotes, '#' or '\\')", code)
    try:
        parts = urlsplit(uri)
    except ValueError:  # urllib refuses an unclosed or invalid bracketed host ("https://[::1/cb")
        raise _refuse(uri, "has no valid host name or IP address", code) from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise _refuse(uri, "must be an absolute URI", code)
    if scheme in FORBIDDEN_SCHEMES:
        raise _refuse(uri, f"the {scheme}: scheme is not allowed for redirects", code)
    if scheme in ("http", "https") or parts.netloc or uri[len(scheme) :].startswith("://"):
        why = _authority_problem(parts)
        if why:
            raise _refuse(uri, why, code)
    if scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise _refuse(uri, "http is only allowed to a loopback host (127.0.0.1, [::1], localhost)", code)
    return uri


def _authority_problem(parts: SplitResult) -> str | None:
    """What is wrong with the host and port part, or None."""
    netloc = parts.netloc
    if not netloc:
        return "has no host"
    if "@" in netloc:
        return "must not contain user information (user@host)"
    host, port = _host_port(netloc)
    if host is None:
        return "has no valid host name or IP address"
    if port is not None and not (_is_digits(port) and 0 < int(port) < 65536):
        return "has an invalid port"
    return None


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5


def _host_port(netloc: str) -> tuple[str | None, str | None]:
    """(host, port text) from an authority without userinfo; host None when it is not a real host."""
    if netloc.startswith("["):
        literal, bracket, rest = netloc[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None, None
        try:
            ipaddress.IPv6Address(literal)
        except ValueError:
            return None, None
        return f"[{literal.lower()}]", rest[1:] if rest else None
    host, colon, port = netloc.partition(":")
    if not _HOST.fullmatch(host.lower()) or (colon and not port):
        return None, None
    return host.lower(), port if colon else None


def csp_source(uri: str) -> str | None:
    """A CSP source expression (CSP3 §2.3.1) for the origin of ``uri``, rebuilt from its parsed parts; None when
    the URI has no such origin (then the header names only ``'self'``, and the browser, not the header, fails)."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if not _SCHEME.fullmatch(scheme):
        return None
    if not parts.netloc:
        return f"{scheme}:"  # a private-use scheme with no authority: a scheme-source
    if "@" in parts.netloc:
        return None
    host, port = _host_port(parts.netloc)
    if host is None or (port is not None and not _is_digits(port)):
        return None
    return f"{scheme}://{host}" + (f":{int(port)}" if port is not None else "")
