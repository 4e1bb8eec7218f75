"""A process that runs the SQLite source's queries, so that reading a result never holds the server's GIL.

Python's sqlite3 takes the GIL back for every row it steps to. In a thread of
the server, a large scan and the event loop therefore run one after the
other, never together: everything the event loop does per block of a large
result (escaping it, answering the request, writing it) added its whole time
to the scan's. In a process of its own the scan runs beside the event loop.

Standard library only, so that a worker starts in tens of milliseconds and
weighs about 13 MB; the server imports the connection rules from here too
(`connect`, `authorize`), so both sides open databases the same way.

Protocol, on stdin and stdout: frames of a 4-byte little-endian length and a
pickle (both ends are emcp, over private pipes). A request is
`(path, sql, params, batch_rows)`; the replies are `("columns", names)`, then
`("rows", batch)` per batch, then `("end",)`, or `("error", stage, message,
sqlite_errorcode)` in place of any of them, after which the worker waits for
the next request. The worker writes each batch as soon as it has it: with the
pipe full it waits, so it runs at most one batch ahead of its reader. A query
is stopped by killing its worker.
"""

from __future__ import annotations

import pickle
import signal
import sqlite3
import struct
import sys
from typing import IO, Any
from urllib.parse import quote

# What a read-only SELECT needs, and nothing else: no writes, no ATTACH (which
# could open another file read-write), no PRAGMA that sets anything.
ALLOWED_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION, sqlite3.SQLITE_RECURSIVE}
)
# Read-only pragmas `get_columns` needs. The PRAGMA statement rather than the
# pragma_table_info() function, because SQLite authorizes a connection's first
# use of such a function as an UPDATE of sqlite_schema, which stays denied.
ALLOWED_PRAGMAS = frozenset({"table_info"})

# After these errors the connection itself is fine (the statement was wrong,
# refused or interrupted); after any other (corruption, I/O, "not a database")
# it is closed rather than used again.
STATEMENT_ERRORS = frozenset(
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

#: A frame's length prefix.
LENGTH = struct.Struct("<I")


def authorize(action: int, arg1: str | None, arg2: str | None, db_name: str | None, source: str | None) -> int:
    if action in ALLOWED_ACTIONS or (action == sqlite3.SQLITE_PRAGMA and arg1 in ALLOWED_PRAGMAS):
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


def connect(path: str) -> sqlite3.Connection:
    """`path` opened read-only, with the authorizer installed; sqlite3.Error when it cannot be."""
    conn = sqlite3.connect(
        f"file:{quote(path)}?mode=ro",
        uri=True,
        check_same_thread=False,
        # Never an implicit BEGIN: nothing here writes.
        isolation_level=None,
    )
    conn.set_authorizer(authorize)
    return conn


def is_statement_error(exc: sqlite3.Error) -> bool:
    """True when `exc` leaves its connection usable."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is None or code & 0xFF in STATEMENT_ERRORS


def frame(message: Any) -> bytes:
    """`message` as one frame: its length, then its pickle (the server writes requests with it too)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return LENGTH.pack(len(data)) + data


def write_frame(out: IO[bytes], message: Any) -> None:
    out.write(frame(message))
    out.flush()


def read_frame(inp: IO[bytes]) -> Any:
    """The next frame, or None at the end of the input (the server closed the pipe)."""
    head = inp.read(LENGTH.size)
    if len(head) < LENGTH.size:
        return None
    (size,) = LENGTH.unpack(head)
    return pickle.loads(inp.read(size))


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer requests until the server closes the pipe; one connection per database, kept."""
    connections: dict[str, sqlite3.Connection] = {}
    while (request := read_frame(inp)) is not None:
        path, sql, params, batch_rows = request
        stage = "open"
        try:
            conn = connections.get(path) or connections.setdefault(path, connect(path))
            stage = "query"
            cursor = conn.execute(sql, params)
            write_frame(out, ("columns", [d[0] for d in cursor.description or ()]))
            while rows := cursor.fetchmany(batch_rows):
                write_frame(out, ("rows", rows))
            cursor.close()
            write_frame(out, ("end",))
        except sqlite3.Error as exc:
            if not is_statement_error(exc) and path in connections:
                connections.pop(path).close()
            write_frame(out, ("error", stage, str(exc), getattr(exc, "sqlite_errorcode", None)))


if __name__ == "__main__":
    # Ctrl-C in a terminal reaches the whole process group: the server decides when its workers stop
    # (it kills them), and a worker whose server is gone sees its input end and exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    serve(sys.stdin.buffer, sys.stdout.buffer)
