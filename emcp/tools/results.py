"""Shape a row stream into an inline result: bounded rows and bytes, truncation made explicit.

Reading stops as soon as the budget is spent. Either the caller leaves its
`open_query` block, which stops the statement (a huge result then costs one
batch of work past the budget, never the whole scan), or a block stream takes
over the same row stream where this shaper stopped, starting with `overflow`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from emcp.blocks.encoding import jsonable
from emcp.json_text import dumps
from emcp.sources.base import Row, RowStream
from emcp.tools.context import Progress


@dataclass
class InlineResult:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    truncated_reason: str = ""
    #: Rows already read from the stream but past the budget (the rest of the batch that crossed it).
    overflow: list[Row] = field(default_factory=list)
    #: The engine's own figures, when the whole result was read (EdgeLake's Statistics).
    statistics: dict[str, Any] | None = None


def _row(row: Row) -> list[Any]:
    values = list(row)
    if any(isinstance(v, bytes | bytearray | memoryview) for v in values):
        values = [jsonable(v) for v in values]
    return values


async def collect_rows(stream: RowStream, *, max_rows: int, max_bytes: int, progress: Progress) -> InlineResult:
    result = InlineResult(columns=[])
    size = 2  # the enclosing brackets
    async for batch in stream:
        for i, raw in enumerate(batch):
            row = _row(raw)
            if len(result.rows) >= max_rows:
                result.truncated_reason = f"the result has more than {max_rows} rows"
            else:
                size += len(dumps(row)) + 1
                if size > max_bytes:
                    result.truncated_reason = f"the rows exceed {max_bytes} bytes"
            if result.truncated_reason:
                result.truncated = True
                result.overflow = list(batch[i:])
                break
            result.rows.append(row)
        if result.truncated:
            break
        await progress(len(result.rows), None, f"{len(result.rows)} rows read")
    # Read at the end: a source may learn its columns only once the statement runs.
    result.columns = list(stream.columns)
    result.statistics = stream.statistics
    return result
