"""Data sources: one interface (`base.Source`), one module per engine."""

from __future__ import annotations

from pathlib import Path

import trio

from emcp.settings import Settings
from emcp.sources.base import Source, SourceError
from emcp.sources.demo import ensure_demo_data
from emcp.sources.sqlite import SqliteSource


def _sqlite_source(spec: str, settings: Settings) -> Source:
    kind, _, where = spec.partition(":")
    if kind == "sqlite" and where:
        return SqliteSource(Path(where).expanduser(), max_threads=settings.query.max_threads)
    raise SourceError(
        "unknown_source",
        f"cannot use source {spec!r}",
        "use sqlite:PATH (a SQLite file or a directory of them), or no --source for the demo data",
    )


async def open_source(settings: Settings) -> Source:
    """The source `settings.source` names: "" (the embedded demo data) or "sqlite:PATH".

    Generating the demo data takes seconds on first run and opening a source
    touches the file system: both run in a worker thread, off the event loop.
    """
    if not settings.source:
        data_dir = await trio.to_thread.run_sync(ensure_demo_data, settings.data_dir)
        return SqliteSource(data_dir, max_threads=settings.query.max_threads)
    return await trio.to_thread.run_sync(_sqlite_source, settings.source, settings)
