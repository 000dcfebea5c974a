"""FastMCP's proxy with one shared upstream client: the peer of ``patchbay-proxy-http`` (perf-baseline.md's row
"gateway: FastMCP proxy, one shared upstream client").

A connected ``fastmcp.Client`` handed to ``create_proxy`` is reused for every request (FastMCP's own reuse path);
its default (a new upstream session per request) is the slow row of perf-baseline.md and is not measured here.
Runs in its own venv (build/bench-peers/fastmcp, `make bench-peers`), never in Patchbay's.

Run: build/bench-peers/fastmcp/bin/python -m bench.servers.fastmcp_proxy --port 8001 --upstream URL
"""

from __future__ import annotations

import argparse
import asyncio

import uvicorn
from fastmcp import Client
from fastmcp.server import create_proxy
from starlette.requests import Request
from starlette.responses import JSONResponse, Response


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def serve(port: int, upstream: str) -> None:
    async with Client(upstream) as client:
        proxy = create_proxy(client, name="bench-proxy")
        proxy.custom_route("/healthz", methods=["GET"])(healthz)
        app = proxy.http_app(json_response=True, stateless_http=True)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, http="httptools", log_level="warning", access_log=False
        )
        await uvicorn.Server(config).serve()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.run(serve(args.port, args.upstream))
    except ImportError:
        asyncio.run(serve(args.port, args.upstream))


if __name__ == "__main__":
    main()
