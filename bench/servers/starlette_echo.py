"""The ceiling: a bare Starlette route that answers a `tools/call` for `add` with no MCP machinery.

It parses the JSON-RPC body, adds the two arguments and returns the same result shape an MCP server
would (text content plus structuredContent), serialised with orjson.

Run: python -m bench.servers.starlette_echo --port 8002
"""

from __future__ import annotations

import argparse
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def mcp(request: Request) -> Response:
    message: dict[str, Any] = orjson.loads(await request.body())
    arguments = message["params"]["arguments"]
    total = arguments["a"] + arguments["b"]
    result = {
        "content": [{"type": "text", "text": str(total)}],
        "structuredContent": {"result": total},
        "isError": False,
    }
    body = orjson.dumps({"jsonrpc": "2.0", "id": message["id"], "result": result})
    return Response(body, media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


def build() -> Starlette:
    return Starlette(routes=[Route("/mcp", mcp, methods=["POST"]), Route("/healthz", healthz, methods=["GET"])])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        build(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
