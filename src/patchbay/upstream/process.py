"""Supervision of local MCP servers started as child processes (the stdio upstreams).

One :class:`StdioProcess` owns one child: it starts it lazily in its own process group, hands the stdio transport
its pipes, drains stderr into a bounded ring buffer, restarts it after a crash with capped exponential backoff, stops
restarting after too many crashes (``crash_loop``, until :meth:`StdioProcess.reset`), shuts it down when idle, and
stops it with TERM to the whole group, then KILL after a grace period. The child is always reaped.

The supervisor knows nothing of JSON-RPC: the first byte the child writes to stdout is what "started" means for the
start-up timeout (an MCP server answers ``initialize`` there), ``touch()`` is how the transport reports activity and
:meth:`StdioProcess.in_use` keeps a child with a call in flight from being shut down as idle.

Shutting down: every connector that owns a :class:`StdioProcess` stops it in its ``close()`` (``await
process.stop()``), which Patchbay runs at shutdown. As a last resort for exits that skip that path, :func:`kill_all`
(registered with :mod:`atexit` the first time a child starts) sends KILL to every process group still running. A
child whose parent dies without either still sees EOF on stdin, on which an MCP stdio server exits.

Secrets: ``ProcessSpec.env`` values and the argv beyond the program name are never logged, and env values are
masked in :meth:`StdioProcess.stderr_tail` and in the reasons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections import deque
from collections.abc import Coroutine, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from patchbay.connectors.lifecycle import Clock, SystemClock
from patchbay.errors import ConnectorError
from patchbay.upstream.process_child import Child, ChildProtocol, Ring, Stdin, kill_all, signal_group, track, untrack

__all__ = [
    "ProcessSpec",
    "ProcessState",
    "ProcessStatus",
    "ProcessUnavailable",
    "StdioProcess",
    "StreamWriterLike",
    "kill_all",
]

log = logging.getLogger("patchbay.upstream")

ProcessState = Literal["idle", "starting", "running", "backoff", "crash_loop", "stopped"]
_Rest = Literal["idle", "backoff", "crash_loop", "stopped"]
# After stdout closes, how long a child has to exit by itself before it counts as hung.
_STDOUT_CLOSED_GRACE = 1.0
# Env values shorter than this are not masked in stderr (masking "1" or "true" would garble the text).
_MIN_MASKED = 4
_REASON_LINE = 200


class ProcessUnavailable(ConnectorError):
    """The child cannot be started now: ``str()`` says why and what to do (crash loop, command not found, stopped)."""


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

    def __post_init__(self) -> None:
        # The connector's options model reports bad config values with the file and key; these guard other callers.
        if not self.argv or not self.argv[0]:
            raise ValueError("ProcessSpec.argv needs at least the program to run")
        if self.max_restarts < 0 or self.stderr_bytes < 0 or self.max_line_bytes < 1:
            raise ValueError("ProcessSpec max_restarts and stderr_bytes must be >= 0, max_line_bytes >= 1")
        if min(self.start_timeout, self.restart_window, self.stop_grace, self.backoff_initial, self.backoff_max) < 0:
            raise ValueError("ProcessSpec times must be >= 0")
        if self.idle_shutdown is not None and self.idle_shutdown <= 0:
            raise ValueError("ProcessSpec.idle_shutdown must be > 0 seconds, or None to never stop an idle process")


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
        clock: time for the restart window and backoff waits (tests inject one that does not wait). The start-up
            and idle timers run on the event loop's own time.
    """

    def __init__(self, name: str, spec: ProcessSpec, *, clock: Clock | None = None) -> None:
        self.name = name
        self.spec = spec
        self._clock: Clock = clock or SystemClock()
        self._ring = Ring(spec.stderr_bytes)
        self._child: Child | None = None
        self._rest: _Rest = "idle"
        self._reason = ""
        self._before_stop: tuple[_Rest, str] = ("idle", "")  # what resume() returns to
        self._crashes: deque[float] = deque()
        self._last_exit: int | None = None
        self._lock = asyncio.Lock()
        self._last_touch = 0.0
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of the last start()

    # -- the transport's side ----------------------------------------------------------------------------------

    async def start(self) -> tuple[asyncio.StreamReader, StreamWriterLike]:
        """Start the child if it is not running (waiting out any backoff) and return its stdout and stdin.

        Returns the current child's streams when it is already running. ``reader.readline()`` gives one message line
        (at most ``spec.max_line_bytes``); EOF means the child is gone.

        Raises:
            ProcessUnavailable: in a crash loop, after :meth:`stop`, or the command cannot be executed.
        """
        self._loop = asyncio.get_running_loop()
        async with self._lock:
            while True:
                child = self._child
                if child is not None and not child.exited.is_set():
                    if child.planned is None and child.fault is None:
                        return self._streams(child)
                    await child.exited.wait()  # being stopped: start the next one once this one is reaped
                    continue
                if self._rest in ("crash_loop", "stopped"):
                    raise ProcessUnavailable(self._reason)
                delay = self.next_start_delay()
                if delay <= 0:
                    return self._streams(await self._spawn())
                await self._clock.sleep(delay)

    def touch(self) -> None:
        """Report activity: restarts the idle-shutdown timer."""
        # Every request and answer touches: the loop start() ran on is kept, as asking for it costs a getpid().
        self._last_touch = (self._loop or asyncio.get_running_loop()).time()

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Hold while a request awaits its answer: a child is never shut down as idle in the middle of a call."""
        self._users += 1
        try:
            yield
        finally:
            self._users -= 1
            self.touch()

    async def wait_exit(self) -> int | None:
        """Wait until the current child exits (crash, closed stdout, killed from outside, stop); its exit code.

        Returns at once when no child is running (the last exit code, or None).
        """
        child = self._child
        if child is None:
            return self._last_exit
        await child.exited.wait()
        return child.proc.returncode

    # -- the operator's side -----------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Stop the child for good: TERM to its process group, KILL after ``stop_grace``, reap it.

        Later :meth:`start` calls raise :class:`ProcessUnavailable` until :meth:`reset` or :meth:`resume`.
        """
        if self._rest != "stopped":
            self._before_stop = (self._rest, self._reason)
        self._rest = "stopped"
        self._reason = f"upstream {self.name!r} is stopped (Patchbay is shutting down or the connector was closed)"
        child = self._child
        if child is not None:
            await self._terminate(child, "stop")

    def reset(self) -> None:
        """Forget past crashes and leave ``crash_loop``, ``backoff`` or ``stopped``: the next start spawns at once."""
        self._crashes.clear()
        if self._rest != "idle":
            log.info("upstream %s: reset; the next call starts it", self.name)
        self._rest = "idle"
        self._reason = ""

    def resume(self) -> None:
        """Leave ``stopped`` for the state :meth:`stop` found, keeping the crash history (unlike :meth:`reset`):
        a connector opened again after a failed start goes on counting toward the crash-loop cap, and one in a
        crash loop stays in it."""
        if self._rest == "stopped":
            self._rest, self._reason = self._before_stop

    @property
    def state(self) -> ProcessState:
        child = self._child
        if child is not None and not child.exited.is_set():
            return "running" if child.protocol.stdout_seen.is_set() else "starting"
        return self._rest

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None and not child.exited.is_set() else None

    def status(self) -> ProcessStatus:
        """State, reason, recent restarts and the stderr tail, for ``/readyz`` and ``patchbay doctor``."""
        self._prune()
        return ProcessStatus(
            state=self.state,
            pid=self.pid,
            reason=self._reason,
            restarts=len(self._crashes),
            last_exit_code=self._last_exit,
            stderr_tail=self.stderr_tail(),
        )

    def stderr_tail(self) -> str:
        """The last ``spec.stderr_bytes`` of the child's stderr as text (bad UTF-8 replaced, env secrets masked)."""
        return self._mask(self._ring.text())

    def next_start_delay(self) -> float:
        """Seconds :meth:`start` would wait before spawning (backoff after a crash); 0 when it would start now."""
        if self._rest != "backoff" or not self._crashes:
            return 0.0
        self._prune()
        crashes = len(self._crashes)
        if crashes == 0:
            return 0.0
        nominal = min(self.spec.backoff_max, self.spec.backoff_initial * 2.0 ** min(crashes - 1, 60))
        return max(0.0, self._crashes[-1] + nominal - self._clock.now())

    # -- starting ----------------------------------------------------------------------------------------------

    async def _spawn(self) -> Child:
        loop = asyncio.get_running_loop()
        ring = self._ring
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: ChildProtocol(self.spec.max_line_bytes, loop, ring),
                *self.spec.argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.spec.cwd,
                env={**os.environ, **self.spec.env},
                start_new_session=True,  # its own process group: one signal reaches the grandchildren too
            )
        except OSError as exc:
            self._crashed(self._exec_failure(exc))
            raise ProcessUnavailable(self._reason) from None
        proc = asyncio.subprocess.Process(transport, protocol, loop)
        assert proc.stdin is not None  # a PIPE
        child = Child(proc, transport, protocol, Stdin(proc.stdin))
        track(child.pgid)
        self._child = child
        self._reason = ""
        self.touch()
        log.info("upstream %s: started %s (pid %d)", self.name, Path(self.spec.argv[0]).name, child.proc.pid)
        self._watch(child, self._reap(child))
        if self._rest == "stopped":  # stop() ran while the command was being started
            await self._terminate(child, "stop")
            raise ProcessUnavailable(self._reason)
        self._watch(child, self._watch_stdout(child))
        if self.spec.start_timeout > 0:
            self._watch(child, self._start_timer(child))
        if self.spec.idle_shutdown is not None:
            self._watch(child, self._idle_timer(child, self.spec.idle_shutdown))
        return child

    def _exec_failure(self, exc: OSError) -> str:
        cwd = self.spec.cwd
        if cwd is not None and not cwd.is_dir():
            return f"cannot start upstream {self.name!r}: its working directory {str(cwd)!r} does not exist"
        program = self.spec.argv[0]
        if isinstance(exc, FileNotFoundError):
            return f"cannot start upstream {self.name!r}: command {program!r} not found (check `command` and PATH)"
        if isinstance(exc, PermissionError):
            return f"cannot start upstream {self.name!r}: command {program!r} is not executable"
        return f"cannot start upstream {self.name!r}: {program!r}: {exc.strerror or type(exc).__name__}"

    @staticmethod
    def _streams(child: Child) -> tuple[asyncio.StreamReader, StreamWriterLike]:
        assert child.proc.stdout is not None  # a PIPE
        return child.proc.stdout, child.stdin

    def _watch(self, child: Child, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        child.tasks.add(task)
        task.add_done_callback(child.tasks.discard)

    # -- watching ----------------------------------------------------------------------------------------------

    async def _start_timer(self, child: Child) -> None:
        timeout = self.spec.start_timeout
        try:
            await asyncio.wait_for(child.protocol.stdout_seen.wait(), timeout)
        except TimeoutError:
            child.fault = (
                f"upstream {self.name!r} wrote nothing to stdout within start_timeout = {timeout:g} s "
                "(a first `npx`/`uvx` run downloads the package: raise start_timeout)"
            )
            await self._terminate(child, None)

    async def _idle_timer(self, child: Child, idle: float) -> None:
        await child.protocol.stdout_seen.wait()  # still starting: start_timeout is the limit then
        self.touch()
        loop = asyncio.get_running_loop()
        while True:
            remaining = self._last_touch + idle - loop.time()
            if remaining <= 0 and self._users == 0:
                break
            await asyncio.sleep(remaining if remaining > 0 else idle)
        async with self._lock:  # a start() in progress finishes first; later ones spawn a new child
            if child.exited.is_set() or self._child is not child:
                return
            log.info("upstream %s: stopping after %g s without a call", self.name, idle)
            await self._terminate(child, "idle")

    async def _watch_stdout(self, child: Child) -> None:
        await child.protocol.stdout_closed.wait()
        try:
            await asyncio.wait_for(child.exited.wait(), _STDOUT_CLOSED_GRACE)
        except TimeoutError:
            child.fault = f"upstream {self.name!r} closed its stdout but kept running"
            await self._terminate(child, None)

    async def _reap(self, child: Child) -> None:
        await child.protocol.process_gone.wait()
        code = child.transport.get_returncode()
        assert code is not None  # set before process_exited() is called
        # Whatever of its group is left (a grandchild of an exited server) is an orphan now.
        signal_group(child.pgid, signal.SIGKILL)
        untrack(child.pgid)
        self._last_exit = code
        if self._rest == "stopped" or child.planned == "stop":
            pass  # stop() has set the state
        elif child.planned == "idle" or (child.fault is None and child.stdin.closed_by_transport):
            self._rest = "idle"  # shut down as idle, or the transport closed its stdin: ended, not crashed
        else:
            self._crashed(child.fault or self._exit_text(code))
        # Pipes close once their last holder is gone; this bounds the wait for a holder that escaped the group.
        asyncio.get_running_loop().call_later(_STDOUT_CLOSED_GRACE, child.transport.close)
        child.exited.set()
        for task in list(child.tasks):
            if task is not asyncio.current_task():
                task.cancel()

    def _exit_text(self, code: int) -> str:
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"upstream {self.name!r} was killed by {signal.Signals(-code).name}"
        # The child's stderr stays out of reasons: they reach clients (tool errors) and the public /readyz, and
        # stderr can hold paths, hostnames or secrets. Operators read it in the log and the operator part of /readyz.
        return f"upstream {self.name!r} exited with code {code}"

    def _stderr_note(self) -> str:
        for line in reversed(self.stderr_tail().splitlines()):
            if line.strip():
                return f"; its last stderr line: {line.strip()[:_REASON_LINE]}"
        return ""

    def _crashed(self, reason: str) -> None:
        self._crashes.append(self._clock.now())
        self._prune()
        crashes = len(self._crashes)
        if crashes > self.spec.max_restarts:
            self._rest = "crash_loop"
            self._reason = (
                f"crash loop: {reason}; it failed {crashes} times within {self.spec.restart_window:g} s, so it is not "
                "restarted until the connector is reset or Patchbay restarts (see its stderr)"
            )
            log.error("upstream %s: %s%s", self.name, self._reason, self._stderr_note())
            return
        self._rest = "backoff"
        self._reason = reason
        delay = self.next_start_delay()
        log.warning("upstream %s: %s; restarting in %.1f s%s", self.name, reason, delay, self._stderr_note())

    def _prune(self) -> None:
        horizon = self._clock.now() - self.spec.restart_window
        while self._crashes and self._crashes[0] < horizon:
            self._crashes.popleft()

    # -- stopping ----------------------------------------------------------------------------------------------

    async def _terminate(self, child: Child, planned: Literal["stop", "idle"] | None) -> None:
        """Stop ``child`` and return once it is reaped. The stopping runs on in its own task when the caller is
        cancelled (a shutdown that gives up waiting still gets its KILL)."""
        if planned is not None and child.planned is None and not child.exited.is_set():
            child.planned = planned
        if child.stopping is None:
            child.stopping = asyncio.create_task(self._term_then_kill(child))
        await asyncio.shield(child.stopping)

    async def _term_then_kill(self, child: Child) -> None:
        """Close stdin, TERM the group, KILL it after ``stop_grace``.

        MCP 2025-11-25 basic/lifecycle, shutdown over stdio: close the input stream, then SIGTERM, then SIGKILL.
        """
        if not child.exited.is_set():
            if not child.stdin.is_closing():
                child.stdin.close()
            signal_group(child.pgid, signal.SIGTERM)
            try:
                await asyncio.wait_for(asyncio.shield(child.exited.wait()), self.spec.stop_grace)
            except TimeoutError:
                log.warning("upstream %s: no exit %g s after TERM; sending KILL", self.name, self.spec.stop_grace)
                signal_group(child.pgid, signal.SIGKILL)
        await child.exited.wait()

    def _mask(self, text: str) -> str:
        for value in self.spec.env.values():
            if len(value) >= _MIN_MASKED:
                text = text.replace(value, "***")
        return text
