"""Count a source's errors by code, at the one place they are known to be the source's.

A `SourceError` travels far before anyone reports it: it becomes an `isError`
tool result (next to the tools' own refusals, which look the same), or a block
stream's error told to a later reader. Only where the source raises it is it
certainly a source error, so the server hands every tool and block stream the
source wrapped by `count_source_errors`: each of its coroutine methods, and
each query from opening to its last row, report a `SourceError` on its way
out. Everything else reaches the engine unchanged, its own extra methods
(EdgeLake's network calls) included, and `isinstance` still sees the engine.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, cast

from emcp.sources.base import RowStream, Source, SourceError


def count_source_errors(source: Source, count: Callable[[str], None]) -> Source:
    """`source`, with `count(code)` called for every `SourceError` it raises."""
    return cast(Source, _Counted(source, count))


class _Counted:
    __slots__ = ("_count", "_source", "_wrapped")

    def __init__(self, source: Source, count: Callable[[str], None]) -> None:
        self._source = source
        self._count = count
        # Each counting wrapper is made once: sources' methods are looked up on every call.
        self._wrapped: dict[str, Any] = {}

    # isinstance() consults __class__ when type() does not match: checks like EdgeLake's tools' see the engine.
    @property
    def __class__(self) -> type:  # type: ignore[override]
        return type(self._source)

    def __getattr__(self, name: str) -> Any:
        wrapped = self._wrapped.get(name)
        if wrapped is not None:
            return wrapped
        value = getattr(self._source, name)
        if name == "open_query":
            wrapped = self._open_query
        elif inspect.iscoroutinefunction(value):
            wrapped = self._counting(value)
        else:
            return value  # attributes may change (a source's statistics): never remembered
        self._wrapped[name] = wrapped
        return wrapped

    def _counting(self, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def counted(*args: Any, **kwargs: Any) -> Any:
            try:
                return await method(*args, **kwargs)
            except SourceError as exc:
                self._count(exc.code)
                raise

        return counted

    @asynccontextmanager
    async def _open_query(self, *args: Any, **kwargs: Any) -> AsyncIterator[RowStream]:
        # Rows are read inside the block, so an error from any batch passes through here too.
        try:
            async with self._source.open_query(*args, **kwargs) as rows:
                yield rows
        except SourceError as exc:
            self._count(exc.code)
            raise
