"""The SQLite source, the demo dataset and `run_interruptible`, without a server.

Cancellation tests assert on what the source really did (interrupted counter,
limiter tokens back, the query's worker process killed, the next query served),
and wait on `QueryStatistics.watch`, on a probe of what was handed to a worker,
or on the reading task being blocked, never on a sleep.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from emcp.observe import Watch
from emcp.sources.base import Column, Row, SourceError
from emcp.sources.demo import DEMO_DATABASE, SENSOR_ROWS, ensure_demo_data
from emcp.sources.sqlite import SqliteSource
from emcp.sources.threads import run_interruptible
from emcp.sources.worker_pool import Worker

DB = DEMO_DATABASE
#: Runs for minutes unless interrupted.
SLOW_SQL = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) SELECT count(*) FROM c"
#: Rows 1..5 come at once, then the scan for the last row runs for minutes.
SLOW_TAIL_SQL = (
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
    "SELECT n FROM c WHERE n <= 5 OR n = 1000000000"
)
#: Far below the minutes SLOW_SQL needs, far above what an interrupt takes.
INTERRUPTED_WITHIN = 5.0


@pytest.fixture
async def source(demo_dir: Path) -> AsyncIterator[SqliteSource]:
    src = SqliteSource(demo_dir)
    try:
        yield src
    finally:
        await src.aclose()


class WorkerProbe:
    """The queries handed to worker processes, and those workers, observably."""

    def __init__(self) -> None:
        self.workers: list[Worker] = []
        self.watch = Watch()


@pytest.fixture
def probe(monkeypatch: pytest.MonkeyPatch) -> WorkerProbe:
    probe = WorkerProbe()
    original = Worker.request

    async def request(worker: Worker, message: Any) -> None:
        await original(worker, message)
        probe.workers.append(worker)
        probe.watch.changed()

    monkeypatch.setattr(Worker, "request", request)
    return probe


async def collect(src: SqliteSource, sql: str, params: Any = (), *, batch_rows: int = 1000) -> list[list[Row]]:
    async with src.open_query(DB, sql, params, batch_rows=batch_rows) as rows:
        return [batch async for batch in rows]


async def assert_clean_after_cancel(src: SqliteSource, probe: WorkerProbe) -> None:
    """One interrupted query left nothing behind: its worker was killed, and a new one serves the next query."""
    stats = src.statistics()
    assert (stats.interrupted, stats.running, stats.completed, stats.failed) == (1, 0, 0, 0)
    assert src.limiter.borrowed_tokens == 0
    (killed,) = probe.workers
    assert killed.process.returncode is not None
    assert (await src.status())["workers_idle"] == 0
    assert await collect(src, "SELECT count(*) FROM devices") == [[(50,)]]
    assert stats.completed == 1
    assert probe.workers[1] is not killed
    assert (await src.status())["workers_idle"] == 1


# -- catalogue -------------------------------------------------------------------


async def test_catalogue(source: SqliteSource) -> None:
    with trio.fail_after(10):
        assert await source.list_databases() == [DB]
        assert await source.list_tables(DB) == ["devices", "events", "sensor"]
        assert await source.get_columns(DB, "sensor") == [
            Column("row_id", "INTEGER", nullable=False, primary_key=True),
            Column("timestamp", "TEXT", nullable=False),
            Column("device", "TEXT", nullable=False),
            Column("value", "REAL", nullable=False),
            Column("unit", "TEXT", nullable=False),
        ]
        devices = await source.get_columns(DB, "DEVICES")  # SQLite names are case-insensitive
        assert [(c.name, c.nullable, c.primary_key) for c in devices] == [
            ("device", True, True),  # a TEXT primary key can be NULL in SQLite
            ("location", True, False),
            ("kind", True, False),
            ("installed", True, False),
        ]
        assert await source.version() == {"engine": "sqlite", "version": sqlite3.sqlite_version}
        status = await source.status()
    assert status["reachable"] is True
    assert status["databases"] == [DB]
    assert status["queries_running"] == 0


async def test_unknown_database_and_table(source: SqliteSource) -> None:
    with trio.fail_after(10):
        with pytest.raises(SourceError) as info:
            await source.list_tables("nope")
        assert (info.value.code, info.value.message) == ("unknown_database", "no database named 'nope'")
        assert "list_databases" in info.value.hint
        with pytest.raises(SourceError) as info:
            await source.get_columns("nope", "sensor")
        assert info.value.code == "unknown_database"
        with pytest.raises(SourceError) as info:
            async with source.open_query("nope", "SELECT 1"):
                pytest.fail("a query on an unknown database must not start")
        assert info.value.code == "unknown_database"
        with pytest.raises(SourceError) as info:
            await source.get_columns(DB, "sensor; DROP TABLE sensor")
        assert info.value.code == "unknown_table"
        assert "list_tables" in info.value.hint
    assert source.statistics().started == 0


def test_missing_path_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SourceError) as info:
        SqliteSource(tmp_path / "missing")
    assert info.value.code == "source_unavailable"
    assert "missing" in info.value.message
    with pytest.raises(SourceError) as info:
        SqliteSource(tmp_path)  # a directory without SQLite files
    assert info.value.code == "source_unavailable"


def make_db(path: Path, rows: int = 3) -> Path:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE t (a INTEGER PRIMARY KEY, b TEXT NOT NULL)")
        conn.executemany("INSERT INTO t (b) VALUES (?)", [(f"row {i}",) for i in range(rows)])
    conn.close()
    return path


async def test_directory_and_file_sources(tmp_path: Path) -> None:
    make_db(tmp_path / "alpha.db")
    make_db(tmp_path / "beta.sqlite3", rows=5)
    (tmp_path / "notes.txt").write_text("not a database")
    (tmp_path / "broken.sqlite").write_bytes(b"this is not a database file" * 100)
    with trio.fail_after(10):
        src = SqliteSource(tmp_path)
        try:
            assert await src.list_databases() == ["alpha", "beta", "broken"]
            assert await src.list_tables("beta") == ["t"]
            async with src.open_query("beta", "SELECT count(*) FROM t") as rows:
                assert [batch async for batch in rows] == [[(5,)]]
            status = await src.status()
            assert status["reachable"] is False
            assert "not a database" in status["errors"]["broken"]
            with pytest.raises(SourceError) as info:
                await src.list_tables("broken")
            assert info.value.code == "source_unavailable"
        finally:
            await src.aclose()
        single = SqliteSource(tmp_path / "alpha.db")
        try:
            assert await single.list_databases() == ["alpha"]
        finally:
            await single.aclose()


def test_two_files_with_one_name_are_refused(tmp_path: Path) -> None:
    make_db(tmp_path / "same.db")
    make_db(tmp_path / "same.sqlite")
    with pytest.raises(SourceError) as info:
        SqliteSource(tmp_path)
    assert info.value.code == "source_unavailable"
    assert "same.db" in info.value.message and "same.sqlite" in info.value.message


# -- queries -----------------------------------------------------------------------


async def test_query_streams_batches(source: SqliteSource) -> None:
    stats = source.statistics()
    with trio.fail_after(20):
        async with source.open_query(DB, "SELECT count(*) FROM sensor WHERE device = ?", ("dev-007",)) as rows:
            [[(expected,)]] = [batch async for batch in rows]
        async with source.open_query(
            DB, "SELECT * FROM sensor WHERE device = :device ORDER BY timestamp", {"device": "dev-007"}, batch_rows=3000
        ) as rows:
            assert rows.columns == ["row_id", "timestamp", "device", "value", "unit"]
            sizes = []
            async for batch in rows:
                sizes.append(len(batch))
                assert {row[2] for row in batch} == {"dev-007"}
    assert expected == SENSOR_ROWS // 50
    assert sum(sizes) == expected
    assert len(sizes) > 1 and max(sizes) == 3000
    assert (stats.started, stats.completed, stats.running, stats.failed, stats.interrupted) == (2, 2, 0, 0, 0)


async def test_empty_result_has_columns_and_no_batches(source: SqliteSource) -> None:
    with trio.fail_after(10):
        async with source.open_query(DB, "SELECT device, kind FROM devices WHERE 0") as rows:
            assert rows.columns == ["device", "kind"]
            assert [batch async for batch in rows] == []


async def test_sql_error_is_a_source_error(source: SqliteSource) -> None:
    with trio.fail_after(10):
        with pytest.raises(SourceError) as info:
            await collect(source, "SELECT no_such_column FROM sensor")
        assert info.value.code == "query_failed"
        assert "no_such_column" in info.value.message
        assert "get_columns" in info.value.hint
        stats = source.statistics()
        assert (stats.failed, stats.running) == (1, 0)
        # The worker survived the bad statement, and serves the next one.
        assert (await source.status())["workers_idle"] == 1
        assert await collect(source, "SELECT count(*) FROM events") == [[(20_000,)]]
        assert (await source.status())["workers_idle"] == 1


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO devices VALUES ('x', 'y', 'z', 'w')",
        "UPDATE sensor SET value = 0",
        "DELETE FROM events",
        "DROP TABLE devices",
        "CREATE TABLE t (a)",
        "ATTACH DATABASE ':memory:' AS other",
        "PRAGMA user_version = 7",
        "PRAGMA query_only = OFF",
        "VACUUM",
    ],
)
async def test_authorizer_refuses_anything_but_reading(source: SqliteSource, sql: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(SourceError) as info:
            await collect(source, sql)
    assert info.value.code == "query_failed"
    assert "authoriz" in info.value.message  # "not authorized", or "authorization denied"
    assert "read-only" in info.value.hint


async def test_stream_refuses_use_after_its_block(source: SqliteSource) -> None:
    with trio.fail_after(10):
        async with source.open_query(DB, "SELECT * FROM devices", batch_rows=10) as rows:
            await rows.__anext__()
        with pytest.raises(trio.ClosedResourceError):
            await rows.__anext__()


# -- cancellation ------------------------------------------------------------------


async def test_cancel_during_execute_interrupts_sqlite(source: SqliteSource, probe: WorkerProbe) -> None:
    stats = source.statistics()
    cancel_scope = trio.CancelScope()

    async def run_slow_query() -> None:
        with cancel_scope:
            await collect(source, SLOW_SQL)
        assert cancel_scope.cancelled_caught

    with trio.fail_after(20):
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_slow_query)
            await probe.watch.wait_until(lambda: len(probe.workers) == 1)
            assert stats.running == 1
            cancel_scope.cancel()
            await stats.watch.wait_until(lambda: stats.interrupted == 1)
        assert trio.current_time() - started < INTERRUPTED_WITHIN
        await assert_clean_after_cancel(source, probe)


async def test_cancel_during_a_fetch_interrupts_sqlite(source: SqliteSource, probe: WorkerProbe) -> None:
    stats = source.statistics()
    received: list[list[Row]] = []
    cancel_scope = trio.CancelScope()

    async def read_slow_tail() -> None:
        with cancel_scope:
            async with source.open_query(DB, SLOW_TAIL_SQL, batch_rows=2) as rows:
                async for batch in rows:
                    received.append(batch)
        assert cancel_scope.cancelled_caught

    with trio.fail_after(20):
        started = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_slow_tail)
            # [1, 2] and [3, 4] come at once; the third batch waits for the slow scan.
            while len(received) < 2:
                await trio.testing.wait_all_tasks_blocked()
            await trio.testing.wait_all_tasks_blocked()  # the reader waits on its worker
            cancel_scope.cancel()
        assert trio.current_time() - started < INTERRUPTED_WITHIN
    assert received == [[(1,), (2,)], [(3,), (4,)]]
    assert stats.interrupted == 1
    await assert_clean_after_cancel(source, probe)


async def test_cancel_between_fetches(source: SqliteSource, probe: WorkerProbe) -> None:
    with trio.fail_after(10):
        with trio.CancelScope() as cancel_scope:
            async with source.open_query(DB, "SELECT * FROM sensor", batch_rows=100) as rows:
                async for batch in rows:
                    assert len(batch) == 100
                    cancel_scope.cancel()
                    await trio.lowlevel.checkpoint()  # the cancel lands here, between two reads
        assert cancel_scope.cancelled_caught
        await assert_clean_after_cancel(source, probe)


# -- worker processes ----------------------------------------------------------------


async def test_a_worker_serves_one_query_after_another(source: SqliteSource, probe: WorkerProbe) -> None:
    with trio.fail_after(10):
        for _ in range(3):
            assert await collect(source, "SELECT count(*) FROM devices") == [[(50,)]]
            # Ctrl-C in a terminal reaches the worker too: only the server stops it.
            os.kill(probe.workers[-1].process.pid, signal.SIGINT)
    assert len(set(probe.workers)) == 1
    assert (await source.status())["workers_idle"] == 1


async def test_a_reader_that_stops_early_stops_its_worker(source: SqliteSource, probe: WorkerProbe) -> None:
    stats = source.statistics()
    with trio.fail_after(10):
        async with source.open_query(DB, "SELECT * FROM sensor", batch_rows=100) as rows:
            assert len(await rows.__anext__()) == 100
        (worker,) = probe.workers
        assert worker.process.returncode is not None  # killed: the statement does not run on
        assert (stats.completed, stats.interrupted, stats.running) == (1, 0, 0)
        assert await collect(source, "SELECT count(*) FROM devices") == [[(50,)]]
    assert probe.workers[1] is not worker


async def test_a_worker_that_dies_fails_its_query_only(source: SqliteSource, probe: WorkerProbe) -> None:
    with trio.fail_after(10):
        with pytest.raises(SourceError) as info:
            async with source.open_query(DB, "SELECT * FROM sensor", batch_rows=100) as rows:
                await rows.__anext__()
                probe.workers[0].process.kill()  # as the kernel's OOM killer would
                async for _ in rows:
                    pass
        assert info.value.code == "query_failed"
        assert "worker process ended" in info.value.message
        assert source.limiter.borrowed_tokens == 0
        assert await collect(source, "SELECT count(*) FROM devices") == [[(50,)]]


async def test_a_database_gone_since_discovery_is_unavailable(tmp_path: Path) -> None:
    file = tmp_path / "gone.db"
    sqlite3.connect(file).execute("CREATE TABLE t (a)").connection.close()
    src = SqliteSource(file)
    file.unlink()
    try:
        with trio.fail_after(10), pytest.raises(SourceError) as info:
            async with src.open_query("gone", "SELECT * FROM t"):
                pass
        assert info.value.code == "source_unavailable"
        assert "gone" in info.value.message
    finally:
        await src.aclose()


async def test_closing_the_source_stops_its_idle_workers(demo_dir: Path, probe: WorkerProbe) -> None:
    src = SqliteSource(demo_dir)
    with trio.fail_after(10):
        assert await collect(src, "SELECT count(*) FROM devices") == [[(50,)]]
        await src.aclose()
    (worker,) = probe.workers
    assert worker.process.returncode is not None


async def test_cancel_while_waiting_for_a_worker(demo_dir: Path) -> None:
    src = SqliteSource(demo_dir, max_threads=1)
    stats = src.statistics()
    try:
        with trio.fail_after(10):
            async with src.limiter:  # every token taken
                with trio.CancelScope() as cancel_scope:
                    cancel_scope.deadline = trio.current_time()
                    await collect(src, "SELECT count(*) FROM devices")
                assert cancel_scope.cancelled_caught
                assert (stats.interrupted, stats.running) == (1, 0)
                assert src.limiter.borrowed_tokens == 1
            assert await collect(src, "SELECT count(*) FROM devices") == [[(50,)]]
    finally:
        await src.aclose()


async def test_workers_are_bounded_by_the_limiter(demo_dir: Path) -> None:
    src = SqliteSource(demo_dir, max_threads=2, idle_workers=1)
    most_borrowed = 0
    results: list[list[list[Row]]] = []

    async def one_query(device: str) -> None:
        nonlocal most_borrowed
        async with src.open_query(DB, "SELECT count(*) FROM sensor WHERE device = ?", (device,)) as rows:
            most_borrowed = max(most_borrowed, src.limiter.borrowed_tokens)
            results.append([batch async for batch in rows])

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                for i in range(6):
                    nursery.start_soon(one_query, f"dev-{i:03d}")
            assert results == [[[(SENSOR_ROWS // 50,)]]] * 6
            assert most_borrowed <= 2
            assert (await src.status())["workers_idle"] == 1  # the others were stopped
    finally:
        await src.aclose()


# -- run_interruptible -------------------------------------------------------------


async def test_run_interruptible_returns_and_raises() -> None:
    limiter = trio.CapacityLimiter(1)
    with trio.fail_after(10):
        assert await run_interruptible(lambda: 42, pytest.fail, limiter=limiter) == 42

        def boom() -> None:
            raise ValueError("boom")

        with pytest.raises(ValueError, match="boom"):
            await run_interruptible(boom, pytest.fail, limiter=limiter)
    assert limiter.borrowed_tokens == 0


async def test_run_interruptible_never_starts_a_cancelled_call() -> None:
    limiter = trio.CapacityLimiter(1)
    calls: list[str] = []
    with trio.fail_after(10):
        async with limiter:
            with trio.CancelScope() as cancel_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(
                        partial(
                            run_interruptible,
                            lambda: calls.append("fn"),
                            lambda: calls.append("interrupt"),
                            limiter=limiter,
                        )
                    )
                    await trio.testing.wait_all_tasks_blocked()
                    assert limiter.statistics().tasks_waiting == 1
                    cancel_scope.cancel()
            assert cancel_scope.cancelled_caught
            assert limiter.statistics().tasks_waiting == 0
        assert limiter.borrowed_tokens == 0
    assert calls == []


async def test_run_interruptible_waits_for_the_interrupted_thread() -> None:
    limiter = trio.CapacityLimiter(1)
    token = trio.lowlevel.current_trio_token()
    entered = trio.Event()
    stop = threading.Event()
    events: list[str] = []

    def blocking() -> None:
        token.run_sync_soon(entered.set)
        try:
            assert stop.wait(10), "never interrupted"
        finally:
            events.append("thread finished")

    def interrupt() -> None:
        events.append("interrupt")
        stop.set()

    with trio.fail_after(10):
        with trio.CancelScope() as cancel_scope:
            async with trio.open_nursery() as nursery:

                async def call() -> None:
                    try:
                        await run_interruptible(blocking, interrupt, limiter=limiter)
                    finally:
                        events.append("caller unwound")

                nursery.start_soon(call)
                await entered.wait()
                cancel_scope.cancel()
        assert cancel_scope.cancelled_caught
    assert events == ["interrupt", "thread finished", "caller unwound"]
    assert limiter.borrowed_tokens == 0


async def test_run_interruptible_gives_up_after_grace(caplog: pytest.LogCaptureFixture) -> None:
    limiter = trio.CapacityLimiter(1)
    token = trio.lowlevel.current_trio_token()
    entered, finished = trio.Event(), trio.Event()
    release = threading.Event()
    interrupts = 0

    def stubborn() -> None:
        token.run_sync_soon(entered.set)
        try:
            release.wait(10)
        finally:
            token.run_sync_soon(finished.set)

    def ignored_interrupt() -> None:
        nonlocal interrupts
        interrupts += 1

    with trio.fail_after(10), caplog.at_level(logging.WARNING, logger="emcp.sources.threads"):
        with trio.CancelScope() as cancel_scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(partial(run_interruptible, stubborn, ignored_interrupt, limiter=limiter, grace=0.1))
                await entered.wait()
                cancel_scope.cancel()
        assert cancel_scope.cancelled_caught
        assert not finished.is_set()
        assert interrupts >= 1
        assert "ignored interrupts" in caplog.text
        release.set()
        await finished.wait()


# -- demo data ---------------------------------------------------------------------


def fingerprint(data_dir: Path) -> str:
    """A digest of the demo rows (not the file bytes, which SQLite may lay out differently)."""
    conn = sqlite3.connect(f"file:{data_dir / (DB + '.db')}?mode=ro", uri=True)
    try:
        digest = hashlib.sha256()

        def feed(rows: Iterator[tuple[Any, ...]]) -> None:
            for row in rows:
                digest.update(repr(row).encode())

        feed(
            conn.execute(
                "SELECT count(*), sum(value), sum(value * (row_id % 97)), min(timestamp), max(timestamp),"
                " count(DISTINCT device), group_concat(DISTINCT unit) FROM sensor"
            )
        )
        feed(conn.execute("SELECT * FROM sensor WHERE row_id % 9973 = 0 ORDER BY row_id"))
        feed(conn.execute("SELECT * FROM events ORDER BY row_id"))
        feed(conn.execute("SELECT * FROM devices ORDER BY device"))
        return digest.hexdigest()
    finally:
        conn.close()


def test_demo_data_shape(demo_dir: Path) -> None:
    conn = sqlite3.connect(f"file:{demo_dir / (DB + '.db')}?mode=ro", uri=True)
    try:
        assert conn.execute("SELECT count(*), min(timestamp) FROM sensor").fetchone() == (
            SENSOR_ROWS,
            "2026-01-01 00:00:00",
        )
        assert conn.execute("SELECT count(DISTINCT device) FROM sensor").fetchone() == (50,)
        assert conn.execute("SELECT min(device), max(device) FROM devices").fetchone() == ("dev-000", "dev-049")
        levels = {level for (level,) in conn.execute("SELECT DISTINCT level FROM events")}
        assert levels == {"info", "warn", "error"}
        indexes = {name for (name,) in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
        assert {"sensor_device_timestamp", "sensor_timestamp"} <= indexes
        plan = conn.execute("EXPLAIN QUERY PLAN SELECT * FROM sensor WHERE device = 'dev-001'").fetchall()
        assert "sensor_device_timestamp" in str(plan)
    finally:
        conn.close()


def test_demo_data_is_deterministic_and_replaces_stale_files(demo_dir: Path, tmp_path: Path) -> None:
    ensure_demo_data(demo_dir)  # already current: a no-op
    (tmp_path / f"{DB}.db").write_bytes(b"left over from a broken run")
    ensure_demo_data(tmp_path)
    assert fingerprint(tmp_path) == fingerprint(demo_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{DB}.db"]


async def test_a_worker_that_died_while_idle_is_replaced(source: SqliteSource, probe: WorkerProbe) -> None:
    with trio.fail_after(10):
        assert await collect(source, "SELECT count(*) FROM devices") == [[(50,)]]
        (idle,) = probe.workers
        idle.process.kill()
        await idle.process.wait()
        assert await collect(source, "SELECT count(*) FROM devices") == [[(50,)]]
    assert probe.workers[1] is not idle
