"""Data sources: one interface (`base.Source`), one module per engine."""

from __future__ import annotations

from pathlib import Path

import trio

from emcp.settings import Settings
from emcp.sources.base import Source, SourceError
from emcp.sources.demo import ensure_demo_data
from emcp.sources.edgelake.source import EdgeLakeSource
from emcp.sources.sqlite import SqliteSource


def _build_source(settings: Settings) -> Source:
    spec = settings.source
    limits = {"max_threads": settings.query.max_threads, "idle_workers": settings.query.idle_workers}
    if not spec:
        return SqliteSource(ensure_demo_data(settings.data_dir), **limits)
    kind, _, where = spec.partition(":")
    if kind == "sqlite" and where:
        return SqliteSource(Path(where).expanduser(), **limits)
    if kind == "edgelake" and where:
        try:
            return EdgeLakeSource([node.strip() for node in where.split(",") if node.strip()], settings.edgelake)
        except ValueError as exc:
            raise SourceError("unknown_source", f"cannot use source {spec!r}: {exc}") from None
    raise SourceError(
        "unknown_source",
        f"cannot use source {spec!r}",
        "use sqlite:PATH (a SQLite file or a directory of them), edgelake:http://HOST:PORT[,http://HOST2:PORT], "
        "or no --source for the demo data",
    )


async def open_source(settings: Settings) -> Source:
    """The source `settings.source` names: "" (the embedded demo data), "sqlite:PATH" or "edgelake:URL[,URL]".

    Built in a worker thread: generating the demo data takes seconds on first
    run, and finding a source's databases reads the file system.
    """
    return await trio.to_thread.run_sync(_build_source, settings)
