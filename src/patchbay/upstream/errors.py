"""What an upstream MCP call can end in, besides a result.

    UpstreamError        the upstream answered a JSON-RPC error (code, message, data as it sent them)
    UpstreamUnavailable  it cannot be reached, started or initialised, or it went away mid-call (a ConnectorError)
    ├── UpstreamUnauthorized  HTTP 401: the credentials sent were refused (``www_authenticate`` as sent)
    ├── SessionLost      its session ended (HTTP 404, stream closed, process exited); ``delivered`` says whether
    │                    the request may have reached it (only an undelivered request is retried)
    UpstreamTimeout      no answer in time; the request was cancelled upstream
    InputNeeded          a 2026-07-28 upstream answered ``input_required`` (MCP 2026-07-28 basic/patterns/mrtr)

Messages are person-readable and never carry a header, a token or a response body beyond the upstream's own
JSON-RPC error message.
"""

from __future__ import annotations

from typing import Any

from patchbay.errors import ConnectorError, PatchbayError


class UpstreamError(PatchbayError):
    """The upstream answered the request with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class UpstreamUnavailable(ConnectorError):
    """The upstream cannot be reached, started or initialised, or it went away; ``str()`` says why."""


class UpstreamUnauthorized(UpstreamUnavailable):
    """The upstream answered HTTP 401: the identity's credentials were refused. The caller invalidates them
    (``Credentials.invalidate``) and asks again; the pool never retries on its own (no retry storm)."""

    def __init__(self, message: str, *, www_authenticate: str = "") -> None:
        super().__init__(message)
        self.www_authenticate = www_authenticate


class SessionLost(UpstreamUnavailable):
    """The upstream session ended. ``delivered`` is False only when the upstream certainly never saw the request
    (refused with 404 for an unknown session, or the connection failed before sending), so a retry on a new
    session cannot run it twice."""

    def __init__(self, message: str, *, delivered: bool) -> None:
        super().__init__(message)
        self.delivered = delivered


class UpstreamTimeout(PatchbayError):
    """No answer within the call's timeout; ``notifications/cancelled`` was sent upstream (or, for 2026-07-28
    over HTTP, the response stream was closed, which is how that revision cancels)."""


class InputNeeded(PatchbayError):
    """A 2026-07-28 upstream needs input before it can answer (MCP 2026-07-28 basic/patterns/mrtr).

    ``requests`` maps each key to ``{"method": ..., "params": ...}`` (elicitation, sampling, roots). The caller
    gets the answers and sends the same request again with ``params.inputResponses`` (key → result) and
    ``params.requestState`` set to ``request_state``.
    """

    def __init__(self, requests: dict[str, dict[str, Any]], request_state: str | None) -> None:
        super().__init__("the upstream needs input to continue")
        self.requests = requests
        self.request_state = request_state
