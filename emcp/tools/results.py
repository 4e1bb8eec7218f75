"""Shape a row stream into an inline result: bounded rows and bytes, truncation made explicit.

Reading stops as soon as the budget is spent, and leaving the caller's
`open_query` block then stops the statement, so a huge result costs one batch
of work past the budget, never the whole scan. The block stream of large
results takes over at the same point: where this shaper stops.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson

from emcp.sources.base import Row, RowStream
from emcp.tools.context import Progress


@dataclass
class InlineResult:
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    truncated_reason: str = ""


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    return value


def _row(row: Row) -> list[Any]:
    values = list(row)
    if any(isinstance(v, bytes | bytearray | memoryview) for v in values):
        values = [_jsonable(v) for v in values]
    return values


async def collect_rows(stream: RowStream, *, max_rows: int, max_bytes: int, progress: Progress) -> InlineResult:
    # Columns are read at the end: a source may learn them only once the statement runs.
    result = InlineResult(columns=[])
    size = 2  # the enclosing brackets
    async for batch in stream:
        for raw in batch:
            row = _row(raw)
            if len(result.rows) >= max_rows:
                result.truncated = True
                result.truncated_reason = f"the result has more than {max_rows} rows"
                break
            size += len(orjson.dumps(row)) + 1
            if size > max_bytes:
                result.truncated = True
                result.truncated_reason = f"the rows exceed {max_bytes} bytes"
                break
            result.rows.append(row)
        if result.truncated:
            break
        await progress(len(result.rows), None, f"{len(result.rows)} rows read")
    result.columns = list(stream.columns)
    return result
