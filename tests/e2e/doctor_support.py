"""Run a fixture ASGI app with uvicorn on a free loopback port (in a thread) and run the doctor against it."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import uvicorn

from patchbay.doctor import Options, Report, run
from patchbay.doctor.model import Status
from tests.support.servers import free_port

# The doctor's options for loopback tests: local URL and a short stream hold (the default "slow" limits stay, so a
# loaded machine does not turn a healthy server's answer into a timing failure; only the slow fixture lowers them).
TEST_OPTIONS = Options(local=True, stream_hold=1.5)


@contextlib.contextmanager
def serve_app(app: Any) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its MCP URL; stop it on exit."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fixture server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        server.should_exit = True
        thread.join(10)


def doctor(
    url: str, options: Options = TEST_OPTIONS, clients: tuple[str, ...] = ("chatgpt", "claude", "responses", "messages")
) -> Report:
    async def go() -> Report:
        async with httpx.AsyncClient(trust_env=False) as http:
            return await run(url, list(clients), options, http=http)

    return anyio.run(go)


def failing(report: Report) -> set[str]:
    return {r.id for r in report.results if r.status is Status.FAIL}


def explain(report: Report) -> str:
    return "\n".join(
        f"{r.client} {r.id} {r.status}: {r.why}" for r in report.results if r.status in (Status.FAIL, Status.WARN)
    )
