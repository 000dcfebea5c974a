"""The stdio transport: newline-delimited JSON-RPC over a supervised process's pipes (MCP 2025-11-25
basic/transports: stdio; the same framing in 2026-07-28).

A line that is not JSON is skipped and counted (servers that print banners to stdout are common), logged once per
``GARBAGE_LOG_EVERY`` lines; a line longer than the cap ends the session with an error that says so (and the
process is stopped, so the next call starts a fresh one); the process exiting fails every call in flight with
``UpstreamUnavailable`` naming the exit code (never the child's stderr: reasons reach clients and the public
/readyz; the stderr tail is for operators, ``StdioProcess.stderr_tail``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from patchbay.upstream.errors import SessionLost, UpstreamUnavailable

if TYPE_CHECKING:
    from patchbay.upstream.opening import StdioEndpoint
    from patchbay.upstream.process import StreamWriterLike
    from patchbay.upstream.session import Call, UpstreamSession

log = logging.getLogger("patchbay.upstream")

GARBAGE_LOG_EVERY = 1000
READ_CHUNK = 256 * 1024


class StdioChannel:
    cancels_by_closing = False

    def __init__(
        self, process: StdioEndpoint, max_line_bytes: int, *, on_close: Callable[[], None] = lambda: None
    ) -> None:
        self.process = process
        self.max_line_bytes = max_line_bytes
        self.on_close = on_close
        self.garbage_lines = 0
        self._writer: StreamWriterLike | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._session: UpstreamSession | None = None

    async def start(self, session: UpstreamSession) -> None:
        """Start (or attach to) the process and read its stdout.

        Raises:
            UpstreamUnavailable: the process cannot be started (crash loop, command not found).
        """
        self._session = session
        try:
            reader, self._writer = await self.process.start()
        except UpstreamUnavailable:
            raise
        except Exception as exc:  # ProcessUnavailable and OSError from the supervisor
            raise UpstreamUnavailable(str(exc) or type(exc).__name__) from None
        self._reader_task = asyncio.ensure_future(self._read(reader, session))

    async def send(self, message: dict[str, Any], call: Call | None) -> None:
        session = self._session
        writer = self._writer
        if session is None or writer is None or session.lost is not None or writer.is_closing():
            raise SessionLost(
                session.lost if session and session.lost else "the process is not running", delivered=False
            )
        if call is not None:
            call.delivered = True
            self._hold(call)
        self.process.touch()
        try:
            writer.write(orjson.dumps(message) + b"\n")
            await writer.drain()
        except (ConnectionError, OSError) as exc:
            # The bytes may or may not have reached the process: only an unsent request is retried.
            raise SessionLost(f"the process's stdin closed: {type(exc).__name__}", delivered=call is None) from None

    def _hold(self, call: Call) -> None:
        # While a request awaits its answer the child is in use: a call silent for longer than idle_shutdown
        # (a slow tool) must not have its process stopped as idle under it. Released when the call ends, however.
        # A listen stream is not a call in use: it alone must not keep an idle child running.
        in_use = getattr(self.process, "in_use", None)
        if in_use is None or call.background:
            return
        hold = in_use()
        hold.__enter__()
        call.future.add_done_callback(lambda _done: hold.__exit__(None, None, None))

    async def _read(self, reader: asyncio.StreamReader, session: UpstreamSession) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = await reader.read(READ_CHUNK)
                if not chunk:
                    break
                buffer += chunk
                start = 0
                while (end := buffer.find(b"\n", start)) >= 0:
                    if end - start > self.max_line_bytes:
                        return self._oversized(session)
                    line = bytes(buffer[start:end])
                    start = end + 1
                    await self._line(line, session)
                del buffer[:start]
                if len(buffer) > self.max_line_bytes:
                    return self._oversized(session)
            code = await self.process.wait_exit()
            reason = "the process exited" + (f" with code {code}" if code is not None else "")
            session.lose(reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            session.lose(f"reading the process's output failed: {type(exc).__name__}")

    async def _line(self, line: bytes, session: UpstreamSession) -> None:
        if not line.strip():
            return
        try:
            message = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.garbage_lines += 1
            if self.garbage_lines % GARBAGE_LOG_EVERY == 1:
                log.warning(
                    "upstream process wrote a line that is not JSON-RPC to stdout; skipped (%d so far)",
                    self.garbage_lines,
                )
            return
        self.process.touch()
        if isinstance(message, dict) and "method" not in message:
            session.resolve(message)  # an answer, as nearly always: nothing to route or await
        else:
            await session.receive(message, None)

    def _oversized(self, session: UpstreamSession) -> None:
        session.lose(f"the process sent a message larger than {self.max_line_bytes} bytes; the session was ended")
        self.on_close()  # the next session starts a fresh process
        session.spawn(self.process.stop())

    async def close(self) -> None:
        task = self._reader_task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.on_close()
        await self.process.stop()
