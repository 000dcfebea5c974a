"""Request bodies in the media type the operation takes (OpenAPI 3.1 §4.8.13 Request Body, §4.8.15 Encoding).

JSON (``application/json`` and any ``+json``) with orjson; ``application/x-www-form-urlencoded`` with each
property's Encoding style (form by default, deepObject, the delimited styles, or a content type such as JSON);
``multipart/form-data`` with one part per property, a file given as base64 text or ``{"content": base64,
"filename": ..., "contentType": ...}``; ``text/*`` as UTF-8; anything binary (``application/octet-stream``, or a
schema that says so) from base64 text.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

from patchbay.connectors.openapi.models import Body, Encoding

_DEFAULT_ENCODING = Encoding()
MAX_REF_DEPTH = 32


class BodyError(ValueError):
    """A body value cannot be sent as the media type says (``request.ArgumentError`` wraps it)."""


class BodyWriter:
    """Writes one operation's body; made once per plan."""

    __slots__ = ("_write", "media_type", "required")

    def __init__(self, media_type: str, required: bool, write: Callable[[Any, dict[str, str]], bytes]) -> None:
        self.media_type = media_type
        self.required = required
        self._write = write

    def write(self, headers: dict[str, str], value: Any) -> bytes:
        """The body bytes (and its Content-Type in ``headers``); nothing when no value was given and none is needed.

        Raises:
            BodyError: the value cannot be sent as the media type says.
        """
        if value is None:
            if not self.required:
                return b""
            value = {}  # every property optional: an empty object still says "this is the body"
        headers["Content-Type"] = self.media_type
        return self._write(value, headers)


def body_writer(body: Body, defs: dict[str, Any]) -> BodyWriter:
    media = body.media_type.split(";", 1)[0].strip().lower()
    schema = resolve(body.schema, defs)
    if media == "application/json" or media.endswith("+json"):
        return BodyWriter(body.media_type, body.required, _write_json)
    if media == "application/x-www-form-urlencoded":
        return BodyWriter(body.media_type, body.required, _form_writer(body))
    if media == "multipart/form-data" or media.startswith("multipart/"):
        return BodyWriter(body.media_type, body.required, _multipart_writer(body, schema, defs))
    if media == "application/octet-stream" or is_file(schema):
        return BodyWriter(body.media_type, body.required, _write_binary)
    return BodyWriter(body.media_type, body.required, _write_text)


def resolve(schema: Any, defs: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``{"$ref": "#/$defs/<key>"}`` chain followed (cycles stop at ``MAX_REF_DEPTH``)."""
    for _ in range(MAX_REF_DEPTH):
        if not isinstance(schema, dict):
            return {}
        ref = schema.get("$ref")
        if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
            return schema
        schema = defs.get(ref.removeprefix("#/$defs/"))
    return {}


def is_file(schema: dict[str, Any]) -> bool:
    """A schema that describes raw bytes: ``format: binary`` (3.0) or ``contentMediaType`` without an encoding
    (3.1 §4.8.14.3, "Working with binary data")."""
    if schema.get("format") == "binary":
        return True
    return "contentMediaType" in schema and "contentEncoding" not in schema and schema.get("type") in (None, "string")


# -- JSON, text, binary -------------------------------------------------------------------------------------------


def _write_json(value: Any, headers: dict[str, str]) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError as exc:
        raise BodyError(f"cannot be written as JSON ({exc})") from None


def _write_text(value: Any, headers: dict[str, str]) -> bytes:
    return value.encode() if isinstance(value, str) else orjson.dumps(value)


def _write_binary(value: Any, headers: dict[str, str]) -> bytes:
    content, _, content_type = _file(value)
    if content_type:
        headers["Content-Type"] = content_type
    return content


def _file(value: Any) -> tuple[bytes, str, str]:
    """(bytes, filename, content type) of a file argument: base64 text or {"content", "filename", "contentType"}."""
    filename = content_type = ""
    if isinstance(value, dict):
        filename = value.get("filename") or ""
        content_type = value.get("contentType") or ""
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise BodyError("a file's filename and contentType must be text")
        value = value.get("content")
    if not isinstance(value, str):
        raise BodyError('a file must be base64 text, or {"content": base64 text, "filename": ..., "contentType": ...}')
    try:
        return base64.b64decode(value, validate=True), filename, content_type
    except (binascii.Error, ValueError):
        try:  # base64url (RFC 4648 §5), as some clients write it
            padded = value + "=" * (-len(value) % 4)
            return base64.urlsafe_b64decode(padded.encode("ascii")), filename, content_type
        except (binascii.Error, ValueError):
            raise BodyError("a file's content is not valid base64") from None


# -- application/x-www-form-urlencoded ---------------------------------------------------------------------------


def _form_writer(body: Body) -> Callable[[Any, dict[str, str]], bytes]:
    encodings = body.encoding

    def write(value: Any, headers: dict[str, str]) -> bytes:
        if not isinstance(value, dict):
            raise BodyError("a form body must be an object of fields")
        pieces = [_form_field(str(k), v, encodings.get(str(k), _DEFAULT_ENCODING)) for k, v in value.items()]
        return "&".join(piece for piece in pieces if piece).encode("ascii")

    return write


def _form_field(name: str, value: Any, encoding: Encoding) -> str:
    """One property as a query-style field (OpenAPI 3.1.1 Appendix E): its Encoding's style, or JSON text when
    the Encoding names a JSON content type."""
    if value is None:
        return ""
    encode = _reserved if encoding.allow_reserved else _strict
    key = _strict(name)
    if encoding.content_type is not None and "json" in encoding.content_type:
        return f"{key}={_strict(orjson.dumps(value).decode())}"
    if isinstance(value, list):
        items = [encode(_text(item)) for item in value]
        if encoding.explode and encoding.style == "form":
            return "&".join(f"{key}={item}" for item in items)
        return f"{key}={_DELIMITERS.get(encoding.style, ',').join(items)}"
    if isinstance(value, dict):
        if encoding.style == "deepObject":
            return "&".join(f"{key}%5B{_strict(str(k))}%5D={encode(_text(v))}" for k, v in value.items())
        if encoding.explode and encoding.style == "form":
            return "&".join(f"{_strict(str(k))}={encode(_text(v))}" for k, v in value.items())
        flat = [part for k, v in value.items() for part in (_strict(str(k)), encode(_text(v)))]
        return f"{key}={_DELIMITERS.get(encoding.style, ',').join(flat)}"
    return f"{key}={encode(_text(value))}"


_DELIMITERS = {"spaceDelimited": "%20", "pipeDelimited": "%7C"}


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return orjson.dumps(value).decode()


def _strict(text: str) -> str:
    return quote(text, safe="")


def _reserved(text: str) -> str:
    return quote(text, safe="!$'()*,;:/?@")


# -- multipart/form-data (RFC 7578) ------------------------------------------------------------------------------


def _multipart_writer(
    body: Body, schema: dict[str, Any], defs: dict[str, Any]
) -> Callable[[Any, dict[str, str]], bytes]:
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    files = {name for name, sub in (properties or {}).items() if _file_property(resolve(sub, defs), defs)}
    encodings = body.encoding

    def write(value: Any, headers: dict[str, str]) -> bytes:
        if not isinstance(value, dict):
            raise BodyError("a multipart body must be an object of parts")
        boundary = secrets.token_hex(16)
        headers["Content-Type"] = f"multipart/form-data; boundary={boundary}"
        parts: list[bytes] = []
        for name, item in value.items():
            if item is None:
                continue
            encoding = encodings.get(name)
            for one in item if isinstance(item, list) and name in files else [item]:
                parts.append(_part(boundary, name, one, name in files, encoding))
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(parts)

    return write


def _file_property(schema: dict[str, Any], defs: dict[str, Any]) -> bool:
    if schema.get("type") == "array":
        return is_file(resolve(schema.get("items"), defs))
    return is_file(schema)


def _part(boundary: str, name: str, value: Any, file: bool, encoding: Encoding | None) -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    if file:
        try:
            content, filename, content_type = _file(value)
        except BodyError as exc:
            raise BodyError(f"argument '{name}': {exc}") from None
        disposition += f'; filename="{_quoted(filename or name)}"'
        content_type = content_type or (encoding.content_type if encoding else None) or "application/octet-stream"
    elif isinstance(value, str):
        content, content_type = value.encode(), (encoding.content_type if encoding else None) or "text/plain"
    elif isinstance(value, dict | list):
        content, content_type = orjson.dumps(value), (encoding.content_type if encoding else None) or "application/json"
    else:
        content, content_type = _text(value).encode(), "text/plain"
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {content_type}\r\n\r\n"
    if "\r" in content_type or "\n" in content_type:
        raise BodyError(f"part {name!r}: a content type must be one line")
    return head.encode("utf-8") + content + b"\r\n"


def _quoted(text: str) -> str:
    # WHATWG HTML "multipart/form-data encoding algorithm": escape quotes and line breaks in names.
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")
