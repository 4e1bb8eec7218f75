"""A result as one NDJSON document cut into blocks, without I/O.

The document's first line is `{"columns": [...]}`, then one JSON array per
row. Blocks are consecutive slices of it, cut at line ends, so concatenating
the blocks gives the whole document, which is also what the HTTP download
sends. A block's size is counted as the block will travel inside a JSON
string (a `resources/read` result on an SSE stream): quotes, backslashes and
line ends each take one byte more there. Keeping that count under the block
size keeps every SSE event under the SDK clients' 1 MiB limit.
"""

from __future__ import annotations

import base64
import operator
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import orjson

from emcp.json_text import dumps


def jsonable(value: Any) -> Any:
    """SQLite BLOBs as base64 text: JSON has no bytes."""
    if isinstance(value, bytes | bytearray | memoryview):
        return "base64:" + base64.b64encode(bytes(value)).decode()
    return value


_quotes = operator.methodcaller("count", b'"')
_backslashes = operator.methodcaller("count", b"\\")
# What stands between two rows in the JSON array of a batch, and what it becomes in NDJSON.
_BETWEEN_ROWS = b"],["
_LINE_BREAK = b"]\n["


def json_lines(rows: Sequence[Sequence[Any]]) -> bytes:
    """Rows as NDJSON: one JSON array per row, each ending with a newline.

    The hot loop of large results. One orjson call encodes the whole batch, as
    an array of arrays (one call per row costs 3 to 6 times more, most of it in
    malloc), and the `],[` between rows become line breaks. JSON text holds no
    raw line break, so counting them after counts the `],[` replaced (a
    one-byte count, faster than looking for three): exactly `len(rows) - 1`
    of them separate rows; any more means a value holds `],[` itself (a
    string, a nested list), and then the rows are encoded one by one.
    """
    if not rows:
        return b""
    try:
        data = orjson.dumps(rows)
    except TypeError:  # BLOBs, or integers past 64 bits
        rows = [[jsonable(v) for v in row] for row in rows]
        data = dumps(rows)
    data = data.replace(_BETWEEN_ROWS, _LINE_BREAK)
    if data.count(b"\n") == len(rows) - 1:
        # Without the array's brackets, and a line end for the last row: one copy.
        return b"".join((memoryview(data)[1:-1], b"\n"))
    return b"".join(dumps(row) + b"\n" for row in rows)


def header_line(columns: Sequence[str]) -> bytes:
    return orjson.dumps({"columns": list(columns)}, option=orjson.OPT_APPEND_NEWLINE)


def escaped_size(data: bytes, lines: int | None = None) -> int:
    """Bytes `data` takes inside a JSON string: `"` and `\\` gain a backslash, `\\n` becomes `\\\\n`.

    `lines`, when the caller knows how many line ends `data` holds, saves a pass over it.
    """
    newlines = data.count(b"\n") if lines is None else lines
    # Backslashes are rare in rows: a memchr-fast find spares the counting pass most of the time.
    backslashes = data.count(b"\\") if b"\\" in data else 0
    return len(data) + data.count(b'"') + backslashes + newlines


@dataclass(frozen=True, slots=True)
class Block:
    index: int
    data: bytes
    #: Rows in this block (the header line is not a row).
    rows: int
    #: Index of the block's first row in the result.
    first_row: int


class BlockEncoder:
    """Cuts rows into blocks of at most `size` escaped bytes; a single larger row gets a block of its own."""

    def __init__(self, columns: Sequence[str], size: int) -> None:
        self._size = size
        self._lines: list[bytes] = [header_line(columns)]
        self._pending = escaped_size(self._lines[0])
        self._pending_rows = 0
        self._next_index = 0
        self._next_row = 0

    def add(self, rows: Sequence[Sequence[Any]]) -> list[Block]:
        """Encode `rows`; return the blocks they completed.

        This is the hot loop of large results, so per-row work stays in C. A
        batch goes into a block whole: when it does not fit the current block,
        that block is cut first (so blocks run between the size less one batch
        and the size). Only a batch larger than a block is split, where the
        running sum of its lines' sizes passes the size (map, accumulate, bisect).
        """
        if not rows:  # nothing to place: no cut, and no empty line group left for finish()
            return []
        chunk = json_lines(rows)
        cost = escaped_size(chunk, len(rows))
        done: list[Block] = []
        if self._pending + cost > self._size and self._pending_rows:
            done.append(self._cut())
        if self._pending + cost <= self._size:
            self._take(chunk, cost, len(rows))
            return done
        # JSON text holds no raw line break, so these are exactly the rows' lines.
        lines = chunk.splitlines(keepends=True)
        # sizes[i]: the escaped bytes of lines 0 to i, their line ends not counted; worked out once per batch.
        sizes = list(
            accumulate(
                map(operator.add, map(len, lines), map(operator.add, map(_quotes, lines), map(_backslashes, lines)))
            )
        )
        start, taken = 0, 0  # lines already in blocks, and their escaped bytes
        while start < len(lines):
            room = self._size - self._pending
            # Lines start to i take sizes[i] - taken bytes, and one more for each escaped line end.
            stop = max(
                start + 1,
                bisect_right(range(len(lines)), room, lo=start, key=lambda i: sizes[i] - taken + i - start + 1),
            )
            self._take(b"".join(lines[start:stop]), sizes[stop - 1] - taken + stop - start, stop - start)
            start, taken = stop, sizes[stop - 1]
            if start < len(lines):
                done.append(self._cut())
        return done

    def _take(self, data: bytes, cost: int, rows: int) -> None:
        self._lines.append(data)
        self._pending += cost
        self._pending_rows += rows

    def finish(self) -> Block | None:
        """The last, partial block (None when the rows ended exactly on a block boundary)."""
        if not self._lines:
            return None
        return self._cut()

    def _cut(self) -> Block:
        block = Block(self._next_index, b"".join(self._lines), self._pending_rows, self._next_row)
        self._next_index += 1
        self._next_row += self._pending_rows
        self._lines = []
        self._pending = 0
        self._pending_rows = 0
        return block
