"""Request bodies of the sign-in endpoints: read up to a limit, of one media type, parsed with the standard library.

Every endpoint of the authorization server reads its body here. A declared ``Content-Length`` over the limit is
refused before anything is read, and a chunked body stops being read the moment it passes the limit (413). Only
the media type the endpoint needs is accepted (415): ``application/x-www-form-urlencoded`` for the token,
revocation, introspection, sign-in and consent forms (RFC 6749 §4.1.3, RFC 7009 §2.1, RFC 7662 §2.1), JSON for
registration (RFC 7591 §3.1). Forms are parsed here rather than by Starlette, so no multipart parser and no
temporary file is ever involved, and python-multipart is not needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote_plus

from starlette.requests import Request

from patchbay.auth.errors import OAuthError

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
# The longest form an endpoint here defines has about a dozen fields; anything far beyond is not a real client.
MAX_FIELDS = 50
_DIGITS = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class Form:
    """A parsed form: each name at most once, except those the endpoint declared repeatable."""

    fields: tuple[tuple[str, str], ...] = ()

    def get(self, name: str) -> str | None:
        return next((value for key, value in self.fields if key == name), None)

    def getlist(self, name: str) -> list[str]:
        return [value for key, value in self.fields if key == name]


def too_large(limit: int) -> OAuthError:
    return OAuthError("invalid_request", f"the request body is larger than this endpoint accepts ({limit} bytes)", 413)


def check_media_type(request: Request, expected: str) -> None:
    """Raises OAuthError (415) unless the Content-Type is ``expected``, with no charset other than UTF-8."""
    header = request.headers.get("content-type", "")
    media, _, params = header.partition(";")
    charset = _param(params, "charset")
    if media.strip().lower() != expected or charset not in (None, "utf-8", "us-ascii"):
        raise OAuthError("invalid_request", f"send the body as {expected} (UTF-8)", 415)


def _param(params: str, name: str) -> str | None:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"').lower()
    return None


async def read_body(request: Request, limit: int, media_type: str) -> bytes:
    """The whole body, at most ``limit`` bytes, declared or chunked.

    Raises:
        OAuthError: 415 for another media type, 413 for a larger body, 400 for a malformed Content-Length.
    """
    check_media_type(request, media_type)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not _DIGITS.fullmatch(declared.strip()):
            raise OAuthError("invalid_request", "Content-Length is not a number")
        if int(declared) > limit:
            raise too_large(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_form(body: bytes, *, max_fields: int = MAX_FIELDS, repeatable: frozenset[str] = frozenset()) -> Form:
    """``application/x-www-form-urlencoded`` (WHATWG URL §5.1), strictly: every field is ``name=value``, the
    text is ASCII with UTF-8 percent-escapes, and a name appears once (RFC 6749 §3.1: "parameters MUST NOT be
    included more than once") unless it is in ``repeatable`` (RFC 8707 §2: ``resource`` may repeat).

    Raises:
        OAuthError: invalid_request naming the field that is wrong (never its value).
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise OAuthError("invalid_request", "the form must be ASCII, with other characters percent-encoded") from None
    if not text:
        return Form()
    pieces = text.split("&")
    if len(pieces) > max_fields:
        raise OAuthError("invalid_request", f"the form has more than {max_fields} fields")
    fields: list[tuple[str, str]] = []
    seen: set[str] = set()
    for number, piece in enumerate(pieces, 1):
        raw_name, sep, raw_value = piece.partition("=")
        try:
            name, value = unquote_plus(raw_name, errors="strict"), unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise OAuthError("invalid_request", f"form field {number} is not UTF-8") from None
        if not sep or not name:
            raise OAuthError("invalid_request", f"form field {number} is not name=value")
        if name in seen and name not in repeatable:
            raise OAuthError("invalid_request", f"{_shown(name)} is sent more than once (RFC 6749 §3.1)")
        seen.add(name)
        fields.append((name, value))
    return Form(tuple(fields))


def _shown(name: str) -> str:
    # A parameter name is client text: shown bounded and quoted, in a JSON body only.
    return repr(name[:40])


async def read_form(
    request: Request, limit: int, *, max_fields: int = MAX_FIELDS, repeatable: frozenset[str] = frozenset()
) -> Form:
    """Read and parse a form body; see :func:`read_body` and :func:`parse_form`.

    Raises:
        OAuthError: 413, 415 or 400 (invalid_request).
    """
    return parse_form(await read_body(request, limit, FORM), max_fields=max_fields, repeatable=repeatable)
