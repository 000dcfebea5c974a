"""In-process fan-out of server-initiated notifications (list changes, resource updates) to open streams."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("patchbay.hub")

Listener = Callable[[str, dict[str, Any]], None]


class Hub:
    """Listeners are plain callbacks that must not block: streams push into their own queues."""

    def __init__(self) -> None:
        self._listeners: set[Listener] = set()

    def add(self, listener: Listener) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def publish(self, method: str, params: dict[str, Any] | None = None) -> None:
        for listener in list(self._listeners):
            try:
                listener(method, params or {})
            except Exception:  # one broken stream must not stop the others
                log.exception("notification listener failed")

    def __len__(self) -> int:
        return len(self._listeners)
