"""Supervision of local MCP servers started as child processes (the stdio upstreams).

One :class:`StdioProcess` owns one child: it starts it lazily in its own process group, hands the stdio transport
its pipes, drains stderr into a bounded ring buffer, restarts it after a crash with capped exponential backoff, stops
restarting after too many crashes (``crash_loop``, until :meth:`StdioProcess.reset`), shuts it down when idle, and
stops it with TERM to the whole group, then KILL after a grace period. The child is always reaped.

The supervisor knows nothing of JSON-RPC: the first byte the child writes to stdout is what "started" means for the
start-up timeout (an MCP server answers ``initialize`` there), and ``touch()`` is how the transport reports activity.

Shutting down: every connector that owns a :class:`StdioProcess` stops it in its ``close()`` (``await
process.stop()``). As a last resort for exits that skip that path, :func:`kill_all` (also registered with
:mod:`atexit` the first time a child starts) sends KILL to every process group still running.

Secrets: ``ProcessSpec.env`` values and the argv beyond the program name are never logged, and are masked in
:meth:`StdioProcess.stderr_tail`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from patchbay.errors import ConnectorError

__all__ = [
    "InFlightCap",
    "ProcessSpec",
    "ProcessState",
    "ProcessStatus",
    "ProcessUnavailable",
    "StdioProcess",
    "StreamWriterLike",
    "UpstreamBusy",
    "kill_all",
]

ProcessState = Literal["idle", "starting", "running", "backoff", "crash_loop", "stopped"]


class ProcessUnavailable(ConnectorError):
    """The child cannot be started now: ``str()`` says why and what to do (crash loop, command not found, stopped)."""


class UpstreamBusy(ConnectorError):
    """Every in-flight slot stayed taken for the whole wait (see :class:`InFlightCap`)."""


class StreamWriterLike(Protocol):
    """What :meth:`StdioProcess.start` hands the transport for the child's stdin (an ``asyncio.StreamWriter``)."""

    def write(self, data: bytes) -> None: ...
    async def drain(self) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """How to start one child and how to supervise it.

    ``env`` holds only the additions to Patchbay's own environment (the final values, already read from env vars
    or secret files by the connector).
    """

    argv: tuple[str, ...]
    cwd: Path | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0  # npx cold starts are slow
    idle_shutdown: float | None = 300.0
    max_restarts: int = 5  # crashes allowed within restart_window; one more is a crash loop
    restart_window: float = 300.0
    stderr_bytes: int = 64 * 1024  # bounded ring buffer
    stop_grace: float = 5.0  # TERM, then KILL after this
    backoff_initial: float = 0.5  # delay before the first restart; doubles per crash in the window
    backoff_max: float = 30.0
    max_line_bytes: int = 16 * 1024 * 1024  # one stdout message line; longer makes readline() raise ValueError


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    """A snapshot for ``/readyz`` and ``patchbay doctor``."""

    state: ProcessState
    pid: int | None
    reason: str  # person-readable: why it is not running, or "" when it is fine
    restarts: int  # crashes within the restart window
    last_exit_code: int | None
    stderr_tail: str


class StdioProcess:
    """One supervised child process speaking on its stdin/stdout.

    Args:
        name: the connector name, used in logs and reasons.
        spec: how to start and supervise the child.
        clock: a monotonic clock (tests inject one to drive the restart window and backoff).
    """

    def __init__(self, name: str, spec: ProcessSpec, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.spec = spec
        self._clock = clock

    async def start(self) -> tuple[asyncio.StreamReader, StreamWriterLike]:
        """Start the child if it is not running (waiting out any backoff) and return its stdout and stdin.

        Returns the current child's streams when it is already running. ``reader.readline()`` gives one message line
        (at most ``spec.max_line_bytes``); EOF means the child is gone.

        Raises:
            ProcessUnavailable: in a crash loop, after :meth:`stop`, or the command cannot be executed.
        """
        raise NotImplementedError

    async def stop(self) -> None:
        """Stop the child for good: TERM to its process group, KILL after ``stop_grace``, reap it.

        Later :meth:`start` calls raise :class:`ProcessUnavailable` until :meth:`reset`.
        """
        raise NotImplementedError

    def reset(self) -> None:
        """Forget past crashes and leave ``crash_loop``, ``backoff`` or ``stopped``: the next start spawns at once."""
        raise NotImplementedError

    def stderr_tail(self) -> str:
        """The last ``spec.stderr_bytes`` of the child's stderr as text (bad UTF-8 replaced, env secrets masked)."""
        raise NotImplementedError

    @property
    def state(self) -> ProcessState:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def status(self) -> ProcessStatus:
        """State, reason, recent restarts and the stderr tail, for ``/readyz`` and ``patchbay doctor``."""
        raise NotImplementedError

    def next_start_delay(self) -> float:
        """Seconds :meth:`start` would wait before spawning (backoff after a crash); 0 when it would start now."""
        raise NotImplementedError

    def touch(self) -> None:
        """Report activity: restarts the idle-shutdown timer."""
        raise NotImplementedError

    async def wait_exit(self) -> int | None:
        """Wait until the current child exits (crash, closed stdout, killed from outside, stop); its exit code.

        Returns at once when no child is running (the last exit code, or None).
        """
        raise NotImplementedError


class InFlightCap:
    """At most ``limit`` calls at once; a caller waits at most ``wait`` seconds for a slot.

    Use as ``async with cap.slot(): ...``.
    """

    def __init__(self, limit: int, *, wait: float) -> None:
        self.limit = limit
        self.wait = wait

    def slot(self) -> object:
        """An async context manager holding one slot.

        Raises:
            UpstreamBusy: no slot freed up within ``wait`` seconds.
        """
        raise NotImplementedError


def kill_all() -> None:
    """Send KILL to every process group a :class:`StdioProcess` started and has not yet stopped (for atexit)."""
    raise NotImplementedError
