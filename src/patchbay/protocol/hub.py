"""In-process fan-out of server-initiated notifications (list changes, resource updates) to open streams."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("patchbay.hub")

Listener = Callable[[str, dict[str, Any]], None]
# Published once when the server begins shutting down: long-lived streams end so shutdown need not wait for them.
CLOSE = "$close"


class Hub:
    """Listeners are plain callbacks that must not block: streams push into their own queues."""

    def __init__(self) -> None:
        self._listeners: set[Listener] = set()
        self.closed = False

    def add(self, listener: Listener) -> Callable[[], None]:
        if self.closed:
            listener(CLOSE, {})
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def close(self) -> None:
        """Tell every stream to end (the server is shutting down). Streams opened later end at once."""
        self.closed = True
        self.publish(CLOSE)

    def publish(self, method: str, params: dict[str, Any] | None = None) -> None:
        for listener in list(self._listeners):
            try:
                listener(method, params or {})
            except Exception:  # one broken stream must not stop the others
                log.exception("notification listener failed")

    @property
    def listener_count(self) -> int:
        return len(self._listeners)
