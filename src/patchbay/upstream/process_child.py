"""The parts of one supervised child run: its pipes' protocol, the stderr ring, the stdin writer, and the
process-wide list of groups still running (for :func:`kill_all`). Used by :mod:`patchbay.upstream.process`."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
from dataclasses import dataclass, field
from typing import Literal


class Ring:
    """The last ``cap`` bytes written to it; appending never blocks and never grows past the cap."""

    def __init__(self, cap: int) -> None:
        self._cap = max(cap, 0)
        self._buf = bytearray()

    def append(self, data: bytes) -> None:
        if len(data) >= self._cap:
            self._buf[:] = data[len(data) - self._cap :]
            return
        self._buf += data
        excess = len(self._buf) - self._cap
        if excess > 0:
            del self._buf[:excess]  # CPython trims a bytearray's front without copying the rest

    def __len__(self) -> int:
        return len(self._buf)

    def text(self) -> str:
        return self._buf.decode("utf-8", errors="replace")


class ChildProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The stock subprocess protocol, except stderr goes straight into the ring (no reader to fill up and stall
    the child) and the first stdout byte and stdout's end are signalled."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop, ring: Ring) -> None:
        super().__init__(limit=limit, loop=loop)
        self.ring = ring
        self.stdout_seen = asyncio.Event()
        self.stdout_closed = asyncio.Event()
        self.process_gone = asyncio.Event()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        if fd == 2:
            self.ring.append(data if isinstance(data, bytes) else data.encode())
            return
        if fd == 1:
            self.stdout_seen.set()
        super().pipe_data_received(fd, data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        super().pipe_connection_lost(fd, exc)
        if fd == 1:
            self.stdout_closed.set()

    def process_exited(self) -> None:
        # Python 3.11's Process.wait() also waits for every pipe to close, which a grandchild holding them can
        # delay for ever; the exit itself is known here.
        super().process_exited()
        self.process_gone.set()


class Stdin:
    """The child's stdin writer, remembering whether the transport closed it (then an exit is an ending, not a
    crash)."""

    __slots__ = ("_writer", "closed_by_transport")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.closed_by_transport = False

    def write(self, data: bytes) -> None:
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    def close(self) -> None:
        self.closed_by_transport = True
        self._writer.close()

    def is_closing(self) -> bool:
        return self._writer.is_closing()


@dataclass(eq=False)
class Child:
    """One run of the command: its process, pipes and the supervisor's tasks watching it."""

    proc: asyncio.subprocess.Process
    transport: asyncio.SubprocessTransport
    protocol: ChildProtocol
    stdin: Stdin
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    planned: Literal["stop", "idle"] | None = None  # why we are stopping it; None: any exit is a crash
    fault: str | None = None  # what the supervisor saw wrong before it killed it
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    stopping: asyncio.Task[None] | None = None  # the one TERM-then-KILL run, shared by every stop request

    @property
    def pgid(self) -> int:
        return self.proc.pid  # start_new_session: the child leads its own process group


# Process groups started and not yet reaped, for kill_all(). Process-wide on purpose: so are the children.
_LIVE_GROUPS: set[int] = set()
_atexit_registered = False


def kill_all() -> None:
    """Send KILL to every process group a :class:`StdioProcess` started and has not yet stopped (for atexit)."""
    for pgid in list(_LIVE_GROUPS):
        signal_group(pgid, signal.SIGKILL)
    _LIVE_GROUPS.clear()


def track(pgid: int) -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(kill_all)
        _atexit_registered = True
    _LIVE_GROUPS.add(pgid)


def untrack(pgid: int) -> None:
    _LIVE_GROUPS.discard(pgid)


def signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
