"""The store's one writer path (patchbay.store.writes) on real SQLite files, under real concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import sqlalchemy as sa
from sqlalchemy import Connection, text

from patchbay.store import create_engine, write_path, writer

pytestmark = pytest.mark.anyio
WRITERS = 16
EACH = 25


def _engine(tmp_path: Path) -> sa.Engine:
    engine = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with writer(engine).begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, who TEXT, n INTEGER)"))
    return engine


def _insert(who: str, n: int) -> Callable[[Connection], int]:
    def job(connection: Connection) -> int:
        cursor = connection.execute(text("INSERT INTO notes (who, n) VALUES (:who, :n)"), {"who": who, "n": n})
        return int(cursor.lastrowid or 0)

    return job


def _count(engine: sa.Engine, where: str = "1 = 1") -> int:
    with engine.connect() as connection:
        return int(connection.execute(text(f"SELECT count(*) FROM notes WHERE {where}")).scalar_one())


async def test_sixteen_tasks_writing_at_once_all_commit(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    path = write_path(engine)
    ids: list[int] = []

    async def client(who: int) -> None:
        for n in range(EACH):
            ids.append(await path.run(_insert(f"c{who}", n)))

    async with anyio.create_task_group() as group:
        for who in range(WRITERS):
            group.start_soon(client, who)
    assert _count(engine) == WRITERS * EACH
    assert sorted(ids) == list(range(1, WRITERS * EACH + 1))
    engine.dispose()


def test_threads_mixing_sessions_and_jobs_on_two_engines_never_see_a_locked_database(tmp_path: Path) -> None:
    # Two engines on one file, as the auth server and the kanban connector have: both share the file's path.
    first, second = _engine(tmp_path), create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    assert write_path(first) is write_path(second)
    errors: list[BaseException] = []

    def work(who: int) -> None:
        engine = first if who % 2 else second
        try:
            for n in range(EACH):
                if n % 2:
                    write_path(engine).run_sync(_insert(f"t{who}", n))
                else:
                    with writer(engine).begin() as connection:
                        connection.execute(text("INSERT INTO notes (who, n) VALUES (:w, :n)"), {"w": f"t{who}", "n": n})
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(who,)) for who in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert _count(first) == WRITERS * EACH
    first.dispose()
    second.dispose()


def test_every_write_of_a_file_uses_one_connection(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    seen: set[int] = set()

    def job(connection: Connection) -> None:
        seen.add(id(connection.connection.dbapi_connection))

    threads = [threading.Thread(target=write_path(engine).run_sync, args=(job,)) for _ in range(WRITERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with writer(engine).connect() as connection:
        seen.add(id(connection.connection.dbapi_connection))
    assert len(seen) == 1
    engine.dispose()


async def test_a_failing_job_reaches_its_caller_and_spoils_no_other_job(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    path = write_path(engine)

    def broken(connection: Connection) -> None:
        connection.execute(text("INSERT INTO notes (who, n) VALUES ('broken', 1)"))
        raise ValueError("no such card")

    outcomes: dict[str, object] = {}

    async def attempt(name: str, job: Callable[[Connection], object]) -> None:
        try:
            outcomes[name] = await path.run(job)
        except ValueError as exc:
            outcomes[name] = exc

    # Queued together, so they are likely to share one transaction (group commit): each keeps its own fate.
    async with anyio.create_task_group() as group:
        for i in range(10):
            group.start_soon(attempt, f"good{i}", _insert("good", i))
            group.start_soon(attempt, f"bad{i}", broken)
    assert all(isinstance(outcomes[f"bad{i}"], ValueError) for i in range(10))
    assert str(outcomes["bad0"]) == "no such card"
    assert _count(engine, "who = 'broken'") == 0
    assert _count(engine, "who = 'good'") == 10
    assert await path.run(_insert("after", 1)) > 0
    engine.dispose()


def test_jobs_queued_behind_a_busy_writer_share_one_commit_and_a_failing_one_undoes_only_its_own_rows(
    tmp_path: Path,
) -> None:
    engine = _engine(tmp_path)
    path = write_path(engine)
    commits: list[int] = []
    sa.event.listen(path.engine, "commit", lambda _connection: commits.append(1))
    started, release = threading.Event(), threading.Event()

    def hold(connection: Connection) -> None:
        started.set()
        assert release.wait(30)

    def broken(connection: Connection) -> None:
        connection.execute(text("INSERT INTO notes (who, n) VALUES ('broken', 1)"))
        raise ValueError("no such card")

    first = path.submit(hold)
    assert started.wait(30)
    # The writer is busy with ``hold``: these three queue up and are taken as one batch, in this order.
    queued = [path.submit(_insert("before", 1)), path.submit(broken), path.submit(_insert("after", 2))]
    release.set()
    assert first.result(30) is None
    assert queued[0].result(30) > 0 and queued[2].result(30) > 0
    assert isinstance(queued[1].exception(30), ValueError)
    assert len(commits) == 2  # hold's batch, then the three queued jobs together
    assert _count(engine, "who = 'broken'") == 0
    assert _count(engine, "who IN ('before', 'after')") == 2
    engine.dispose()


def test_a_failing_commit_reaches_every_caller_of_the_transaction(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    with writer(engine).begin() as connection:
        connection.execute(text("CREATE TABLE parents (id INTEGER PRIMARY KEY)"))
        connection.execute(
            text(
                "CREATE TABLE kids (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parents(id) DEFERRABLE "
                "INITIALLY DEFERRED)"
            )
        )

    def orphan(connection: Connection) -> None:
        connection.execute(text("INSERT INTO kids (parent) VALUES (42)"))  # checked only at COMMIT

    with pytest.raises(sa.exc.IntegrityError):
        write_path(engine).run_sync(orphan)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM kids")).scalar_one() == 0
    engine.dispose()


def test_disposing_the_engine_drains_the_queued_jobs(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    path = write_path(engine)
    release = threading.Event()
    started = threading.Event()

    def slow(connection: Connection) -> None:
        started.set()
        assert release.wait(30)
        connection.execute(text("INSERT INTO notes (who, n) VALUES ('slow', 0)"))

    futures = [path.submit(slow)]
    assert started.wait(30)
    futures += [path.submit(_insert("queued", n)) for n in range(20)]
    closer = threading.Thread(target=engine.dispose)
    closer.start()
    release.set()
    closer.join()
    assert all(f.done() for f in futures)  # dispose returned only after the queue was drained
    assert [f.exception() for f in futures] == [None] * 21
    reopened = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    assert _count(reopened) == 21
    reopened.dispose()


def test_a_job_cannot_wait_for_another_job(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    path = write_path(engine)

    def nested(connection: Connection) -> None:
        path.run_sync(_insert("inner", 1))

    with pytest.raises(RuntimeError, match="cannot wait for another write job"):
        path.run_sync(nested)
    engine.dispose()


def test_postgresql_writes_keep_the_engines_pool() -> None:
    engine = sa.create_engine("postgresql+psycopg://patchbay@127.0.0.1:1/none")
    path = write_path(engine)
    assert not path.serial
    assert path.engine.pool is engine.pool
    assert writer(engine).pool is engine.pool
