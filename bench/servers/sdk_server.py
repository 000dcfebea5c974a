"""The official SDK's `MCPServer` serving the same trivial tools as Patchbay's bench config.

Modes:
  modern-json   2026-07-28 per-request envelope answered as JSON (`json_response=True`, stateless); the
                SDK's fastest mode.
  session-sse   2025-era stateful sessions with SSE responses: the SDK's default.
  session-json  2025-era stateful sessions with JSON responses (not in the default run).

Run: python -m bench.servers.sdk_server --mode modern-json --port 8001
"""

from __future__ import annotations

import argparse

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

MODES = ("modern-json", "session-sse", "session-json")


async def healthz(request: Request) -> Response:
    """Readiness, as Patchbay's GET /healthz."""
    return JSONResponse({"status": "ok"})


def build() -> MCPServer:
    server: MCPServer = MCPServer("bench", log_level="WARNING")

    @server.tool()
    async def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    async def add_with_progress(a: int, b: int, ctx: Context) -> int:
        """Add two integers, reporting one progress step first."""
        await ctx.report_progress(1, 1)
        return a + b

    server.custom_route("/healthz", methods=["GET"])(healthz)
    return server


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--max-sessions", type=int, default=0, help="0: no limit (SDK default: 10,000)")
    args = parser.parse_args()
    server = build()
    app = server.streamable_http_app(
        json_response=args.mode != "session-sse",
        stateless_http=args.mode == "modern-json",
        max_sessions=args.max_sessions or None,
        host="127.0.0.1",
    )
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
