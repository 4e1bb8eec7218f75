"""The SQLite source: the embedded demo data, or SQLite files the user points emcp at.

Queries run in worker processes (`sqlite_worker`): a scan there runs beside
the event loop instead of taking turns with it for the GIL, row by row. A
query keeps its worker until its rows are read; a cancel, or a caller that
leaves before the end, kills the worker, which stops the statement inside
SQLite at once; a worker that finished its query waits for the next one. The
catalogue (tables, columns, the status probe) stays in worker threads through
`run_interruptible`, where a cancel becomes `sqlite3.Connection.interrupt()`.
Connections are opened read-only and carry an authorizer that refuses anything
but reading, a second line of defence behind the SQL guard.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import trio

from emcp.sources import sqlite_worker
from emcp.sources.base import Column, Params, QueryStatistics, Row, RowStream, Source, SourceError
from emcp.sources.threads import run_interruptible
from emcp.sources.worker_pool import Worker, WorkerGone, WorkerPool

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: File suffixes that make a file in a source directory a database.
SUFFIXES = (".db", ".sqlite", ".sqlite3")

_QUERY_HINTS = (
    ("no such table", "call list_tables to see the tables of this database"),
    ("no such column", "call get_columns to see the columns of the table"),
    ("authoriz", "only read-only SELECT statements are allowed"),
    ("syntax error", "fix the SQL syntax (SQLite dialect)"),
    ("incomplete input", "the SQL statement is incomplete"),
    ("one statement at a time", "send a single statement, without a trailing second one"),
    ("binding", "pass one parameter per placeholder in the SQL"),
)
_DEFAULT_QUERY_HINT = "check the SQL against the schema (list_tables, get_columns)"

_TABLES_SQL = (
    "SELECT name FROM sqlite_schema WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
)


def _cannot_open(database: str, message: str) -> SourceError:
    return SourceError(
        "source_unavailable",
        f"cannot open database {database!r}: {message}",
        hint="check that the database file still exists and is readable",
    )


def _connect(database: str, path: Path) -> sqlite3.Connection:
    """Open `path` read-only with the authorizer installed (in a worker thread)."""
    try:
        return sqlite_worker.connect(str(path))
    except sqlite3.Error as exc:
        raise _cannot_open(database, str(exc)) from exc


class _Lease:
    """One connection lent to one catalogue call (tables, columns, the status probe).

    The connection is opened lazily inside the first worker-thread call, so an
    open that a cancel overtakes still lands here, where `_checkin` closes it.
    `busy` is true exactly while a worker thread is using the connection.
    """

    __slots__ = ("broken", "busy", "conn", "database", "path")

    def __init__(self, database: str, path: Path, conn: sqlite3.Connection | None) -> None:
        self.database = database
        self.path = path
        self.conn = conn
        self.busy = False
        self.broken = False

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Worker-thread side: call `fn` with the connection, opening it first if needed."""
        self.busy = True
        try:
            if self.conn is None:
                self.conn = _connect(self.database, self.path)
            return fn(self.conn)
        finally:
            self.busy = False

    def interrupt(self) -> None:
        """Trio side: stop whatever statement the worker thread is running."""
        conn = self.conn
        if conn is not None:
            conn.interrupt()


class SqliteSource(Source):
    """SQLite files served read-only: one file, or every SQLite file in a directory.

    The set of databases is fixed at construction. Idle connections are pooled
    per database (at most `pool_size` each); `max_threads` bounds the worker
    threads all databases share.
    """

    kind = "sqlite"
    dialect = "sqlite"
    sql_notes = (
        "SQL is SQLite's: relative time as timestamp >= datetime('now', '-7 days'), "
        "day buckets as strftime('%Y-%m-%d', timestamp)."
    )

    def __init__(self, path: Path, *, max_threads: int = 8, pool_size: int = 8, idle_workers: int = 8) -> None:
        self._databases = _discover(Path(path).absolute())
        self._limiter = trio.CapacityLimiter(max_threads)
        # Worker processes for queries: at most `max_threads` at work (the same limiter), and up to
        # `idle_workers` kept between queries (about 13 MB each; fewer than run at once means a
        # process started for each query past them).
        self._workers = WorkerPool(self._limiter, idle_workers)
        # The status check (`/readyz`, node_status) has a thread of its own: every query thread
        # being busy is load, not a source that cannot be reached.
        self._status_limiter = trio.CapacityLimiter(1)
        self._pool_size = pool_size
        self._idle: dict[str, list[sqlite3.Connection]] = {name: [] for name in self._databases}
        self._stats = QueryStatistics()
        self._closed = False

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter every query's worker process and catalogue thread of this source borrows a token from."""
        return self._limiter

    async def list_databases(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        return sorted(self._databases)

    async def list_tables(self, database: str) -> list[str]:
        return await self._catalogue(database, _table_names)

    async def get_columns(self, database: str, table: str) -> list[Column]:
        return await self._catalogue(database, lambda conn: _columns_of(conn, database, table))

    @asynccontextmanager
    async def open_query(
        self, database: str, sql: str, params: Params = (), *, batch_rows: int = 1000
    ) -> AsyncIterator[RowStream]:
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be at least 1, not {batch_rows}")
        path = self._path_of(database)
        bound = dict(params) if isinstance(params, Mapping) else tuple(params)
        with self._stats.measure() as outcome:
            async with self._workers.lease() as worker:
                stream = _SqliteRowStream(database, worker)
                await stream.start((str(path), sql, bound, batch_rows))
                try:
                    yield stream
                finally:
                    stream.closed = True
                    outcome.interrupted = stream.interrupted

    async def status(self) -> dict[str, Any]:
        errors: dict[str, str] = {}
        for name in sorted(self._databases):
            try:
                await self._catalogue(name, _probe, limiter=self._status_limiter)
            except SourceError as exc:
                errors[name] = exc.message
        status: dict[str, Any] = {
            "source": self.kind,
            "reachable": not errors,
            "databases": sorted(self._databases),
            "queries_running": self._stats.running,
            "connections_idle": sum(len(idle) for idle in self._idle.values()),
            "workers_idle": self._workers.idle,
        }
        if errors:
            status["errors"] = errors
        return status

    async def version(self) -> dict[str, Any]:
        await trio.lowlevel.checkpoint()
        return {"engine": "sqlite", "version": sqlite3.sqlite_version}

    def statistics(self) -> QueryStatistics:
        return self._stats

    async def aclose(self) -> None:
        """Close the idle connections; connections still lent out close when they come back.

        Closing is done right here rather than in a thread: closing an idle
        read-only connection frees memory and a file descriptor and never
        waits, and it must happen even if the caller is already cancelled.
        """
        self._closed = True
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
        await self._workers.aclose()

    # -- connections ---------------------------------------------------------

    def _path_of(self, database: str) -> Path:
        if self._closed:
            raise SourceError("source_unavailable", "the SQLite source is closed", hint="restart the server")
        path = self._databases.get(database)
        if path is None:
            raise SourceError(
                "unknown_database",
                f"no database named {database!r}",
                hint="call list_databases to see the databases",
            )
        return path

    def _checkout(self, database: str) -> _Lease:
        path = self._path_of(database)
        idle = self._idle[database]
        return _Lease(database, path, idle.pop() if idle else None)

    def _checkin(self, lease: _Lease) -> None:
        """Take a lease back: close its cursor and pool or close its connection.

        Runs on the Trio thread: resetting a statement and closing a read-only
        connection are quick and never wait on a lock or the disk.
        """
        conn = lease.conn
        if conn is None:
            return
        if lease.busy:
            # run_interruptible gave up on a thread that ignored interrupts: the
            # thread still owns the connection, so it is left to be collected.
            logger.warning("abandoning a connection to %r still in use by a worker thread", lease.database)
            return
        idle = self._idle[lease.database]
        if lease.broken or self._closed or len(idle) >= self._pool_size:
            conn.close()
        else:
            idle.append(conn)

    async def _call(
        self,
        lease: _Lease,
        fn: Callable[[sqlite3.Connection], T],
        failure: str,
        limiter: trio.CapacityLimiter | None = None,
    ) -> T:
        """Run `fn(connection)` in a worker thread of `limiter` (the queries' by default);
        SQLite errors become `SourceError(failure)`."""
        try:
            return await run_interruptible(lambda: lease.run(fn), lease.interrupt, limiter=limiter or self._limiter)
        except sqlite3.Error as exc:
            if not sqlite_worker.is_statement_error(exc):
                lease.broken = True
            raise _translate(failure, lease.database, str(exc)) from exc

    async def _catalogue(
        self, database: str, fn: Callable[[sqlite3.Connection], T], limiter: trio.CapacityLimiter | None = None
    ) -> T:
        lease = self._checkout(database)
        try:
            return await self._call(lease, fn, "source_unavailable", limiter)
        finally:
            self._checkin(lease)


class _SqliteRowStream(RowStream):
    """The batches of one statement, as its worker process sends them (one batch ahead at most).

    A read cut short by a cancel leaves the statement stopped (its worker is
    killed when the query ends), so the stream refuses to go on after one.
    """

    def __init__(self, database: str, worker: Worker) -> None:
        self.columns: list[str] = []
        self._database = database
        self._worker = worker
        self._ended = False
        self._reading = False
        self.closed = False
        self.interrupted = False

    def __aiter__(self) -> _SqliteRowStream:
        return self

    async def __anext__(self) -> list[Row]:
        if self.closed:
            raise trio.ClosedResourceError("the query is closed: its open_query block has ended")
        if self.interrupted:
            raise SourceError("query_interrupted", "the query was interrupted by a cancel", hint="run it again")
        if self._reading:
            raise trio.BusyResourceError("another task is already reading this query")
        if self._ended:
            await trio.lowlevel.checkpoint()
            raise StopAsyncIteration
        self._reading = True
        try:
            message = await self.reply("rows", "end")
        finally:
            self._reading = False
        if message[0] == "end":
            self._ended = True
            raise StopAsyncIteration
        batch: list[Row] = message[1]
        return batch

    async def start(self, request: tuple[str, str, Any, int]) -> None:
        """Hand the query to the worker and take its columns; errors as the source's."""
        try:
            await self._worker.request(request)
        except WorkerGone as exc:
            raise self._gone(exc) from exc
        self.columns = (await self.reply("columns"))[1]

    async def reply(self, *expected: str) -> tuple[Any, ...]:
        """The worker's next reply, one of `expected`; its errors as the source's."""
        try:
            message = await self._worker.reply()
        except trio.Cancelled:
            self.interrupted = True
            raise
        except WorkerGone as exc:
            raise self._gone(exc) from exc
        if message[0] == "error":
            self._ended = True
            _kind, stage, text, _code = message
            if stage == "open":
                raise _cannot_open(self._database, text)
            raise _translate("query_failed", self._database, text)
        assert message[0] in expected, f"worker replied {message[0]!r}, expected {expected}"
        return message

    def _gone(self, exc: WorkerGone) -> SourceError:
        self._ended = True
        return SourceError("query_failed", str(exc), hint="run it again; the server's log says why it ended")


def _discover(path: Path) -> dict[str, Path]:
    """The databases at `path`, by name (file stem)."""
    if path.is_file():
        return {path.stem: path}
    if not path.is_dir():
        raise SourceError(
            "source_unavailable",
            f"no SQLite file or directory at {path}",
            hint="point the source at an existing SQLite file or a directory of them",
        )
    found: dict[str, Path] = {}
    for file in sorted(path.iterdir()):
        if file.suffix.lower() not in SUFFIXES or not file.is_file():
            continue
        if file.stem in found:
            raise SourceError(
                "source_unavailable",
                f"{found[file.stem].name} and {file.name} would both be database {file.stem!r}",
                hint="rename one of the files",
            )
        found[file.stem] = file
    if not found:
        raise SourceError(
            "source_unavailable",
            f"no SQLite files ({', '.join('*' + s for s in SUFFIXES)}) in {path}",
            hint="point the source at a SQLite file or a directory that holds some",
        )
    return found


def _translate(failure: str, database: str, message: str) -> SourceError:
    if failure == "query_failed":
        lowered = message.lower()
        hint = next((h for key, h in _QUERY_HINTS if key in lowered), _DEFAULT_QUERY_HINT)
        return SourceError(failure, message, hint=hint)
    return SourceError(
        failure,
        f"cannot read database {database!r}: {message}",
        hint="check that the file is a readable SQLite database",
    )


# -- worker-thread functions ----------------------------------------------------


def _table_names(conn: sqlite3.Connection) -> list[str]:
    return sorted(name for (name,) in conn.execute(_TABLES_SQL))


def _columns_of(conn: sqlite3.Connection, database: str, table: str) -> list[Column]:
    tables = _table_names(conn)
    # SQLite matches names case-insensitively; prefer the exact spelling if both exist.
    name = table if table in tables else next((t for t in tables if t.lower() == table.lower()), None)
    if name is None:
        raise SourceError(
            "unknown_table",
            f"no table named {table!r} in database {database!r}",
            hint="call list_tables to see the tables of this database",
        )
    # `name` is the catalogue's own spelling, quoted: nothing the caller typed reaches the SQL.
    quoted = '"' + name.replace('"', '""') + '"'
    rows = conn.execute(f"PRAGMA main.table_info({quoted})").fetchall()
    primary_keys = sum(1 for row in rows if row[5])
    return [
        Column(
            name=column,
            type=declared,
            # An INTEGER PRIMARY KEY is the rowid, which is never NULL.
            nullable=not notnull and not (pk and primary_keys == 1 and declared.upper() == "INTEGER"),
            primary_key=bool(pk),
        )
        for _cid, column, declared, notnull, _default, pk in rows
    ]


def _probe(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
