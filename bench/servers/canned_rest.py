"""The openapi benchmark's API: canned answers of the tickets service over HTTP/1.1 keep-alive, nothing else.

Answers ``GET /api/tickets``, ``POST /api/tickets`` and ``GET /api/tickets/7`` (shapes of
tests/fixtures/openapi/rest_api.yaml) from bytes made once, without parsing more of a request than its first line
and its Content-Length, so this process's work stays small and out of the measured process.

Run: python -m bench.servers.canned_rest --port PORT
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson


def ticket(ticket_id: int, comments: int) -> dict[str, Any]:
    return {
        "id": ticket_id,
        "title": f"Printer on floor {ticket_id} prints blank pages",
        "description": "Since the toner was replaced the printer feeds paper but prints nothing. " * 3,
        "status": "open",
        "priority": "high",
        "labels": ["hardware", "printer", "floor-3"],
        "customer": {"id": 42, "name": "Acme Facilities"},
        "comments": [
            {"author": f"agent-{n}", "text": f"Checked the drum and the cable, no change (visit {n}).", "replies": []}
            for n in range(comments)
        ],
    }


def _answer(status: int, value: Any) -> bytes:
    body = orjson.dumps(value)
    head = f"HTTP/1.1 {status} OK\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    return head.encode() + body


CANNED = {
    b"GET /api/tickets": _answer(200, {"items": [ticket(1, 1)], "page": 2, "per_page": 50, "total": 51}),
    b"POST /api/tickets": _answer(201, ticket(8, 0)),
    b"GET /api/tickets/7": _answer(200, ticket(7, 16)),
}
MISSING = _answer(404, {"title": "Not Found", "status": 404})


class _Canned(asyncio.Protocol):
    """HTTP/1.1 keep-alive: each request (head + content-length body) answered at once from ``CANNED``."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) != -1:
            head = self.buffer[:end].lower()
            length = 0
            if (at := head.find(b"\r\ncontent-length:")) != -1:
                length = int(head[at + 17 :].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            method, target = self.buffer[:end].split(b" ", 2)[:2]
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(CANNED.get(method + b" " + target.split(b"?", 1)[0], MISSING))


def serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Canned, "127.0.0.1", port)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.servers.canned_rest")
    parser.add_argument("--port", type=int, required=True)
    serve(parser.parse_args().port)


if __name__ == "__main__":
    main()
