"""One tool call's HTTP request, built exactly as the operation describes it (OpenAPI 3.1 §4.8.12.4).

Each :class:`Plan` is compiled once (:func:`compile_request`) into per-argument serialisers, so a call only walks
its arguments: path parameters in the styles simple, label and matrix; query parameters in form, spaceDelimited,
pipeDelimited and deepObject (``allowReserved`` honoured); headers in simple; cookies in form; parameters described
by ``content`` as JSON text. Values are percent-encoded per RFC 3986; a path value never adds a ``/`` or a dot
segment. The body goes as JSON, form-urlencoded, multipart/form-data, text or binary (:mod:`.bodies`).

An empty array or object is undefined (RFC 6570 §2.3, which the styles follow): the parameter is left out, and
refused when it is required; so is an empty path segment (it would change the path) and an empty header value.
A value that cannot be written (an integer beyond 64 bits in JSON) is refused naming its argument.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from patchbay.connectors.openapi.bodies import (
    BodyError,
    BodyWriter,
    body_writer,
    dump_json,
    required_properties,
    shape_of,
    undefined_style,
)
from patchbay.connectors.openapi.models import Parameter, Plan

# RFC 3986 §2.2 reserved characters that ``allowReserved`` lets through; "[", "]" and "#" cannot appear in a query
# and "&", "=", "+" would change how form data is read (OpenAPI 3.1.1 Appendix E), so they stay encoded.
_RESERVED_OK = "!$'()*,;:/?@%"
# RFC 9110 §7.6.1 and §8.6: headers Patchbay sets itself; OpenAPI 3 §4.8.12.1 says Accept, Content-Type and
# Authorization header parameters are ignored. An argument can never set any of them.
_OWN_HEADERS = frozenset(
    {"accept", "content-type", "authorization", "host", "content-length", "transfer-encoding", "connection", "cookie"}
)
_LONE_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_PCHAR = "/%!$&'()*+,;=:@-._~"  # RFC 3986 §3.3: what a path template's literal text may hold unencoded
_PATH, _QUERY, _HEADER, _COOKIE, _PROPERTY, _BODY, _IGNORED = range(7)


class ArgumentError(ValueError):
    """An argument is missing, unknown or cannot be sent as the operation says; the message names it."""


class _Unsendable(ValueError):
    """A value JSON cannot carry; ``build`` names the argument it came from."""


@dataclass(slots=True)
class HttpRequest:
    """What goes to the API: ``target`` is the path and query (percent-encoded, starting with the base path)."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes = b""


def build_request(
    plan: Plan, arguments: dict[str, Any], *, base_path: str = "", defs: dict[str, Any] | None = None
) -> HttpRequest:
    """The request for one call of ``plan``'s operation (compiles the plan; callers on the hot path keep
    :func:`compile_request`'s result).

    Raises:
        ArgumentError: a required argument is missing, an argument is unknown, or a value cannot be sent.
    """
    return compile_request(plan, base_path=base_path, defs=defs).build(arguments)


def compile_request(plan: Plan, *, base_path: str = "", defs: dict[str, Any] | None = None) -> RequestBuilder:
    """A reusable builder for ``plan``; ``defs`` resolves ``$ref``s of the body schema (file parts)."""
    return RequestBuilder(plan, base_path.rstrip("/"), defs or {})


Step = tuple[int, str, Callable[[str, Any], str]]


class RequestBuilder:
    """Builds requests for one operation: per argument, where it goes and a serialiser made for its style."""

    __slots__ = (
        "_body",
        "_body_arg",
        "_body_args",
        "_body_required",
        "_filled",
        "_headers",
        "_path",
        "_required",
        "_steps",
        "method",
        "plan",
    )

    def __init__(self, plan: Plan, base_path: str, defs: dict[str, Any]) -> None:
        operation = plan.operation
        self.plan = plan
        self.method = operation.method
        params: dict[tuple[str, str], Parameter] = {(p.name, p.location): p for p in operation.parameters}
        self._steps: dict[str, Step] = {}
        self._body_arg = "body"
        self._body_args: dict[str, str] = {}  # body property (the API's name) -> argument
        required: list[tuple[str, str]] = []
        for arg, target in plan.args.items():
            if target.location in ("body", "body_property"):
                kind = _BODY if target.location == "body" else _PROPERTY
                self._steps[arg] = (kind, target.name, _unchanged)
                if kind == _PROPERTY:
                    self._body_args[target.name] = arg
                else:
                    self._body_arg = arg
                if kind == _BODY and operation.body is not None and operation.body.required:
                    required.append((arg, "the request body"))
                continue
            param = params.get((target.name, target.location))
            if param is None:
                raise ValueError(f"{operation.key}: argument {arg!r} names no {target.location} parameter")
            self._steps[arg] = _step(param)
            if param.required or param.location == "path":
                required.append((arg, f"{param.location} parameter {param.name}"))
        self._required = tuple(required)
        self._filled = frozenset(arg for arg, _ in required)  # arguments whose empty value cannot be left out
        # RFC 3986 §3.5: a fragment is never sent; spec authors write one to put several operations on one path.
        self._path = _path_parts(base_path + operation.path.partition("#")[0])
        self._headers = {"Accept": _accept(operation.success.media_type if operation.success else None)}
        self._body: BodyWriter | None = body_writer(operation.body, defs) if operation.body is not None else None
        wanted = required_properties(operation.body.schema, defs) if operation.body is not None else set()
        self._body_required = tuple(arg for name, arg in self._body_args.items() if name in wanted)

    def build(self, arguments: dict[str, Any]) -> HttpRequest:
        """Raises ArgumentError: as :func:`build_request`."""
        for arg, what in self._required:
            if arguments.get(arg) is None:
                raise ArgumentError(f"missing required argument '{arg}' ({what})")
        values: dict[str, str] = {}
        query: list[str] = []
        cookies: list[str] = []
        headers = dict(self._headers)
        properties: dict[str, Any] | None = None
        whole: Any = None
        steps = self._steps
        arg = ""
        try:
            for arg, value in arguments.items():
                step = steps.get(arg)
                if step is None:
                    raise ArgumentError(f"unknown argument '{arg}'; this operation takes {_names(steps)}")
                if value is None:
                    continue  # null is "not given" for an optional argument
                kind, name, write = step
                if kind >= _PROPERTY:
                    if kind == _PROPERTY:
                        if properties is None:
                            properties = {}
                        properties[name] = value
                    elif kind == _BODY:
                        whole = value
                    continue  # _IGNORED: a header Patchbay sets itself
                piece = write(arg, value)
                if not piece:
                    if arg in self._filled:
                        raise ArgumentError(f"argument '{arg}' must not be empty")
                    continue  # an undefined (empty) optional value, or an empty header, is left out
                if kind == _QUERY:
                    query.append(piece)
                elif kind == _PATH:
                    values[name] = _segment(arg, piece)
                elif kind == _HEADER:
                    headers[name] = piece
                elif kind == _COOKIE:
                    cookies.append(piece)
        except (_Unsendable, UnicodeEncodeError) as exc:
            raise ArgumentError(f"argument '{arg}': {_problem(exc)}") from None
        path = _join_path(self._path, values)
        if query:
            path = f"{path}?{'&'.join(query)}"
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        return self._with_body(path, headers, properties, whole, arguments)

    def _with_body(
        self,
        path: str,
        headers: dict[str, str],
        properties: dict[str, Any] | None,
        whole: Any,
        arguments: dict[str, Any],
    ) -> HttpRequest:
        """The request with its body: the body properties given (a flattened body), else the one body argument."""
        if self._body is None:
            return HttpRequest(self.method, path, headers)
        if self._body_required and (properties is not None or self._body.required):
            self._check_body_required(arguments)
        try:
            body = self._body.write(headers, whole if properties is None else properties)
        except BodyError as exc:
            # A field is a property of a flattened body, or inside the one body argument.
            where = (
                self._body_arg if exc.field is None or properties is None else self._body_args.get(exc.field, exc.field)
            )
            raise ArgumentError(f"argument '{where}': {exc.problem}") from None
        return HttpRequest(self.method, path, headers, body)

    def _check_body_required(self, arguments: dict[str, Any]) -> None:
        missing = [arg for arg in self._body_required if arguments.get(arg) is None]
        if not missing:
            return
        names = ", ".join(f"'{arg}'" for arg in missing)
        if self._body is not None and self._body.required:
            raise ArgumentError(f"missing required argument {names} (a required property of the request body)")
        raise ArgumentError(
            f"missing argument {names}: the request body is optional, but once any of its properties is given, "
            "the ones it requires must be given too"
        )


def _names(steps: dict[str, Step]) -> str:
    return ", ".join(sorted(steps)) or "no arguments"


def _problem(exc: ValueError) -> str:
    if isinstance(exc, UnicodeEncodeError):
        return "is not valid Unicode text (it holds a lone surrogate)"
    return str(exc)


def _path_parts(path: str) -> list[str]:
    """The path template as pieces: literal text at even indexes, a parameter's name at odd ones."""
    pieces: list[str] = []
    rest = path
    while "{" in rest:
        literal, _, tail = rest.partition("{")
        name, _, rest = tail.partition("}")
        pieces += [quote(literal, safe=_PCHAR), name]
    pieces.append(quote(rest, safe=_PCHAR))
    if not pieces[0].startswith("/"):
        pieces[0] = "/" + pieces[0]
    return pieces


def _join_path(pieces: list[str], values: dict[str, str]) -> str:
    if len(pieces) == 1:
        return pieces[0]
    try:
        return "".join(values[piece] if index & 1 else piece for index, piece in enumerate(pieces))
    except KeyError as exc:
        raise ArgumentError(f"the path needs parameter {exc.args[0]}, which no argument gives") from None


def _accept(media_type: str | None) -> str:
    if media_type is None or media_type == "application/json":
        return "application/json, */*;q=0.5"
    return f"{media_type}, application/json;q=0.9, */*;q=0.5"


def _unchanged(arg: str, value: Any) -> str:
    return ""


# -- parameter serialisers (OpenAPI 3.1 §4.8.12.4, the style examples table) ------------------------------------


def _step(param: Parameter) -> Step:
    location = param.location
    if location == "header" and param.name.lower() in _OWN_HEADERS:
        return (_IGNORED, param.name, _unchanged)
    kind = {"path": _PATH, "query": _QUERY, "header": _HEADER, "cookie": _COOKIE}[location]
    if location == "path":
        encode: Callable[[str], str] = _encode_label if param.style == "label" else _encode_path
    elif location == "header":
        encode = _header_value
    elif location == "query" and param.allow_reserved:
        encode = _encode_reserved
    else:
        encode = _encode
    return (kind, param.name, _serialiser(param, encode))


def _serialiser(param: Parameter, encode: Callable[[str], str]) -> Callable[[str, Any], str]:
    """The function that turns one value into its text in the request, made once per parameter."""
    name = param.name if param.location == "header" else _encode(param.name)
    style, explode, location = param.style, param.explode, param.location
    key_encode = _header_value if location == "header" else _encode
    if param.content_type is not None:
        prefix = f"{name}=" if location in ("query", "cookie") else ""
        as_json = "json" in param.content_type

        def content(arg: str, value: Any) -> str:
            text = value if isinstance(value, str) and not as_json else _json(value)
            return prefix + _checked(arg, encode, text)

        return content
    if location == "header" or (location == "path" and style not in ("label", "matrix")):
        style = "simple"
    elif location in ("query", "cookie") and style not in ("form", "spaceDelimited", "pipeDelimited", "deepObject"):
        style = "form"

    check = location == "query" and style != "form"  # form writes every shape; the others do not (bodies)

    def serialise(arg: str, value: Any) -> str:
        if check and (problem := undefined_style(style, explode, shape_of(value))) is not None:
            raise ArgumentError(f"argument '{arg}': {problem}")
        if isinstance(value, list):
            if not value:
                return ""  # undefined (RFC 6570 §2.3): no style writes anything for it
            return _array(name, [_checked(arg, encode, _scalar(v)) for v in value], style, explode)
        if isinstance(value, dict):
            if not value:
                return ""
            if style == "deepObject":
                return _deep(name, value, arg, encode)
            pairs = [(_checked(arg, key_encode, str(k)), _checked(arg, encode, _scalar(v))) for k, v in value.items()]
            return _object(name, pairs, style, explode)
        return _primitive(name, _checked(arg, encode, _scalar(value)), style)

    return serialise


def _primitive(name: str, text: str, style: str) -> str:
    if style == "simple":
        return text
    if style == "label":
        return "." + text
    if style == "matrix":
        return f";{name}={text}" if text else f";{name}"
    return f"{name}={text}"  # form, and the array/object-only styles given a single value


def _array(name: str, items: list[str], style: str, explode: bool) -> str:
    if style == "simple":
        return ",".join(items)
    if style == "label":
        return "." + ("." if explode else ",").join(items)
    if style == "matrix":
        return "".join(f";{name}={item}" for item in items) if explode else f";{name}=" + ",".join(items)
    if style == "spaceDelimited" and not explode:
        return f"{name}=" + "%20".join(items)
    if style == "pipeDelimited" and not explode:
        return f"{name}=" + "%7C".join(items)
    if explode:  # form (and the delimited styles, undefined when exploded: as form)
        return "&".join(f"{name}={item}" for item in items)
    return f"{name}=" + ",".join(items)


def _object(name: str, pairs: list[tuple[str, str]], style: str, explode: bool) -> str:
    flat = [part for pair in pairs for part in pair]
    if style == "simple":
        return ",".join(f"{k}={v}" for k, v in pairs) if explode else ",".join(flat)
    if style == "label":
        return "." + (".".join(f"{k}={v}" for k, v in pairs) if explode else ",".join(flat))
    if style == "matrix":
        return "".join(f";{k}={v}" for k, v in pairs) if explode else f";{name}=" + ",".join(flat)
    if style == "spaceDelimited" and not explode:
        return f"{name}=" + "%20".join(flat)
    if style == "pipeDelimited" and not explode:
        return f"{name}=" + "%7C".join(flat)
    if explode:
        return "&".join(f"{k}={v}" for k, v in pairs)
    return f"{name}=" + ",".join(flat)


def _deep(name: str, value: dict[str, Any], arg: str, encode: Callable[[str], str]) -> str:
    """deepObject: ``color%5BR%5D=100`` (3.1.1 table); nested objects nest brackets, arrays repeat the key."""
    pieces: list[str] = []
    for key, item in value.items():
        inner = f"{name}%5B{_encode(str(key))}%5D"
        if isinstance(item, dict):
            pieces.append(_deep(inner, item, arg, encode))
        elif isinstance(item, list):
            pieces.extend(f"{inner}={_checked(arg, encode, _scalar(v))}" for v in item)
        else:
            pieces.append(f"{inner}={_checked(arg, encode, _scalar(item))}")
    return "&".join(piece for piece in pieces if piece)


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if value is None:
        return ""
    return _json(value)  # numbers as JSON writes them; nested arrays and objects (no style defines them) as JSON


def _json(value: Any) -> str:
    try:
        return dump_json(value).decode()
    except BodyError as exc:
        raise _Unsendable(exc.problem) from None


def _checked(arg: str, encode: Callable[[str], str], text: str) -> str:
    try:
        return encode(text)
    except ValueError as exc:
        raise ArgumentError(f"argument '{arg}': {exc}") from None


def _encode(text: str) -> str:
    return quote(text, safe="")


def _encode_reserved(text: str) -> str:
    encoded = quote(text, safe=_RESERVED_OK)
    if "%" in text:  # a "%" is kept only as the start of a percent-encoded triple (RFC 6570 §3.2.3)
        encoded = _LONE_PERCENT.sub("%25", encoded)
    return encoded


def _encode_path(text: str) -> str:
    if text and not text.strip("."):
        return "%2E" * len(text)  # "." and ".." would be dot segments (RFC 3986 §5.2.4) and move the request
    return quote(text, safe="")


def _encode_label(text: str) -> str:
    # "." separates a label value's items (and an exploded object's pairs); RFC 6570 §3.2.5 leaves it unencoded, so
    # an item holding one would read as two. Percent-encoding an unreserved character keeps its meaning (RFC 3986
    # §2.3: equivalent once decoded), so a "." inside an item goes as %2E.
    return quote(text, safe="").replace(".", "%2E")


def _header_value(text: str) -> str:
    if not text.isprintable() or not _latin1(text):
        raise ValueError("a header value must be printable Latin-1 text without line breaks")
    return text


def _latin1(text: str) -> bool:
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return True


def _segment(arg: str, piece: str) -> str:
    if not piece.strip("."):  # label style: "" is ".", ["", ""] is ".."
        raise ArgumentError(
            f"argument '{arg}' would put '{piece}' in the path, a dot segment that moves the request elsewhere "
            "(RFC 3986 §5.2.4)"
        )
    return piece
