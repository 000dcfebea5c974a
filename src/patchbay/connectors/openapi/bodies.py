"""Request bodies in the media type the operation takes (OpenAPI 3.1 §4.8.13 Request Body, §4.8.15 Encoding).

JSON (``application/json`` and any ``+json``) with orjson; ``application/x-www-form-urlencoded`` with each
property's Encoding style (form by default, deepObject, the delimited styles, or a content type such as JSON);
``multipart/form-data`` with one part per property and one per item of an array property (§4.8.15: the Encoding
applies to each item), a file given as its content or as ``{"content": ..., "filename": ..., "contentType": ...}``;
``text/*`` as UTF-8; anything binary (``application/octet-stream``, or a schema that says so) from base64 text.

A file's content (3.0 ``format: binary``; 3.1 ``contentMediaType`` without ``contentEncoding``, §4.8.14.3) is the
text itself when its media type is textual (``text/*``, JSON, XML, YAML ...) and base64 otherwise: a tool's
arguments are JSON, which carries text but not raw bytes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson

from patchbay.connectors.openapi.models import Body, Encoding

_DEFAULT_ENCODING = Encoding()
_BIG_INTEGER = "Integer exceeds 64-bit range"  # orjson's message for an int it cannot write
MAX_REF_DEPTH = 32
# Media types whose content is text a JSON string can carry as it is (RFC 6838 structured syntax suffixes too).
_TEXTUAL = re.compile(
    r"^(text/.+|application/(.+[+/])?(json|xml|yaml|x-yaml|javascript|ecmascript|x-www-form-urlencoded|csv"
    r"|graphql|x-ndjson|jsonl|sql)|.+/.+\+(json|xml|yaml))$"
)


class BodyError(ValueError):
    """A body value cannot be sent as the media type says (``request.ArgumentError`` wraps it).

    ``field`` is the body property the problem is in (the API's name for it), or None for the whole body.
    """

    def __init__(self, problem: str, field: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.field = field


def is_textual(media: str) -> bool:
    """Whether content of ``media`` (an essence: no parameters, lower case) is text, not raw bytes."""
    return _TEXTUAL.match(media) is not None


def dump_json(value: Any) -> bytes:
    """``value`` as JSON bytes; integers beyond 64 bits written exactly (RFC 8259 §6 sets no range).

    Raises:
        BodyError: it cannot be written as JSON (text with a lone surrogate, a nesting deeper than 254).
    """
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        if _BIG_INTEGER in str(exc):
            return _big_json(value)
        raise BodyError(f"cannot be written as JSON ({exc})") from None


def _big_json(value: Any) -> bytes:
    # orjson stops at 64 bits; the standard library writes any integer, and only this rare value pays for it.
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (ValueError, RecursionError, UnicodeEncodeError) as exc:
        raise BodyError(f"cannot be written as JSON ({type(exc).__name__})") from None


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
    file_media = file_media_type(schema)
    if media == "application/octet-stream" or (file_media is not None and not is_textual(file_media)):
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
    """A schema that describes a file's content: ``format: binary`` (3.0) or ``contentMediaType`` without an
    encoding (3.1 §4.8.14.3, "Working with binary data")."""
    return file_media_type(schema) is not None


def file_media_type(schema: dict[str, Any]) -> str | None:
    """The media type of the file ``schema`` describes (``application/octet-stream`` when it names none), or None
    when it describes no file (a plain string, or content already encoded: ``contentEncoding``)."""
    if "contentEncoding" in schema or schema.get("type") not in (None, "string"):
        return None
    media = schema.get("contentMediaType")
    if isinstance(media, str) and media.strip():
        return media.split(";", 1)[0].strip().lower()
    return "application/octet-stream" if schema.get("format") == "binary" else None


# -- JSON, text, binary -------------------------------------------------------------------------------------------


def _write_json(value: Any, headers: dict[str, str]) -> bytes:
    try:
        return dump_json(value)
    except BodyError as exc:
        if isinstance(value, dict):  # name the property at fault (only now: the call is refused anyway)
            exc.field = next((str(k) for k, v in value.items() if not _writable(v)), None)
        raise


def _writable(value: Any) -> bool:
    try:
        dump_json(value)
    except BodyError:
        return False
    return True


def _write_text(value: Any, headers: dict[str, str]) -> bytes:
    return _utf8(value) if isinstance(value, str) else dump_json(value)


def _write_binary(value: Any, headers: dict[str, str]) -> bytes:
    content, _, content_type = _file(value, binary=True)
    if content_type:
        headers["Content-Type"] = _one_line(content_type)
    return content


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise BodyError("is not valid Unicode text (it holds a lone surrogate)") from None


def _file(value: Any, *, binary: bool) -> tuple[bytes, str, str]:
    """(bytes, filename, content type) of a file argument: its content (base64 when ``binary``, else the text
    itself), or ``{"content": ..., "filename": ..., "contentType": ...}``."""
    filename = content_type = ""
    if isinstance(value, dict):
        filename = value.get("filename") or ""
        content_type = value.get("contentType") or ""
        if not isinstance(filename, str) or not isinstance(content_type, str):
            raise BodyError("a file's filename and contentType must be text")
        value = value.get("content")
    shape = "base64 text" if binary else "text"
    if not isinstance(value, str):
        raise BodyError(f'a file must be {shape}, or {{"content": {shape}, "filename": ..., "contentType": ...}}')
    if not binary:
        return _utf8(value), filename, content_type
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
        pieces = []
        for key, item in value.items():
            name = str(key)
            try:
                piece = _form_field(name, item, encodings.get(name, _DEFAULT_ENCODING))
            except BodyError as exc:
                raise BodyError(exc.problem, name) from None
            except UnicodeEncodeError:  # quote() of a lone surrogate
                raise BodyError("is not valid Unicode text (it holds a lone surrogate)", name) from None
            if piece:
                pieces.append(piece)
        return "&".join(pieces).encode("ascii")

    return write


def _form_field(name: str, value: Any, encoding: Encoding) -> str:
    """One property as a query-style field (OpenAPI 3.1.1 Appendix E): its Encoding's style, or JSON text when
    the Encoding names a JSON content type."""
    if value is None:
        return ""
    encode = _reserved if encoding.allow_reserved else _strict
    key = _strict(name)
    if encoding.content_type is not None and "json" in encoding.content_type:
        return f"{key}={_strict(dump_json(value).decode())}"
    problem = undefined_style(encoding.style, encoding.explode, shape_of(value))
    if problem is not None:
        raise BodyError(problem)
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
    return dump_json(value).decode()


def _strict(text: str) -> str:
    return quote(text, safe="")


def _reserved(text: str) -> str:
    return quote(text, safe="!$'()*,;:/?@")


# -- multipart/form-data (RFC 7578) ------------------------------------------------------------------------------

_FIELD, _TEXT_FILE, _BINARY_FILE = range(3)


def _multipart_writer(
    body: Body, schema: dict[str, Any], defs: dict[str, Any]
) -> Callable[[Any, dict[str, str]], bytes]:
    properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
    kinds = {name: _part_kind(resolve(sub, defs), defs) for name, sub in (properties or {}).items()}
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
            kind = kinds.get(name, (_FIELD, ""))
            encoding = encodings.get(name)
            try:
                if encoding is not None and encoding.styled and kind[0] == _FIELD:
                    parts.extend(_text_part(boundary, key, text) for key, text in styled_pairs(name, item, encoding))
                    continue
                # RFC 7578 §4.3 and OpenAPI 3.1.1 §4.8.15: an array is one part per item, all of the same name.
                for one in item if isinstance(item, list) else (item,):
                    parts.append(_part(boundary, name, one, kind, encoding))
            except BodyError as exc:
                raise BodyError(exc.problem, name) from None
        parts.append(f"--{boundary}--\r\n".encode("ascii"))
        return b"".join(parts)

    return write


def _part_kind(schema: dict[str, Any], defs: dict[str, Any]) -> tuple[int, str]:
    """What a property's parts are (a plain field, a text file, a binary file) and the file's media type."""
    if schema.get("type") == "array":
        schema = resolve(schema.get("items"), defs)
    media = file_media_type(schema)
    if media is None:
        return _FIELD, ""
    return (_TEXT_FILE if is_textual(media) else _BINARY_FILE), media


def _part(boundary: str, name: str, value: Any, kind: tuple[int, str], encoding: Encoding | None) -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    declared = _concrete(encoding.content_type) if encoding and encoding.content_type else ""
    if kind[0] != _FIELD:
        content, filename, given = _file(value, binary=kind[0] == _BINARY_FILE)
        disposition += f'; filename="{_quoted(filename or name)}"'
        content_type = given or declared or _concrete(kind[1]) or "application/octet-stream"
    elif isinstance(value, str):
        content, content_type = _utf8(value), declared or "text/plain"
    elif isinstance(value, dict | list):
        # §4.8.15 Encoding contentType default: application/json for an object (and an array within an array).
        content, content_type = dump_json(value), declared or "application/json"
    else:
        content, content_type = _text(value).encode(), declared or "text/plain"
    head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\nContent-Type: {_one_line(content_type)}\r\n\r\n"
    return head.encode("utf-8", "replace") + content + b"\r\n"


def _text_part(boundary: str, name: str, text: str) -> bytes:
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="{_quoted(name)}"\r\nContent-Type: text/plain\r\n\r\n'
    return head.encode("utf-8", "replace") + _utf8(text) + b"\r\n"


# -- style on multipart/form-data parts (OpenAPI 3.2 §4.8.15.1, Appendix C) ----------------------------------------

_JOINERS = {"form": ",", "spaceDelimited": " ", "pipeDelimited": "|"}


def undefined_style(style: str, explode: bool, shape: str) -> str | None:
    """Why ``style`` (with ``explode``) cannot carry a value of ``shape`` ("primitive", "array", "object"), or None.

    The style table (OpenAPI 3.1.1 §4.8.12.4.1, Style Examples) defines spaceDelimited and pipeDelimited only for
    non-exploded arrays and objects, and deepObject only for objects; any other combination has no serialisation
    a server could read. The same table serves query parameters and form or multipart properties.
    """
    if style == "deepObject" and shape != "object":
        return f"style deepObject is defined only for objects, not for {shape} values"
    if style in ("spaceDelimited", "pipeDelimited"):
        if shape == "primitive":
            return f"style {style} is defined only for arrays and objects, not for single values"
        if explode:
            return f"style {style} with explode: true is undefined"
    return None


def shape_of(value: Any) -> str:
    return "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "primitive"


def schema_shape(schema: Any, defs: dict[str, Any]) -> str | None:
    """What every value of ``schema`` is ("primitive", "array", "object"), or None when it may be several."""
    schema = resolve(schema, defs)
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind) if isinstance(kind, list) else set()
    kinds.discard("null")  # a null value is left out, whatever the style
    if not kinds:
        return "object" if "properties" in schema else None
    shapes = {"array" if k == "array" else "object" if k == "object" else "primitive" for k in kinds}
    return shapes.pop() if len(shapes) == 1 else None


def unsendable_properties(body: Body, defs: dict[str, Any]) -> dict[str, str]:
    """The form or multipart properties whose Encoding style is undefined for their schema, with the reason."""
    schema = resolve(body.schema, defs)
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    found: dict[str, str] = {}
    for name, encoding in body.encoding.items():
        shape = schema_shape(properties.get(name), defs) if name in properties else None
        problem = undefined_style(encoding.style, encoding.explode, shape) if encoding.styled and shape else None
        if problem is not None:
            found[name] = problem
    return found


def styled_pairs(name: str, value: Any, encoding: Encoding) -> list[tuple[str, str]]:
    """One multipart property in its style as (part name, text) pairs: the query string's names and values, one
    part each, without percent-encoding (OpenAPI 3.2 Appendix C: "the ?, =, and & characters are not used, and URI
    percent encoding is not applied").

    Raises:
        BodyError: the style is undefined for the value, or a joined item holds the character that separates
            items (with no percent-encoding the API could not tell them apart).
    """
    shape = shape_of(value)
    problem = undefined_style(encoding.style, encoding.explode, shape)
    if problem is not None:
        raise BodyError(problem)
    if shape == "primitive":
        return [(name, _text(value))]
    if not value:
        return []  # an empty array or object is undefined (RFC 6570 §2.3): nothing is sent
    if shape == "object" and encoding.style == "deepObject":
        return [(f"{name}[{key}]", _text(item)) for key, item in value.items()]
    if shape == "array":
        pieces = [_text(item) for item in value]
        if encoding.explode:  # form only: the delimited styles were refused above
            return [(name, piece) for piece in pieces]
    else:
        pairs = [(str(key), _text(item)) for key, item in value.items()]
        if encoding.explode:
            return pairs
        pieces = [piece for pair in pairs for piece in pair]
    joiner = _JOINERS.get(encoding.style, ",")
    if any(joiner in piece for piece in pieces):
        raise BodyError(f"an item holds {joiner!r}, which style {encoding.style} uses to separate items")
    return [(name, joiner.join(pieces))]


def _concrete(content_type: str) -> str:
    """One media type to label a part with: the first of an Encoding's comma-separated list that has no wildcard
    (``image/png, image/jpeg`` → ``image/png``; ``image/*`` → "")."""
    for candidate in content_type.split(","):
        candidate = candidate.strip()
        if candidate and "*" not in candidate:
            return candidate
    return ""


def _one_line(content_type: str) -> str:
    if "\r" in content_type or "\n" in content_type:
        raise BodyError("a content type must be one line")
    return content_type


def _quoted(text: str) -> str:
    # WHATWG HTML "multipart/form-data encoding algorithm": escape quotes and line breaks in names.
    return text.replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def required_properties(schema: Any, defs: dict[str, Any], depth: int = 0) -> set[str]:
    """The property names an object body schema requires, its ``allOf`` members' included."""
    schema = resolve(schema, defs)
    required = schema.get("required")
    names = {name for name in required if isinstance(name, str)} if isinstance(required, list) else set()
    members = schema.get("allOf")
    if isinstance(members, list) and depth < MAX_REF_DEPTH:
        for member in members:
            names |= required_properties(member, defs, depth + 1)
    return names
