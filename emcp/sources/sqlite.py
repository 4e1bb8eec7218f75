"""The SQLite source: the embedded demo data, or SQLite files the user points emcp at.

Every call into SQLite runs in a worker thread through `run_interruptible`, so
the event loop never waits on the database and a cancel becomes
`sqlite3.Connection.interrupt()`: the statement stops inside SQLite, not just
the wait for it. Connections are opened read-only and carry an authorizer that
refuses anything but reading, a second line of defence behind the SQL guard.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import trio

from emcp.sources.base import Column, Params, QueryStatistics, Row, RowStream, Source, SourceError
from emcp.sources.threads import run_interruptible

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: File suffixes that make a file in a source directory a database.
SUFFIXES = (".db", ".sqlite", ".sqlite3")

# What a read-only SELECT needs, and nothing else: no writes, no ATTACH (which
# could open another file read-write), no PRAGMA that sets anything.
_ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Read-only pragmas `get_columns` needs. The PRAGMA statement rather than the
# pragma_table_info() function, because SQLite authorizes a connection's first
# use of such a function as an UPDATE of sqlite_schema, which stays denied.
_ALLOWED_PRAGMAS = frozenset({"table_info"})

# After these errors the connection itself is fine (the statement was wrong,
# refused or interrupted); after any other (corruption, I/O, "not a database")
# it is closed rather than pooled.
_STATEMENT_ERRORS = frozenset(
    {
        sqlite3.SQLITE_ERROR,
        sqlite3.SQLITE_AUTH,
        sqlite3.SQLITE_INTERRUPT,
        sqlite3.SQLITE_RANGE,
        sqlite3.SQLITE_MISMATCH,
        sqlite3.SQLITE_TOOBIG,
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    }
)

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


def _authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, source: str | None) -> int:
    if action in _ALLOWED_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and arg1 in _ALLOWED_PRAGMAS):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def _connect(database: str, path: Path) -> sqlite3.Connection:
    """Open `path` read-only with the authorizer installed (in a worker thread)."""
    try:
        conn = sqlite3.connect(
            f"file:{quote(str(path))}?mode=ro",
            uri=True,
            check_same_thread=False,
            # Never an implicit BEGIN: nothing here writes.
            isolation_level=None,
        )
    except sqlite3.Error as exc:
        raise SourceError(
            "source_unavailable",
            f"cannot open database {database!r}: {exc}",
            hint="check that the database file still exists and is readable",
        ) from exc
    conn.set_authorizer(_authorize)
    return conn


class _Lease:
    """One connection lent to one caller: a catalogue call or one query.

    The connection is opened lazily inside the first worker-thread call, so an
    open that a cancel overtakes still lands here, where `_checkin` closes it.
    `busy` is true exactly while a worker thread is using the connection.
    """

    __slots__ = ("broken", "busy", "conn", "cursor", "database", "path")

    def __init__(self, database: str, path: Path, conn: sqlite3.Connection | None) -> None:
        self.database = database
        self.path = path
        self.conn = conn
        self.cursor: sqlite3.Cursor | None = None
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

    def __init__(self, path: Path, *, max_threads: int = 8, pool_size: int = 8) -> None:
        self._databases = _discover(Path(path).absolute())
        self._limiter = trio.CapacityLimiter(max_threads)
        # The status check (`/readyz`, node_status) has a thread of its own: every query thread
        # being busy is load, not a source that cannot be reached.
        self._status_limiter = trio.CapacityLimiter(1)
        self._pool_size = pool_size
        self._idle: dict[str, list[sqlite3.Connection]] = {name: [] for name in self._databases}
        self._stats = QueryStatistics()
        self._closed = False

    @property
    def limiter(self) -> trio.CapacityLimiter:
        """The limiter every worker thread of this source borrows a token from."""
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
        lease = self._checkout(database)
        bound = dict(params) if isinstance(params, Mapping) else tuple(params)
        try:
            with self._stats.measure() as outcome:
                first = await self._call(
                    lease, lambda conn: _start(lease, conn, sql, bound, batch_rows), "query_failed"
                )
                stream = _SqliteRowStream(self, lease, first, batch_rows)
                try:
                    yield stream
                finally:
                    stream.closed = True
                    outcome.interrupted = stream.interrupted
        finally:
            self._checkin(lease)

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
        await trio.lowlevel.checkpoint()

    # -- connections ---------------------------------------------------------

    def _checkout(self, database: str) -> _Lease:
        if self._closed:
            raise SourceError("source_unavailable", "the SQLite source is closed", hint="restart the server")
        path = self._databases.get(database)
        if path is None:
            raise SourceError(
                "unknown_database",
                f"no database named {database!r}",
                hint="call list_databases to see the databases",
            )
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
        if lease.cursor is not None:
            lease.cursor.close()
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
            code = getattr(exc, "sqlite_errorcode", None)
            if code is not None and code & 0xFF not in _STATEMENT_ERRORS:
                lease.broken = True
            raise _translate(failure, lease.database, exc) from exc

    async def _catalogue(
        self, database: str, fn: Callable[[sqlite3.Connection], T], limiter: trio.CapacityLimiter | None = None
    ) -> T:
        lease = self._checkout(database)
        try:
            return await self._call(lease, fn, "source_unavailable", limiter)
        finally:
            self._checkin(lease)


class _SqliteRowStream(RowStream):
    """Batches of one statement, each fetched by its own worker-thread call.

    Only one batch is in memory at a time. A fetch cut short by a cancel leaves
    the statement interrupted, so the stream refuses to go on after one.
    """

    def __init__(self, source: SqliteSource, lease: _Lease, first: list[Row], batch_rows: int) -> None:
        assert lease.cursor is not None
        self.columns = [d[0] for d in lease.cursor.description or ()]
        self._source = source
        self._lease = lease
        self._cursor = lease.cursor
        self._batch_rows = batch_rows
        self._pending: list[Row] | None = first or None
        self._more = len(first) == batch_rows
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
        self._reading = True
        try:
            batch = await self._next_batch()
        finally:
            self._reading = False
        if not batch:
            raise StopAsyncIteration
        return batch

    async def _next_batch(self) -> list[Row]:
        if self._pending is not None or not self._more:
            await trio.lowlevel.checkpoint()
            batch, self._pending = self._pending or [], None
            return batch
        cursor, size = self._cursor, self._batch_rows
        try:
            batch = await self._source._call(self._lease, lambda _conn: cursor.fetchmany(size), "query_failed")
        except trio.Cancelled:
            self.interrupted = True
            raise
        self._more = len(batch) == size
        return batch


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


def _translate(failure: str, database: str, exc: sqlite3.Error) -> SourceError:
    message = str(exc)
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


def _start(lease: _Lease, conn: sqlite3.Connection, sql: str, params: Any, batch_rows: int) -> list[Row]:
    # The cursor goes on the lease before it runs, so whatever happens next
    # (an error, an interrupt, a result the cancelled caller never sees) the
    # Trio side can still close it.
    lease.cursor = cursor = conn.cursor()
    cursor.execute(sql, params)
    return cursor.fetchmany(batch_rows)


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
