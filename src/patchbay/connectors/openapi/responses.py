"""The API's answer as a tool result: what the model reads, within the tool's size cap, and errors it can act on.

A JSON object becomes ``structuredContent`` (when the tool publishes an ``outputSchema`` and the object matches it)
plus the same JSON as text; other JSON, ``text/*`` and other textual types become text; binary (images included)
becomes an embedded resource (base64 ``blob``) named by the request's URL, as the issue's "binary as a resource"
asks and as every client can keep or show it. ``fields`` (dotted paths, through arrays) project a JSON answer
before the cap. An answer over the cap is cut where it can be cut cleanly (items of its main array), else at the
byte limit, with a note saying how much was cut and how to ask for less. A status other than 2xx is an
``isError`` result with the API's own message (RFC 9457 problem details understood) and what to do about it
(MCP 2025-11-25 tools: errors).
"""

from __future__ import annotations

import base64
import email.utils
import http
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import orjson

from patchbay.connectors.openapi.bodies import is_textual
from patchbay.connectors.openapi.checks import Check, compile_accept
from patchbay.definitions import ToolResult

log = logging.getLogger("patchbay.connectors.openapi")

MESSAGE_CHARS = 500  # of an API's error message, in the tool error
_SPACE = re.compile(r"\s+")
_MISSING: Any = object()


def essence(content_type: str) -> str:
    """The media type without parameters, lower case (RFC 9110 §8.3.1)."""
    return content_type.split(";", 1)[0].strip().lower()


def is_json(media: str) -> bool:
    return media == "application/json" or media.endswith("+json")


def retry_after(headers: dict[str, str], now: float | None = None) -> float | None:
    """Seconds RFC 9110 §10.2.3 ``Retry-After`` asks to wait (delay-seconds or an HTTP-date), or None."""
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


@dataclass(slots=True)
class Shaper:
    """How one tool's answers are shaped; made once per tool at open."""

    label: str  # the connector's name, for log lines
    tool: str
    max_bytes: int
    output_schema: dict[str, Any] | None = None
    fields: tuple[str, ...] | None = None
    strict: bool = False
    paging: tuple[str, ...] = ()  # the tool's arguments that ask for fewer items (limit, per_page, ...)
    secrets: tuple[str, ...] = ()
    origin: str = ""  # "https://api.example.com": with a request's target, the URI of a binary answer
    _tree: dict[str, Any] | None = field(default=None, init=False)
    _accept: Check | None = field(default=None, init=False)
    _compiled: bool = field(default=False, init=False)
    _validator: Any = field(default=None, init=False)
    _warned: bool = field(default=False, init=False)

    def __post_init__(self) -> None:
        if self.fields:
            self._tree = _field_tree(self.fields)

    def result(
        self, status: int, headers: dict[str, str], body: bytes, *, method: str, path: str, target: str = ""
    ) -> ToolResult:
        """The tool result for an answer ``status`` with ``headers`` (lower-case names) and ``body``; ``target``
        is the request's path and query as sent before credentials were added (it names a binary answer)."""
        if 200 <= status < 300:
            return self.success(status, headers, body, target=target or path)
        return self.failure(status, headers, body, method=method, path=path)

    # -- 2xx -------------------------------------------------------------------------------------------------------

    def success(self, status: int, headers: dict[str, str], body: bytes, *, target: str = "") -> ToolResult:
        media = essence(headers.get("content-type", ""))
        if not body:
            return ToolResult(
                [{"type": "text", "text": f"The API answered {status} {_phrase(status)}, with no content."}]
            )
        if is_json(media) or (not media and body[:1] in (b"{", b"[")):
            try:
                value = orjson.loads(body)
            except orjson.JSONDecodeError:
                pass
            else:
                return self._json(value, len(body))
        if not media or is_textual(media):
            return self._text(body.decode("utf-8", "replace"), len(body))
        return self._binary(media, body, target)

    def _json(self, value: Any, size: int) -> ToolResult:
        if self._tree is not None:
            value = _project(value, self._tree)
        text = orjson.dumps(value)
        note = ""
        if len(text) > self.max_bytes:
            value, text, note = self._fit(value, text, size)
        content = [{"type": "text", "text": text.decode("utf-8", "replace")}]
        if note:
            content.append({"type": "text", "text": note})
        if self.output_schema is None or not isinstance(value, dict):
            return ToolResult(content)
        problem = self._mismatch(value)
        if problem is None:
            return ToolResult(content, structured=value)
        if self.strict:
            return ToolResult.error(f"The API's answer does not match the tool's output schema: {problem}")
        return ToolResult(content)

    def _mismatch(self, value: Any) -> str | None:
        """None when ``value`` matches the outputSchema, else where and how it first differs (checks.py: the
        compiled check accepts, ``jsonschema`` finds the mismatch)."""
        if not self._compiled:
            self._accept = compile_accept(self.output_schema or {})
            self._compiled = True
        if self._accept is not None and self._accept(value):
            return None
        if self._validator is None:
            self._validator = jsonschema.Draft202012Validator(self.output_schema)
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        problem = f"at {where}: {error.message[:200]}"
        if not self._warned:
            self._warned = True  # once per tool: an API that disagrees with its spec does so on every call
            log.warning(
                "connector '%s': tool %s: an answer does not match its outputSchema (%s); returned as text only",
                self.label,
                self.tool,
                problem,
            )
        return problem

    def _fit(self, value: Any, text: bytes, size: int) -> tuple[Any, bytes, str]:
        """Cut ``value`` to the cap: items of its main array when it has one, else the text itself."""
        budget = max(self.max_bytes - 600, self.max_bytes // 2)  # room for the note
        items, rebuild = _main_array(value)
        if items:
            keep = _fitting(items, rebuild, budget)
            if keep:
                cut = rebuild(items[:keep])
                shown = orjson.dumps(cut)
                what = f"{keep} of {len(items)} items"
                return cut, shown, self._note(size, len(shown), what)
        shown = _cut_utf8(text, budget)
        return _MISSING, shown, self._note(size, len(shown), "the beginning of the text")

    def _text(self, text: str, size: int) -> ToolResult:
        data = text.encode()
        if len(data) <= self.max_bytes:
            return ToolResult([{"type": "text", "text": text}])
        shown = _cut_utf8(data, max(self.max_bytes - 600, self.max_bytes // 2))
        note = self._note(size, len(shown), "the beginning")
        return ToolResult([{"type": "text", "text": shown.decode("utf-8", "replace")}, {"type": "text", "text": note}])

    def _binary(self, media: str, body: bytes, target: str) -> ToolResult:
        if (len(body) + 2) // 3 * 4 > self.max_bytes:  # the size of its base64 (RFC 4648 §4)
            text = (
                f"The API answered {len(body):,} bytes of {media}, more than this tool's limit of "
                f"{self.max_bytes:,} bytes, so the content is not included. {self._less()}"
            )
            return ToolResult([{"type": "text", "text": text}])
        data = base64.b64encode(body).decode("ascii")
        resource = {"uri": self._uri(target), "mimeType": media, "blob": data}
        return ToolResult([{"type": "resource", "resource": resource}])

    def _uri(self, target: str) -> str:
        """The answer's URI: the URL asked for, which names it as long as the API does; credentials the API takes
        in the query are added after ``target`` is made, and any configured secret is scrubbed all the same."""
        if not self.origin or not target.startswith("/"):
            return f"openapi://{self.label}/{self.tool}"
        return self.scrub(self.origin + target.partition("#")[0])

    def _note(self, size: int, shown: int, what: str) -> str:
        return (
            f"[Cut: the API's answer is {size:,} bytes; shown are {what} ({shown:,} bytes), as this tool's answers "
            f"are limited to {self.max_bytes:,} bytes. {self._less()}]"
        )

    def _less(self) -> str:
        if self.paging:
            names = ", ".join(f"'{name}'" for name in self.paging)
            return f"To see the rest, ask for fewer items at a time with {names} (and page through them)."
        return "To see the rest, narrow the request with its arguments, or ask the operator to set `fields` for it."

    # -- errors ----------------------------------------------------------------------------------------------------

    def failure(self, status: int, headers: dict[str, str], body: bytes, *, method: str, path: str) -> ToolResult:
        """An ``isError`` result: the status, the API's own message, and what to do."""
        said = self.scrub(api_message(headers, body))
        start = f"The API answered {status} {_phrase(status)}"
        text = f"{start}: {said}" if said else start
        wait = retry_after(headers)
        if status == 401:
            text += (
                ". The credentials Patchbay sent were refused: if you linked an account, link it again; otherwise "
                "the operator should check the connector's auth settings."
            )
        elif status == 403:
            text += (
                ". The account Patchbay calls with is not allowed to do this: ask for access to it (a role or scope)."
            )
        elif status == 404:
            text += f". Not found: {method} {path}. Check the identifiers in the arguments."
        elif status in (429, 503):
            when = f"after {wait:g} seconds" if wait is not None else "in a little while"
            text += f". Retry {when}."
        elif status >= 500:
            text += ". The API failed; this is retryable: try again later."
        elif 300 <= status < 400:
            text += ". Patchbay does not follow redirects; the connector's base_url may need to change."
        else:
            text += "."
        return ToolResult.error(text)

    def scrub(self, text: str) -> str:
        """``text`` without any configured secret an API may have echoed."""
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


def api_message(headers: dict[str, str], body: bytes) -> str:
    """The API's own error message: RFC 9457 problem details (title, detail, errors), a JSON ``message``,
    ``error`` or ``error_description``, else the start of the text (an HTML page is not quoted)."""
    if not body:
        return ""
    media = essence(headers.get("content-type", ""))
    if media == "text/html" or body.lstrip()[:1] == b"<":
        return ""
    if is_json(media) or body.lstrip()[:1] in (b"{", b"["):
        try:
            value = orjson.loads(body)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return _clip(_from_json(value))
    return _clip(body[: MESSAGE_CHARS * 4].decode("utf-8", "replace"))


def _from_json(value: dict[str, Any]) -> str:
    parts: list[str] = []
    for key in ("title", "detail", "message", "error_description", "error", "description"):
        item = value.get(key)
        if isinstance(item, dict):
            item = item.get("message") or item.get("detail")
        if isinstance(item, str) and item.strip() and item.strip() not in parts:
            parts.append(item.strip())
    errors = value.get("errors")
    if isinstance(errors, list):
        parts.extend(_error_item(item) for item in errors[:5] if _error_item(item))
    elif isinstance(errors, dict):  # {"field": ["problem", ...]} (Rails, Laravel and others)
        parts.extend(
            f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in list(errors.items())[:5]
        )
    return "; ".join(parts)


def _error_item(item: Any) -> str:
    if isinstance(item, str):
        return item
    if not isinstance(item, dict):
        return ""
    said = item.get("detail") or item.get("message") or item.get("title") or ""
    where = item.get("pointer") or item.get("field") or item.get("name") or item.get("path") or ""
    return f"{where}: {said}" if where and said else str(said)


def _clip(text: str) -> str:
    text = _SPACE.sub(" ", text).strip()
    return text if len(text) <= MESSAGE_CHARS else text[: MESSAGE_CHARS - 1] + "…"


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


# -- projection and cutting -----------------------------------------------------------------------------------------


def _field_tree(paths: tuple[str, ...]) -> dict[str, Any]:
    """``("id", "owner.login")`` → ``{"id": {}, "owner": {"login": {}}}``; an empty dict keeps the whole value."""
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            if part in node and not node[part]:
                break  # a shorter path already keeps all of it
            node = node.setdefault(part, {})
        else:
            node.clear()
    return tree


def _project(value: Any, tree: dict[str, Any]) -> Any:
    """Keep only the paths in ``tree``; arrays are projected item by item (``items.title``)."""
    if not tree:
        return value
    if isinstance(value, list):
        return [_project(item, tree) for item in value]
    if isinstance(value, dict):
        return {key: _project(value[key], sub) for key, sub in tree.items() if key in value}
    return value


def _main_array(value: Any) -> tuple[list[Any], Any]:
    """The list to cut (the value itself, or its largest array property) and how to put a shorter one back."""
    if isinstance(value, list):
        return value, lambda items: items
    if isinstance(value, dict):
        arrays = [(len(orjson.dumps(v)), k) for k, v in value.items() if isinstance(v, list) and v]
        if arrays:
            key = max(arrays)[1]
            return value[key], lambda items: {**value, key: items}
    return [], None


def _fitting(items: list[Any], rebuild: Any, budget: int) -> int:
    """How many leading items fit ``budget`` bytes (binary search over the serialised size)."""
    low, high = 0, len(items)
    while low < high:
        middle = (low + high + 1) // 2
        if len(orjson.dumps(rebuild(items[:middle]))) <= budget:
            low = middle
        else:
            high = middle - 1
    return low


def _cut_utf8(data: bytes, limit: int) -> bytes:
    cut = data[:limit]
    return cut.decode("utf-8", "ignore").encode()  # never end inside a character
