"""Fan-out of server-initiated notifications (list changes, resource updates) to open streams.

In a fleet a ``bridge`` (patchbay.fleet.fanout) also hands what is published here to the other replicas, which
publish it to their own streams with ``local=True``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("patchbay.hub")

Listener = Callable[[str, dict[str, Any]], None]
Bridge = Callable[[str, dict[str, Any]], None]
# Published once when the server begins shutting down: long-lived streams end so shutdown need not wait for them.
CLOSE = "$close"


class Hub:
    """Listeners are plain callbacks that must not block: streams push into their own queues."""

    def __init__(self) -> None:
        self._listeners: set[Listener] = set()
        self.closed = False
        self.bridge: Bridge | None = None  # a fleet: carries notifications to the other replicas

    def add(self, listener: Listener) -> Callable[[], None]:
        if self.closed:
            listener(CLOSE, {})
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def close(self) -> None:
        """Tell every stream to end (the server is shutting down). Streams opened later end at once."""
        self.closed = True
        self.publish(CLOSE, local=True)  # each replica shuts down on its own

    def publish(self, method: str, params: dict[str, Any] | None = None, *, local: bool = False) -> None:
        """Tell every open stream; in a fleet also every other replica's, unless ``local``: what each replica
        produces by itself (a list change after its own catalog rebuild) would otherwise arrive once per replica."""
        params = params or {}
        for listener in list(self._listeners):
            try:
                listener(method, params)
            except Exception:  # one broken stream must not stop the others
                log.exception("notification listener failed")
        if self.bridge is not None and not local:
            self.bridge(method, params)

    @property
    def listener_count(self) -> int:
        return len(self._listeners)
