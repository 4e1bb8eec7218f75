"""Table schemas remembered for a while, so a structured query does not cost a catalogue lookup.

The `query` tool needs a table's columns before it can build its SELECT. Asking
the source every time is a worker-thread round trip on SQLite and a network
call on EdgeLake, for an answer that almost never changes. A remembered
schema is only ever a reason to refuse less: a query that names a column the
remembered schema lacks is rebuilt against a fresh one before it is refused
(`columns(..., fresh=True)`), and a column that has since gone is reported by
the source itself.
"""

from __future__ import annotations

from collections import OrderedDict

import trio

from emcp.sources.base import Column, Source

__all__ = ["SchemaCache"]


class SchemaCache:
    """Columns per (database, table), each kept `ttl` seconds; at most `max_tables` kept (least recently used go)."""

    def __init__(self, ttl: float, max_tables: int = 4096) -> None:
        self._ttl = ttl
        self._max_tables = max_tables
        self._kept: OrderedDict[tuple[str, str], tuple[float, tuple[Column, ...]]] = OrderedDict()

    async def columns(
        self, source: Source, database: str, table: str, *, fresh: bool = False
    ) -> tuple[tuple[Column, ...], bool]:
        """The table's columns, and whether they were remembered rather than asked for just now.

        Failures (unknown database or table, an unreachable source) are never remembered.
        """
        key = (database, table)
        now = trio.current_time()
        kept = self._kept.get(key)
        if kept is not None and not fresh and now - kept[0] < self._ttl:
            self._kept.move_to_end(key)
            await trio.lowlevel.checkpoint()
            return kept[1], True
        columns = tuple(await source.get_columns(database, table))
        if self._ttl > 0:
            self._kept[key] = (trio.current_time(), columns)
            self._kept.move_to_end(key)
            while len(self._kept) > self._max_tables:
                self._kept.popitem(last=False)
        return columns, False
