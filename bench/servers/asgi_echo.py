"""A reference below the ceiling: the same `add` answer from a bare ASGI callable (no framework at all).

Patchbay's hot path is raw ASGI, not Starlette's Request/Response, so this shows what uvicorn itself allows.
Run: python -m bench.servers.asgi_echo --port 8003
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
import uvicorn

Message = MutableMapping[str, Any]
_JSON = [(b"content-type", b"application/json")]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/healthz":
        await send({"type": "http.response.start", "status": 200, "headers": _JSON})
        await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
        return
    body = b""
    while True:  # ends with the last body chunk (more_body false) or a disconnect
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = orjson.loads(body)
    arguments = request["params"]["arguments"]
    total = arguments["a"] + arguments["b"]
    result = {
        "content": [{"type": "text", "text": str(total)}],
        "structuredContent": {"result": total},
        "isError": False,
    }
    payload = orjson.dumps({"jsonrpc": "2.0", "id": request["id"], "result": result})
    await send({"type": "http.response.start", "status": 200, "headers": _JSON})
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, loop="uvloop", http="httptools", log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
