"""One writer path per database: in a process, writes to a SQLite file take turns on one connection.

SQLite lets one transaction write at a time. When threads each open a write transaction on a connection of
their own, the ones that lose wait in SQLite's busy handler, which is not woken when the lock comes free: it
sleeps and polls with growing pauses (up to 100 ms each). Sixteen clients writing 60 times a second saw p99
latencies of about a second that way. Here every write of the process to one SQLite file, whatever engine it
comes through (the auth server, the kanban connector, later the audit trail), uses that file's single writer
connection: a writer that must wait is woken the moment the connection is handed back.

Two ways in, sharing that connection:

- *Jobs*: a sync function taking a ``Connection``, given to ``WritePath.run_sync`` (from a worker thread) or
  ``await WritePath.run`` (from async code, which then holds no thread while it waits). A dedicated thread runs
  the queued jobs, several per transaction when they queue up (group commit: one disk sync for all of them),
  each inside a SAVEPOINT, so one job's exception rolls back only that job and reaches only its caller. A
  caller's answer comes after the COMMIT, so a result it sees survives a crash of the process (a power cut may
  still take the last commits: SQLite files run with ``synchronous=NORMAL``, see ``patchbay.store.engine``).
- *Sessions*: ``writer(engine)`` for code that writes in a ``with`` block on its own thread.

Reads keep the engine's own pool: in WAL mode they never wait for the writer. Other processes on the same file
still meet SQLite's lock and busy timeout. PostgreSQL locks rows, not the database, so its writes keep the
engine's normal pool behind the same API (a job is then simply a transaction on the caller's thread).
"""

from __future__ import annotations

import asyncio
import functools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import anyio.to_thread
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.pool import QueuePool

T = TypeVar("T")
# Execution option read by the BEGIN hook in ``engine``: "IMMEDIATE" takes SQLite's write lock at BEGIN.
BEGIN_OPTION = "patchbay_sqlite_begin"
# Jobs per transaction at most: bounds how long one commit keeps the other writers (sessions) waiting.
BATCH_MAX = 64
# How long a write waits for its turn before failing (a session: sqlalchemy.exc.TimeoutError), and SQLite's
# busy timeout for writers in other processes.
WAIT_SECONDS = 10.0
# An idle writer thread exits after this many seconds (the next job starts another): nothing lingers after
# the engines of a file are gone.
IDLE_SECONDS = 2.0


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Connection], T]
    future: Future[T]


_SAVEPOINT = "SAVEPOINT patchbay_job"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT patchbay_job"
_RELEASE_SAVEPOINT = "RELEASE SAVEPOINT patchbay_job"
_STOP = None  # queued by ``close``: the writer thread finishes what came before it, then exits


class WritePath:
    """How writes reach one database: ``engine`` for sessions, ``run``/``run_sync`` for jobs."""

    def __init__(self, engine: Engine, *, serial: bool) -> None:
        self.engine = engine
        """Write transactions only: BEGIN IMMEDIATE, and on a SQLite file the one writer connection."""
        self.serial = serial
        self._guard = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        # Engines using this path and not disposed: the last one disposed closes it (see ``write_path``).
        self.users: weakref.WeakSet[Engine] = weakref.WeakSet()

    def submit(self, job: Callable[[Connection], T]) -> Future[T]:
        """Queue ``job``; the future holds what it returned or raised, once its transaction is committed.

        A job must not wait for another write (it would wait for itself): its work is all on ``connection``.
        """
        future: Future[T] = Future()
        if not self.serial:
            if future.set_running_or_notify_cancel():
                _settle(future, functools.partial(_transaction, self.engine, job))
            return future
        with self._guard:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, args=(self._jobs,), name="patchbay-writer")
                self._thread.daemon = True  # close() drains it; a daemon only so a crash cannot hang exit
                self._thread.start()
            self._jobs.put(_Job(job, future))
        return future

    def run_sync(self, job: Callable[[Connection], T]) -> T:
        """Run ``job`` in a write transaction and return what it returned.

        Raises:
            Exception: whatever ``job`` raised (its changes are rolled back), or the SQLAlchemyError of a failed
                BEGIN or COMMIT.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write job cannot wait for another write job; do the work on its connection")
        return self.submit(job).result()

    async def run(self, job: Callable[[Connection], T]) -> T:
        """``run_sync`` for async code. Cancelled before its turn, the job never runs; after, it completes.

        Raises:
            Exception: as ``run_sync``.
        """
        if not self.serial:
            return await anyio.to_thread.run_sync(functools.partial(self.run_sync, job))
        future = self.submit(job)
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # another event loop (trio): wait in a worker thread
            return await anyio.to_thread.run_sync(future.result)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Finish every job queued so far, stop the writer thread and close the idle connection.

        The path stays usable: a later job starts a new writer thread.
        """
        with self._guard:
            thread, jobs = self._thread, self._jobs
            self._thread, self._jobs = None, queue.SimpleQueue()
            if thread is not None:
                jobs.put(_STOP)
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.engine.dispose()

    def _work(self, jobs: queue.SimpleQueue[_Job[Any] | None]) -> None:
        while True:
            batch: list[_Job[Any]] = []
            try:
                item = jobs.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._guard:  # submit() queues under the guard: nothing can slip in after this check
                    if jobs.empty():
                        if self._jobs is jobs:
                            self._thread = None
                        return
                continue
            while item is not _STOP:
                batch.append(item)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = jobs.get_nowait()
                except queue.Empty:
                    break
            live = [job for job in batch if job.future.set_running_or_notify_cancel()]
            if live:
                self._commit(live)
            if item is _STOP:
                return

    def _commit(self, batch: list[_Job[Any]]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        try:
            with self.engine.connect() as connection, connection.begin():
                for job in batch:
                    outcomes.append(_in_savepoint(connection, job.fn))
        except Exception as exc:  # BEGIN, a savepoint or COMMIT failed: nothing of this batch is stored
            for job in batch:
                job.future.set_exception(exc)
            return
        for job, (value, error) in zip(batch, outcomes, strict=True):
            if error is None:
                job.future.set_result(value)
            else:
                job.future.set_exception(error)


def _in_savepoint(connection: Connection, fn: Callable[[Connection], T]) -> tuple[T | None, BaseException | None]:
    # Fixed statements straight to sqlite3 (this path serves SQLite files only): SQLAlchemy's begin_nested()
    # compiles its SAVEPOINT and RELEASE anew on every call, a tenth of a millisecond each on the thread every
    # write waits for. SQLite keeps the savepoint after ROLLBACK TO, hence the RELEASE on both paths. Should
    # either fail (SQLite gave up the whole transaction), the exception ends the batch: nothing of it is stored.
    sqlite: Any = connection.connection.driver_connection  # a sqlite3.Connection: this path is SQLite only
    sqlite.execute(_SAVEPOINT)
    try:
        value = fn(connection)
    except Exception as exc:  # the job's own failure: rolled back to its savepoint, reported to its caller only
        sqlite.execute(_ROLLBACK_TO_SAVEPOINT)
        sqlite.execute(_RELEASE_SAVEPOINT)
        return None, exc
    sqlite.execute(_RELEASE_SAVEPOINT)
    return value, None


def _transaction(engine: Engine, job: Callable[[Connection], T]) -> T:
    with engine.connect() as connection, connection.begin():
        return job(connection)


def _settle(future: Future[T], fn: Callable[[], T]) -> None:
    try:
        future.set_result(fn())
    except Exception as exc:
        future.set_exception(exc)


# SQLite's write lock belongs to the file, so the path is shared by every engine on that file in this process.
# Held weakly: the path lives as long as an engine that uses it.
_lock = threading.Lock()
_by_engine: weakref.WeakKeyDictionary[Engine, WritePath] = weakref.WeakKeyDictionary()
_by_file: weakref.WeakValueDictionary[str, WritePath] = weakref.WeakValueDictionary()


def write_path(engine: Engine) -> WritePath:
    """The write path for ``engine``'s database (the same object for every engine on one SQLite file)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or is_memory(url):
        # PostgreSQL and others keep their pool; an in-memory SQLite engine already has a single connection.
        return WritePath(engine.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), serial=False)
    with _lock:
        found = _by_engine.get(engine)
        if found is not None:
            found.users.add(engine)
            return found
        path = _for_file(url)
        _by_engine[engine] = path
        path.users.add(engine)
        event.listen(engine, "engine_disposed", functools.partial(_disposed, path))
        return path


def _disposed(path: WritePath, engine: Engine) -> None:
    # When the last engine on the file is disposed (shutdown, tests), drain the jobs and close the writer
    # connection, so no file stays open after its engines are gone. Not sooner: other engines' writes may be
    # waiting for that connection. A later write opens it again.
    with _lock:
        path.users.discard(engine)
        last = not path.users
    if last:
        path.close()


def _for_file(url: URL) -> WritePath:
    key = os.path.realpath(url.database or "")
    found = _by_file.get(key)
    if found is not None:
        return found
    from patchbay.store.engine import install_sqlite_hooks  # the hooks live with create_engine

    single = sa.create_engine(url, poolclass=QueuePool, pool_size=1, max_overflow=0, pool_timeout=WAIT_SECONDS)
    install_sqlite_hooks(single, memory=False)
    path = WritePath(single.execution_options(**{BEGIN_OPTION: "IMMEDIATE"}), serial=True)
    _by_file[key] = path
    return path


def is_memory(url: URL) -> bool:
    database = url.database or ""
    return database in ("", ":memory:") or url.query.get("mode") == "memory"
