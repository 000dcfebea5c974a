"""Structured logs: JSON lines when stderr is not a terminal (or when asked), readable lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson

from patchbay.observe import request_ref

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ref = request_ref.current.get()
        if ref is not None:  # the same id as the request's audit record and trace span
            entry["request_ref"] = ref
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, with the request's id (``[ref]``) when the line belongs to a request."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)  # the first line; a traceback follows it
        ref = request_ref.current.get()
        return line if ref is None else f"{line} [{ref}]"


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Send Patchbay's and uvicorn's logs to stderr in one format. Never to stdout (stdio carries MCP there)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Per-request access lines cost throughput and say nothing MCP-specific; errors still show.
    logging.getLogger("uvicorn.access").disabled = True
    # Alembic announces its plugins and each migration at INFO on every start; that is noise for operators.
    logging.getLogger("alembic").setLevel(max(root.level, logging.WARNING))
