"""The interface every data source implements, and the errors it raises.

A source answers catalogue questions (databases, tables, columns) and runs one
read-only SQL statement at a time per `open_query`, yielding row batches. The
SQLite source and the EdgeLake source both implement it, so every tool works
the same on either. Cancellation contract: when the task iterating a query is
cancelled, the source stops the database work itself (SQLite's `interrupt()`,
closing the EdgeLake connection) before the cancel propagates, and records it
in `statistics()`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from emcp.errors import ActionableError
from emcp.observe import Watch

Row = tuple[Any, ...]
Params = Sequence[Any] | Mapping[str, Any]


class SourceError(ActionableError):
    """A source's failure (`unknown_database`, `query_failed`...): an `isError` tool result."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str
    nullable: bool = True
    primary_key: bool = False
    # System columns a source adds on its own (EdgeLake's row_id, tsd_name...):
    # hidden from schema listings unless asked for.
    system: bool = False


def is_cancellation(exc: BaseException) -> bool:
    """True for `Cancelled`, alone or grouped (a nursery inside a query block may group it)."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(trio.Cancelled)[1] is None
    return isinstance(exc, trio.Cancelled)


@dataclass(slots=True)
class QueryOutcome:
    """Set by a source when its statement was stopped even though no `Cancelled` escaped."""

    interrupted: bool = False


@dataclass(slots=True)
class QueryStatistics:
    """Counters of a source's query work, observable through `watch`."""

    started: int = 0
    running: int = 0
    completed: int = 0
    failed: int = 0
    interrupted: int = 0
    watch: Watch = field(default_factory=Watch, repr=False, compare=False)

    @contextmanager
    def measure(self) -> Iterator[QueryOutcome]:
        """Count one query from start to end; the source may mark it interrupted on the way.

        A query that ends with `Cancelled` (alone or grouped) was interrupted,
        one that ends with another error failed, any other completed.
        """
        self.started += 1
        self.running += 1
        self.watch.changed()
        outcome = QueryOutcome()
        result = "failed"
        try:
            yield outcome
            result = "interrupted" if outcome.interrupted else "completed"
        except BaseException as exc:
            result = "interrupted" if is_cancellation(exc) else "failed"
            raise
        finally:
            self.running -= 1
            setattr(self, result, getattr(self, result) + 1)
            self.watch.changed()

    def snapshot(self) -> dict[str, int]:
        return {
            "queries_started": self.started,
            "queries_running": self.running,
            "queries_completed": self.completed,
            "queries_failed": self.failed,
            "queries_interrupted": self.interrupted,
        }


class RowStream(ABC):
    """The rows of one running statement, pulled in batches.

    Iterating yields non-empty lists of rows until the result is exhausted.
    """

    columns: list[str]

    @property
    def statistics(self) -> dict[str, Any] | None:
        """The engine's own figures for the query once it is read (EdgeLake: Count, Time, Nodes)."""
        return None

    @abstractmethod
    def __aiter__(self) -> AsyncIterator[list[Row]]: ...


class Source(ABC):
    """A database engine emcp can serve. Long-lived: opened once per server."""

    #: Short engine name shown to clients ("sqlite", "edgelake").
    kind: str
    #: The sqlglot dialect used to parse and render SQL for this source.
    dialect: str
    #: What an agent must know to write SQL for this engine; appended to the
    #: descriptions of the tools that take SQL.
    sql_notes: str = ""

    @abstractmethod
    async def list_databases(self) -> list[str]: ...

    @abstractmethod
    async def list_tables(self, database: str) -> list[str]:
        """Raises SourceError(`unknown_database`) for a database that does not exist."""

    @abstractmethod
    async def get_columns(self, database: str, table: str) -> list[Column]:
        """Raises SourceError(`unknown_database` | `unknown_table`)."""

    @abstractmethod
    def open_query(
        self, database: str, sql: str, params: Params = (), *, batch_rows: int = 1000
    ) -> AbstractAsyncContextManager[RowStream]:
        """Run one read-only statement; leaving the context stops it and frees its resources.

        The SQL has already been proven read-only by the caller; a source still
        runs it with read-only access as a second line of defence.
        """

    @abstractmethod
    async def status(self) -> dict[str, Any]:
        """Health of the source as a JSON-able dict (reachable, databases, ...)."""

    @abstractmethod
    async def version(self) -> dict[str, Any]:
        """Engine name and version as a JSON-able dict."""

    @abstractmethod
    def statistics(self) -> QueryStatistics: ...

    @abstractmethod
    async def aclose(self) -> None:
        """Release connections; called once, when the server stops."""
