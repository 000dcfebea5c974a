"""The doctor's HTTP layer: one request → one ``Reply`` (status, headers, capped body, timings), never an exception.

Identical requests within a run are answered from a cache, so checking several client profiles does not repeat
registrations or tool calls; a request identical to one still in flight (a held event stream) waits for it.
Every read has a timeout and a size cap: metadata URLs come from the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import anyio
import httpx

__all__ = ["BODY_CAP", "Probe", "Reply", "SseEvent", "parse_sse"]

BODY_CAP = 4 * 1024 * 1024  # bytes kept of any response; larger bodies are cut and flagged
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class SseEvent:
    event: str
    data: str
    id: str | None
    at: float  # seconds after the request was sent


@dataclass(frozen=True)
class Reply:
    method: str
    url: str
    status: int  # 0 = no HTTP answer (see error)
    headers: httpx.Headers
    body: bytes
    elapsed: float  # seconds until the body was read (or the stream stopped)
    headers_at: float  # seconds until the status line and headers arrived
    error: str = ""
    truncated: bool = False
    events: tuple[SseEvent, ...] = ()
    comments_at: tuple[float, ...] = ()
    rpc: str = ""  # the JSON-RPC method of the request, when it was one

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def content_type(self) -> str:
        return str(self.headers.get("content-type", "")).split(";")[0].strip().lower()

    @property
    def is_html(self) -> bool:
        head = self.body[:200].lstrip().lower()
        return self.content_type in ("text/html", "application/xhtml+xml") or head.startswith((b"<!doctype", b"<html"))

    @property
    def is_sse(self) -> bool:
        return self.content_type == "text/event-stream"

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON (or the last JSON-RPC message of an event stream); None when it is not JSON."""
        if self.is_sse:
            messages = [event.data for event in self.events if event.data.strip()]
            for data in reversed(messages):
                try:
                    value = json.loads(data)
                except ValueError:
                    continue
                if isinstance(value, dict) and ("result" in value or "error" in value):
                    return value
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """``POST https://x/mcp → 406 text/plain: "Not Acceptable…"`` for messages."""
        if self.status == 0:
            return f"{self.method} {self.url} → no answer ({self.error})"
        snippet = " ".join(self.text[:160].split())
        kind = self.content_type or "no content type"
        return f"{self.method} {self.url} → {self.status} {kind}" + (f': "{snippet}"' if snippet else "")


def parse_sse(raw: str) -> tuple[list[tuple[str, str, str | None]], int]:
    """Events (event, data, id) and the number of comment lines in an event-stream text (WHATWG SSE §9.2.6)."""
    events: list[tuple[str, str, str | None]] = []
    comments = 0
    data: list[str] = []
    name, event_id = "message", None
    for line in raw.replace("\r\n", "\n").split("\n"):
        if line == "":
            if data:
                events.append((name, "\n".join(data), event_id))
            name, data, event_id = "message", [], None
        elif line.startswith(":"):
            comments += 1
        else:
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if key == "data":
                data.append(value)
            elif key == "event":
                name = value
            elif key == "id":
                event_id = value
    return events, comments


@dataclass
class Probe:
    """Sends requests for the checks. ``client`` is injectable (tests pass an ``httpx.ASGITransport`` client)."""

    client: httpx.AsyncClient
    timeout: float = DEFAULT_TIMEOUT
    cache: dict[tuple[Any, ...], Reply] = field(default_factory=dict)
    log: list[Reply] = field(default_factory=list)
    in_flight: dict[tuple[Any, ...], anyio.Event] = field(default_factory=dict)

    async def send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        body: bytes | None = None,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        time_limit: float | None = None,
        hold: float | None = None,
        cap: int = BODY_CAP,
        cached: bool = True,
    ) -> Reply:
        """Send one request without following redirects.

        ``hold`` reads an event stream for at most that many seconds and then stops (for long-lived streams).
        """
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode()
            hdrs.setdefault("content-type", "application/json")
        elif form is not None:
            body = urlencode(dict(form)).encode()
            hdrs.setdefault("content-type", "application/x-www-form-urlencoded")
        key = (method, url, tuple(sorted((k.lower(), v) for k, v in hdrs.items())), body, hold)
        limit = max(time_limit or self.timeout, (hold or 0) + 5)
        if not cached:
            return await self._logged(method, url, hdrs, body, limit, hold, cap, json_body)
        while key not in self.cache and key in self.in_flight:
            await self.in_flight[key].wait()  # the same request is under way (a held stream): share its reply
        if key in self.cache:
            return self.cache[key]
        self.in_flight[key] = anyio.Event()
        try:
            self.cache[key] = await self._logged(method, url, hdrs, body, limit, hold, cap, json_body)
        finally:
            self.in_flight.pop(key).set()
        return self.cache[key]

    async def _logged(
        self,
        method: str,
        url: str,
        hdrs: dict[str, str],
        body: bytes | None,
        limit: float,
        hold: float | None,
        cap: int,
        json_body: Any,
    ) -> Reply:
        reply = await self._send(method, url, hdrs, body, limit, hold, cap)
        if isinstance(json_body, dict) and isinstance(json_body.get("method"), str):
            reply = replace(reply, rpc=json_body["method"])
        self.log.append(reply)
        return reply

    async def _send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        time_limit: float,
        hold: float | None,
        cap: int,
    ) -> Reply:
        started = time.monotonic()
        empty = httpx.Headers()
        try:
            request = self.client.build_request(method, url, headers=headers, content=body, timeout=time_limit)
            response = await self.client.send(request, stream=True, follow_redirects=False)
        except httpx.HTTPError as exc:
            message = str(exc) or type(exc).__name__
            return Reply(method, url, 0, empty, b"", time.monotonic() - started, 0.0, error=message)
        headers_at = time.monotonic() - started
        try:
            return await self._read(method, url, response, started, headers_at, hold, cap)
        finally:
            await response.aclose()

    async def _read(
        self,
        method: str,
        url: str,
        response: httpx.Response,
        started: float,
        headers_at: float,
        hold: float | None,
        cap: int,
    ) -> Reply:
        chunks: list[bytes] = []
        error = ""
        events: list[SseEvent] = []
        comment_times: list[float] = []
        sse = response.headers.get("content-type", "").lower().startswith("text/event-stream")
        try:
            with anyio.move_on_after(hold if hold is not None else float("inf")):
                await self._collect(response, started, cap, sse, chunks, events, comment_times)
        except httpx.HTTPError as exc:
            error = str(exc) or type(exc).__name__
        size = sum(len(c) for c in chunks)
        truncated = size > cap
        body = b"".join(chunks)[:cap]
        return Reply(
            method,
            url,
            response.status_code,
            response.headers,
            body,
            time.monotonic() - started,
            headers_at,
            error=error,
            truncated=truncated,
            events=tuple(events),
            comments_at=tuple(comment_times),
        )

    @staticmethod
    async def _collect(
        response: httpx.Response,
        started: float,
        cap: int,
        sse: bool,
        chunks: list[bytes],
        events: list[SseEvent],
        comment_times: list[float],
    ) -> None:
        size = 0
        pending = ""
        async for chunk in response.aiter_bytes():
            now = time.monotonic() - started
            chunks.append(chunk)
            size += len(chunk)
            if sse:
                pending = (pending + chunk.decode("utf-8", errors="replace")).replace("\r\n", "\n")
                complete, _, pending = pending.rpartition("\n\n")
                if complete:
                    parsed, comments = parse_sse(complete + "\n\n")
                    events.extend(SseEvent(n, d, i, now) for n, d, i in parsed)
                    comment_times.extend([now] * comments)
            if size > cap:
                return
