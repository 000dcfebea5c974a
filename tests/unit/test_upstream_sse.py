"""Reading SSE bodies from upstreams: line endings split across chunks, multi-line data, ids, and the size cap."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from patchbay.upstream import UpstreamUnavailable
from patchbay.upstream.sse import Event, events

pytestmark = pytest.mark.anyio


async def chunked(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def read(*parts: bytes, cap: int = 1000) -> list[Event]:
    return [event async for event in events(chunked(*parts), cap)]


async def test_crlf_split_between_chunks_ends_one_line_not_two() -> None:
    got = await read(b"id: 7\r", b'\nevent: message\r\ndata: {"a":1}\r', b"\n\r\n")
    assert [(e.event, e.data, e.id) for e in got] == [("message", '{"a":1}', "7")]


async def test_lone_cr_and_lf_line_endings_and_multi_line_data() -> None:
    got = await read(b"data: one\rdata: two\r\r: a comment\n\nretry: 1500\nevent: endpoint\ndata: /messages?s=1\n\n")
    assert [(e.event, e.data) for e in got] == [("message", "one\ntwo"), ("endpoint", "/messages?s=1")]
    assert got[1].retry == 1500


async def test_an_event_over_the_cap_is_refused_with_the_cap_named() -> None:
    with pytest.raises(UpstreamUnavailable, match="larger than 10 bytes"):
        await read(b"data: 0123456789abc\n\n", cap=10)
    with pytest.raises(UpstreamUnavailable, match="larger than 10 bytes"):
        await read(b"data: 0123", b"456789abcdef", cap=10)  # no line end yet: the buffer itself is capped
