"""The one exception tree of Patchbay.

    PatchbayError
    ├── ConfigError          a config file or environment value is wrong (names file, key, value, what is allowed)
    ├── ConnectorError       a connector could not start, or an upstream system failed
    ├── ToolError            raised by tool code: becomes an ``isError`` result whose text the client sees
    └── RpcError             a JSON-RPC error answered to the client (code, message, data, HTTP status)

Driver, HTTP and OAuth errors are translated into these where they enter. Nothing here carries a stack trace or
a secret to a client: ``RpcError`` and ``ToolError`` messages are the only texts clients ever see.
"""

from __future__ import annotations

from typing import Any


class PatchbayError(Exception):
    """Base of every error Patchbay raises on purpose."""


class ConfigError(PatchbayError):
    """A configuration value is invalid.

    ``str(error)`` is the full, user-facing message: the file, the key, the bad value and what is allowed.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.key = key


class ConnectorError(PatchbayError):
    """A connector failed to start or an upstream system it talks to failed."""


class ToolError(PatchbayError):
    """Raise from tool code to fail a call with a message the client (and so the person) should see.

    The call's result is ``isError: true`` with ``message`` as its text; nothing else of the exception is sent.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RpcError(PatchbayError):
    """A JSON-RPC error to answer a request with.

    Attributes:
        code: the JSON-RPC error code (see ``patchbay.protocol.jsonrpc``).
        message: a short, client-safe sentence.
        data: optional structured detail, client-safe.
        status: the HTTP status to use where the transport has one.
    """

    def __init__(self, code: int, message: str, data: Any = None, *, status: int = 200) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data
        self.status = status

    def to_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error
