"""Reading a ``text/event-stream`` body (WHATWG HTML "server-sent events": parsing an event stream), with a cap on
the size of one event. Only what MCP uses: ``event``, ``data``, ``id`` and ``retry``; comments are skipped."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from patchbay.upstream.errors import UpstreamUnavailable


@dataclass(slots=True)
class Event:
    event: str
    data: str
    id: str | None
    retry: int | None


async def events(chunks: AsyncIterator[bytes], max_bytes: int) -> AsyncIterator[Event]:
    """The events in ``chunks``.

    Raises:
        UpstreamUnavailable: one event (or one line) is larger than ``max_bytes``.
    """
    buffer = b""
    data: list[str] = []
    size = 0
    name = ""
    event_id: str | None = None
    retry: int | None = None
    async for chunk in chunks:
        buffer += chunk
        # CR LF, LF and a lone CR all end a line; a CR at the end may be the first half of a CR LF.
        while True:
            cut = _line_end(buffer)
            if cut < 0:
                break
            line = buffer[:cut].decode("utf-8", "replace")
            buffer = buffer[cut + (2 if buffer[cut : cut + 2] == b"\r\n" else 1) :]
            if not line:
                if data or name:
                    yield Event(name or "message", "\n".join(data), event_id, retry)
                data, size, name, retry = [], 0, "", None
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                size += len(value)
                if size > max_bytes:
                    raise UpstreamUnavailable(f"the upstream sent an event larger than {max_bytes} bytes")
                data.append(value)
            elif field == "event":
                name = value
            elif field == "id" and "\0" not in value:
                event_id = value
            elif field == "retry" and value.isdigit():
                retry = int(value)
        if len(buffer) > max_bytes:
            raise UpstreamUnavailable(f"the upstream sent an event larger than {max_bytes} bytes")


def _line_end(buffer: bytes) -> int:
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr < 0 or (0 <= lf < cr):
        return lf
    if cr == len(buffer) - 1:
        return lf if lf >= 0 else -1  # wait for the next chunk: it may start with LF
    return cr
