"""The audit recorder: every call and event goes into the trail through one writer, durably before it matters.

On the event loop a call costs a small dict, an append to a queue and a wait for a future; redaction, canonical
JSON and hashing run on the writer's thread. The writer commits whatever is queued as soon as it is free, so the
records that arrive during one commit share the next (group commit). Durability rules (docs/audit.md):

- a write tool's *intent* is committed before the tool runs (:meth:`AuditRecorder.intent`); when it cannot be,
  the call is refused and nothing runs;
- a write's *completion* record is committed before its response is sent (:meth:`AuditRecorder.finish`);
- a read's record may still be queued when its response is sent, but only while the writer keeps up: no queued
  record older than ``[audit] read_window_ms``; otherwise the read waits for its commit, at most that window.
  With ``read_window_ms = 0`` every read waits for its commit (up to ``timeout_ms``).

Nothing waits forever: the queue is bounded (``queue_size``), a write waits at most ``timeout_ms`` for its intent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import secrets
import sqlite3
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, event

from patchbay.definitions import ToolResult
from patchbay.errors import ConfigError
from patchbay.gate.audit_redact import Redactor
from patchbay.gate.audit_store import append_rows
from patchbay.gate.calls import Call
from patchbay.protocol.scope import CallScope
from patchbay.settings import AuditSettings
from patchbay.store import upgrade, write_path
from patchbay.store.writes import is_memory

__all__ = ["AuditRecorder", "AuditUnavailable", "principal_fields"]

log = logging.getLogger("patchbay.audit")
# Records per transaction at most: bounds one commit's time, which other writers of the store wait for.
BATCH_MAX = 512
# The newest records an in-memory trail keeps (no [store] and no sign-in: nothing is written to disk).
MEMORY_RECORDS = 10_000


class AuditUnavailable(Exception):
    """A record could not be stored; ``str(error)`` says why, in words safe to show a client."""


@dataclass(slots=True)
class _Pending:
    record: dict[str, Any]
    schema: Any  # the tool's input schema (redaction), or None
    loop: asyncio.AbstractEventLoop | None
    future: asyncio.Future[int] | None
    at: float = 0.0  # time.monotonic() when queued


def principal_fields(principal: Any) -> dict[str, Any]:
    """Who called, as the trail records it: never a token, a claim set or a secret."""
    if principal is None:
        return {"subject": None}
    return {
        "subject": getattr(principal, "subject", str(principal)),
        "principal_kind": getattr(principal, "kind", None),
        "username": getattr(principal, "username", None),
        "client_id": getattr(principal, "client_id", None),
        "client_name": getattr(principal, "client_name", None),
        "roles": sorted(getattr(principal, "roles", ())),
    }


def _new_ref(scope: CallScope) -> str:
    # Programmatic calls (stdio, tests) come without an HTTP request id: one per call, shared by its records.
    scope.request_ref = secrets.token_hex(6)
    return scope.request_ref


def _refusal(reason: str) -> dict[str, Any]:
    return ToolResult.error(f"Cannot record this call: {reason}; nothing was run.").to_wire()


def _cause(exc: BaseException) -> str:
    # The driver's first line names the cause ("database or disk is full", "attempt to write a readonly
    # database", "database is locked") without the SQL or its parameters, which may hold argument values.
    origin = getattr(exc, "orig", None) or exc
    return (str(origin).splitlines()[0] if str(origin) else type(origin).__name__)[:200]


def _reason(exc: BaseException) -> str:
    return f"the audit store cannot be written ({_cause(exc)})"


class AuditRecorder:
    """The server's audit trail: ``intent``/``finish`` for calls (the Dispatcher's ``audit``), ``event`` for the
    rest. ``problem`` is None while records are being stored, else the reason they are not (``/readyz``)."""

    def __init__(self, engine: Engine, settings: AuditSettings, *, checkpointer: Any = None) -> None:
        self.settings = settings
        self.checkpointer = checkpointer
        self.problem: str | None = None
        self.written = 0
        self.lost = 0  # records that could not be stored
        self.late = 0  # calls answered before their record was committed (read window passed, store failing)
        # name -> the tool's input schema, for redaction (the app sets it to look in the catalog).
        self.schemas: Any = None
        # Background retention (patchbay.gate.audit_retention.Pruner), started and stopped with the recorder.
        self.pruner: Any = None
        self.engine = engine
        self.source = "<config>"  # the config file, for errors
        self._path = write_path(engine)
        self._paramstyle = engine.dialect.paramstyle
        # The writer's pooled connection between two batches that follow each other (_transaction).
        self._held: Any = None
        self._sqlite = engine.url.get_backend_name() == "sqlite"
        self._redact = Redactor(settings.redact_fields, settings.max_argument_bytes)
        self._lock = threading.RLock()
        self._queue: list[_Pending] = []
        self._busy = False
        self._closed = False  # aclose gave up on what was left: nothing is written any more
        # PostgreSQL (and in-memory SQLite) run a job on the submitting thread: give them a thread of their own.
        self._thread = None if self._path.serial else ThreadPoolExecutor(1, thread_name_prefix="patchbay-audit")
        self._intent_seconds = settings.timeout_ms / 1000
        self._read_seconds = settings.read_window_ms / 1000 or self._intent_seconds
        self._read_window = settings.read_window_ms / 1000
        # When the oldest record of the commit under way was queued (None: no commit under way).
        self._flight_since: float | None = None
        # Records nobody waits for (reads inside their window) linger this long so that they share a commit: one
        # writer wake-up per batch instead of per call, which is what the event loop feels (the GIL), not the SQL.
        self._linger = min(self._read_window / 4, 0.01)
        self._flush_handle: asyncio.TimerHandle | None = None
        # An in-memory store ends with the process and nobody can read it from outside: keep only its newest records.
        self._memory_cap = MEMORY_RECORDS if is_memory(engine.url) else None
        if settings.synchronous == "full":
            sync_fully(engine)

    # -- calls (the Dispatcher's hooks) ----------------------------------------------------------------------

    async def intent(self, call: Call) -> dict[str, Any] | None:
        """Before a call runs. A write: None once its intent record is committed, else the result refusing the
        call. A read: refused only while recording fails and ``on_failure`` is refuse_all."""
        if not call.write:
            if self.problem is not None and self.settings.on_failure == "refuse_all":
                call.outcome, call.detail = "unrecorded", self.problem
                return _refusal(self.problem)
            return None
        try:
            call.intent_seq = await self._wait(self._call_record(call, "intent"), call, self._intent_seconds)
        except AuditUnavailable as exc:
            call.outcome, call.detail = "unrecorded", str(exc)
            return _refusal(str(exc))
        return None

    async def finish(self, call: Call) -> dict[str, Any] | None:
        """After the result is known, before the response. A write: returns once its record is committed. A read:
        at once while the writer keeps up within read_window_ms, else once committed, at most that window.

        Returns a refusal to send instead only for a read whose record failed under refuse_all; a write that ran
        keeps its result (its intent is stored; a retry would repeat the effect)."""
        record = self._call_record(call, "done")
        if call.outcome == "unrecorded":
            self._enqueue(record, None, None)  # best effort: the call never ran, nothing waits for this record
            return None
        wait = self._intent_seconds if call.write else self._read_seconds
        try:
            await self._wait(record, call, wait, early=not call.write and self._read_window > 0)
        except AuditUnavailable as exc:
            if call.write or self.settings.on_failure == "serve_reads":
                # Counted, not logged per call: a slow disk would flood the log. /readyz shows the count.
                self.late += 1
                log.debug("audit: %s %s answered before its record was stored: %s", call.method, call.name, exc)
                return None
            call.outcome, call.detail = "unrecorded", str(exc)
            return _refusal(str(exc))
        return None

    def event(self, method: str, **fields: Any) -> None:
        """Record an event (``auth.sign_in``, ``manifest.approve`` ...) from any thread; nothing waits for it."""
        record = {"kind": "event", "ts": time.time(), "method": method, **fields}
        self._enqueue(record, None, None)

    def health(self) -> dict[str, Any]:
        with self._lock:
            queued = len(self._queue)
        state: dict[str, Any] = {
            "ok": self.problem is None,
            "written": self.written,
            "lost": self.lost,
            "late": self.late,
            "queued": queued,
        }
        if self.problem is not None:
            state["detail"] = self.problem
        return state

    async def open(self) -> None:
        """Bring the audit tables up to date and start retention.

        Raises:
            ConfigError: the store cannot be opened or migrated (the server must not serve unrecorded).
        """
        try:
            await self._own_thread(functools.partial(upgrade, self.engine, "audit@head"))
        except Exception as exc:
            raise ConfigError(
                f"[audit] records every call in the store, which cannot be used: {_cause(exc)}. Fix [store] url, "
                "or set [audit] enabled = false to serve without an audit trail.",
                file=self.source,
                key="store.url",
            ) from None
        if self.pruner is not None:
            self.pruner.start()

    async def aclose(self) -> None:
        """Write what is queued (waiting at most timeout_ms), then stop: records still queued then are lost and
        counted, and no batch starts after this (the engine is disposed; the writer's kept connection returned)."""
        if self.pruner is not None:
            await self.pruner.stop()
        await asyncio.to_thread(self._drain)
        with self._lock:
            self._closed = True
            left, self._queue = self._queue, []
        if left:
            reason = (
                f"the audit store did not answer within {self._intent_seconds * 1000:.0f} ms of the server stopping"
            )
            log.error("audit: %d records not stored: %s", len(left), reason)
            self.lost += len(left)
            _settle(left, [0] * len(left), AuditUnavailable(reason))
        if self.checkpointer is not None:
            # A checkpoint for the records written since the last one: a tail cut after a clean stop is caught.
            try:
                await asyncio.to_thread(self.checkpointer.flush)
            except OSError as exc:
                log.error("audit: could not write the closing checkpoint: %s", exc)
        await self._own_thread(self._release)
        await self._own_thread(self.engine.dispose)
        if self._thread is not None:
            self._thread.shutdown(wait=False)

    def _release(self) -> None:
        # On the writer's thread, after the batch under way (if any): the connection kept for a next batch that
        # will never start goes back to the pool before the pool is disposed.
        held, self._held = self._held, None
        if held is not None:
            held.close()

    async def _own_thread(self, fn: Any) -> None:
        # An in-memory SQLite database is one connection: only the writer's own thread ever touches it.
        if self._thread is None:
            await asyncio.to_thread(fn)
        else:
            await asyncio.wrap_future(self._thread.submit(fn))

    def _drain(self) -> None:
        """Wait (bounded by timeout_ms) for what is queued to be written."""
        deadline = time.monotonic() + self._intent_seconds
        with self._lock:
            self._kick()  # what lingers goes now
        while time.monotonic() < deadline:
            with self._lock:
                if not self._busy and not self._queue:
                    return
            time.sleep(0.005)

    # -- internals -------------------------------------------------------------------------------------------

    def _call_record(self, call: Call, phase: str) -> dict[str, Any]:
        scope = call.scope
        record: dict[str, Any] = {
            "kind": "call",
            "phase": phase,
            "ts": call.at if phase == "intent" else time.time(),
            "request_ref": scope.request_ref or _new_ref(scope),
            "jsonrpc_id": scope.request_id,
            "method": call.method,
            "name": call.name,
            "era": scope.era,
            "transport": scope.transport,
            "protocol_version": scope.version,
            "client_info": scope.client_info,
            "write": call.write,
            **principal_fields(scope.principal),
        }
        if call.tool_digest:
            record["tool_digest"] = call.tool_digest
        if call.decision is not None:
            record["decision"] = {"effect": call.decision.effect, "rule": call.decision.rule}
        if call.approval_id is not None:
            record["approval_id"] = call.approval_id
        if phase == "intent":
            record["outcome"] = "intent"
            record["arguments"] = call.arguments
            return record
        if call.intent_seq is None:
            record["arguments"] = call.arguments  # a write's arguments are in its intent record
        else:
            record["intent_seq"] = call.intent_seq
        record["outcome"] = call.outcome
        record["detail"] = call.detail
        record["latency_ms"] = round((time.perf_counter() - call.started) * 1000, 3)
        record["result_bytes"] = call.result_bytes
        return record

    async def _wait(self, record: dict[str, Any], call: Call, seconds: float, *, early: bool = False) -> int:
        """Queue ``record`` and wait for its commit, at most ``seconds``. ``early`` (a read with a window): return
        at once while the writer keeps up, i.e. no queued record is older than the read window."""
        schema = self.schemas(call.name) if self.schemas is not None and call.method == "tools/call" else None
        loop = asyncio.get_running_loop()
        if early and self._queued_in_window(record, schema, loop):
            return 0
        future: asyncio.Future[int] = loop.create_future()
        # A waiter that gave up (timeout, cancellation) no longer reads the future: mark its error as seen.
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._enqueue(record, schema, future, loop)
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            reason = f"the audit store did not answer within {seconds * 1000:.0f} ms"
            if seconds >= self._intent_seconds and self.problem is None:
                # Stuck, not just slower than a read's window: /readyz says so until a commit succeeds again.
                log.error("audit: %s", reason)
                self.problem = reason
            raise AuditUnavailable(reason) from None

    def _enqueue(
        self,
        record: dict[str, Any],
        schema: Any,
        future: asyncio.Future[int] | None,
        loop: asyncio.AbstractEventLoop | None = None,
        at: float | None = None,
    ) -> None:
        with self._lock:
            if len(self._queue) >= self.settings.queue_size or self._closed:
                self.lost += 1
                if future is not None:
                    reason = (
                        "the audit trail is closed"
                        if self._closed
                        else "the audit queue is full (the store is too slow)"
                    )
                    future.set_exception(AuditUnavailable(reason))
                return
            self._queue.append(_Pending(record, schema, loop, future, time.monotonic() if at is None else at))
            if future is None and loop is not None and self._linger > 0:
                if self._flush_handle is None and not self._busy:
                    self._flush_handle = loop.call_later(self._linger, self._flush)
                return
            self._kick()

    def _flush(self) -> None:
        with self._lock:
            self._flush_handle = None
            self._kick()

    def _queued_in_window(self, record: dict[str, Any], schema: Any, loop: asyncio.AbstractEventLoop) -> bool:
        """Queue a read's ``record`` with nobody waiting for its commit (no future, no wake-up of the event loop
        when it lands) if the writer keeps up: no record queued or in flight is older than the read window. One
        lock and one clock reading for the check and the append. False (nothing queued): the read must wait."""
        if self.problem is not None:
            return False
        now = time.monotonic()
        with self._lock:
            oldest = self._flight_since
            if self._queue and (oldest is None or self._queue[0].at < oldest):
                oldest = self._queue[0].at
            if oldest is not None and now - oldest >= self._read_window:
                return False
            self._enqueue(record, schema, None, loop, now)  # the lock is re-entrant
        return True

    def _kick(self) -> None:
        """Start a commit of what is queued unless one is running (its end starts the next). Holds the lock."""
        if self._busy or not self._queue or self._closed:
            return
        batch, self._queue = self._queue[:BATCH_MAX], self._queue[BATCH_MAX:]
        self._busy = True
        self._flight_since = batch[0].at
        done: Future[list[tuple[int, str]]] = (
            self._path.submit(functools.partial(self._write_on, batch))
            if self._thread is None
            else self._thread.submit(self._transaction, batch)
        )
        done.add_done_callback(functools.partial(self._done, batch))

    def _write_on(self, batch: list[_Pending], connection: Connection) -> list[tuple[int, str]]:
        # A SQLite file: one job of its write path's group commit, beside the other writers of this process.
        return self._write(batch, connection.connection.driver_connection)

    def _transaction(self, batch: list[_Pending]) -> list[tuple[int, str]]:
        """One batch in one transaction on the recorder's own thread (PostgreSQL, in-memory SQLite).

        Driven on the driver's connection, checked out of the engine's pool as usual (so its checkout hooks run):
        a SQLAlchemy Connection's begin and commit, their events and the BEGIN hook cost the writer more than the
        statements themselves, and it shares the event loop's GIL (docs/performance.md, audit trail). While more
        records wait, the connection is kept for the next batch (a checkout and its return cost four times the
        BEGIN and COMMIT of an in-memory store); it goes back to the pool, here on the writer's thread, once the
        queue is empty or a batch fails.
        """
        pooled, self._held = self._held or self._path.engine.raw_connection(), None
        try:
            driver: Any = pooled.driver_connection
            if self._sqlite:  # the connect hook hands transaction control to us (patchbay.store.engine)
                driver.execute("BEGIN IMMEDIATE")
            try:
                linked = self._write(batch, driver)
                driver.commit()
            except BaseException:
                try:
                    driver.rollback()
                except Exception:  # a broken connection (the server went away): the pool opens a new one
                    pooled.invalidate()
                raise
        except BaseException:
            pooled.close()
            raise
        with self._lock:
            if self._queue:  # _done starts the next batch at once: it runs on this connection
                self._held, pooled = pooled, None
        if pooled is not None:
            pooled.close()
        return linked

    def _write(self, batch: list[_Pending], driver: Any) -> list[tuple[int, str]]:
        records = []
        for pending in batch:
            record = pending.record  # the recorder's own dict: nobody else holds it, so it is redacted in place
            if "arguments" in record:
                try:
                    record["arguments"] = self._redact(record["arguments"], pending.schema)
                except Exception as exc:  # one odd value must not cost the batch its records
                    record["arguments"] = {"[unrecordable]": type(exc).__name__}
            records.append(record)
        linked = append_rows(driver, self._paramstyle, records)
        if self._memory_cap is not None and linked and linked[-1][0] % 1000 < len(linked):
            cursor = driver.cursor()
            try:  # qmark: an in-memory store is SQLite
                cursor.execute("DELETE FROM audit_records WHERE seq <= ?", (linked[-1][0] - self._memory_cap,))
            finally:
                cursor.close()
        return linked

    def _done(self, batch: list[_Pending], done: Future[list[tuple[int, str]]]) -> None:
        error = done.exception()
        if error is None:
            linked = done.result()
            self.written += len(linked)
            if self.problem is not None:
                log.warning("audit: recording again")
            self.problem = None
            if self.checkpointer is not None and linked:
                self._checkpoint(*linked[-1])
            _settle(batch, [seq for seq, _hash in linked], None)
        else:
            reason = _reason(error)
            if self.problem != reason:
                log.error("audit: %d records not stored: %s", len(batch), reason)
            self.problem = reason
            self.lost += len(batch)
            _settle(batch, [0] * len(batch), AuditUnavailable(reason))
        with self._lock:
            self._busy = False
            self._flight_since = None
            self._kick()

    def _checkpoint(self, seq: int, digest: str) -> None:
        try:
            self.checkpointer.maybe(seq, digest)
        except Exception:  # a checkpoint is evidence beside the trail: its failure must not stop recording
            log.exception("audit: checkpoint at seq %d failed", seq)


_SYNCED = "patchbay_audit_full_sync"


def sync_fully(engine: Engine) -> None:
    """``[audit] synchronous = "full"``: every commit of the audit writer reaches the disk before it counts.

    SQLite: ``PRAGMA synchronous=FULL`` on the file's writer connection (sqlite.org/pragma.html#pragma_synchronous;
    it cannot change inside a transaction, so it is set as the connection is checked out, before BEGIN). That
    connection carries every write of this process to the file, so the other writers' commits sync too.
    PostgreSQL: ``synchronous_commit = on`` for the recorder's sessions, whatever the server's default.
    In-memory SQLite has no disk: nothing to do.
    """
    backend = engine.url.get_backend_name()
    if backend == "sqlite" and is_memory(engine.url):
        return
    pool = write_path(engine).engine.pool if backend == "sqlite" else engine.pool
    if not event.contains(pool, "checkout", _full_sync):
        event.listen(pool, "checkout", _full_sync)


def _full_sync(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    if record.info.get(_SYNCED):
        return
    cursor = dbapi_connection.cursor()
    try:
        if isinstance(dbapi_connection, sqlite3.Connection):  # no transaction is open at checkout
            cursor.execute("PRAGMA synchronous=FULL")
        else:  # a session setting: committed, so the pool's reset (a rollback) keeps it
            cursor.execute("SET synchronous_commit TO on")
            dbapi_connection.commit()
    finally:
        cursor.close()
    record.info[_SYNCED] = True


def _settle(batch: list[_Pending], seqs: list[int], error: BaseException | None) -> None:
    """Resolve the waiters of a committed (or failed) batch: one wake-up per event loop, not one per record."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[int], int]]] = {}
    for pending, seq in zip(batch, seqs, strict=True):
        if pending.future is not None and pending.loop is not None:
            by_loop.setdefault(pending.loop, []).append((pending.future, seq))
    for loop, waiters in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_resolve_all, waiters, error)


def _resolve_all(waiters: list[tuple[asyncio.Future[int], int]], error: BaseException | None) -> None:
    for future, seq in waiters:
        _resolve(future, seq, error)


def _resolve(future: asyncio.Future[int], seq: int, error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(seq)
    else:
        future.set_exception(error)


def build_recorder(settings: Any, catalog: Any) -> AuditRecorder | None:
    """The server's recorder for ``settings`` (a :class:`patchbay.settings.Settings`), or None when ``[audit]
    enabled = false``. Its store is ``[store] url``; :meth:`AuditRecorder.open` migrates it.

    Raises:
        ConfigError: the checkpoint key is configured but cannot be read.
    """
    if not settings.audit.enabled:
        return None
    from patchbay.gate.audit_chain import checkpoint_path, checkpointer, load_key
    from patchbay.gate.audit_retention import Pruner
    from patchbay.store import create_engine
    from patchbay.store.writes import is_memory

    url = settings.store_url
    if settings.auth.mode == "none" and "store" not in settings.model_fields_set:
        # As the manifest keeper (docs/manifest.md): a server with neither sign-in nor a [store] writes nothing to
        # disk. Its calls are still recorded, in memory, for as long as it runs.
        log.info("audit: no [store] configured; the audit trail is kept in memory only")
        url = "sqlite://"
    engine = create_engine(url)
    if is_memory(engine.url):
        # One connection, used by the writer's thread only: no pruner beside it (nor checkpoints of a trail that
        # ends with the process).
        return _with_schemas(AuditRecorder(engine, settings.audit), settings, catalog)
    recorder = AuditRecorder(engine, settings.audit, checkpointer=checkpointer(settings, os.environ))
    audit = settings.audit
    recorder.pruner = Pruner(
        engine,
        audit.keep_days,
        interval=audit.prune_interval_seconds,
        checkpoints=checkpoint_path(audit, settings.store_url, settings.base_dir),
        key=load_key(audit, settings.base_dir, os.environ, settings.source),
    )
    return _with_schemas(recorder, settings, catalog)


def _with_schemas(recorder: AuditRecorder, settings: Any, catalog: Any) -> AuditRecorder:
    recorder.source = settings.source

    def schema(name: str) -> Any:
        tool = catalog.tools.get(name)
        return tool.input_schema if tool is not None else None

    recorder.schemas = schema
    return recorder
