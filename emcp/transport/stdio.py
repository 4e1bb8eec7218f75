"""The stdio transport: one MCP session over a byte stream pair, one JSON-RPC message per line.

`emcp stdio` runs this over the process's stdin and stdout, for local clients
that spawn the server themselves. The session is an ordinary registry session
(transport "stdio"), so it has the HTTP transports' guarantees: its requests
run in its nursery, at most `max_in_flight` of them at once (the reader waits
for a slot before reading on, so a flooding client is slowed down, not
buffered), and `notifications/cancelled` or the end of input stops their
queries at the source.

The reader holds at most one line of `http.max_body_bytes` (the same limit as
an HTTP body) plus one read; a longer line is answered with an error and
skipped. Input that is not a JSON-RPC message is answered with a JSON-RPC
error line and the session goes on, as it would with a 400 on HTTP.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable

import trio
from mcp.shared.message import SessionMessage

from emcp.nursery import SessionClosed, SessionRegistry
from emcp.settings import Settings
from emcp.transport.frame_errors import refusal, take
from emcp.transport.outbound import message_json

logger = logging.getLogger(__name__)

_READ_SIZE = 64 * 1024


def encode_lines(batch: list[SessionMessage]) -> bytes:
    """A batch of server messages as newline-terminated JSON, joined for a single write.

    Each message is exactly one line: its JSON holds no raw newline.
    """
    return b"".join(message_json(item.message) + b"\n" for item in batch)


class LineSplitter:
    """Sans-IO line framing with a bound: feed bytes, get complete lines and over-long-line notices.

    A line over `max_line` bytes is dropped as it arrives (never held whole)
    and reported once as `None` in the output, so the caller can answer it.
    """

    __slots__ = ("_buffer", "_discarding", "max_line")

    def __init__(self, max_line: int) -> None:
        self.max_line = max_line
        self._buffer = bytearray()
        self._discarding = False

    def feed(self, data: bytes) -> list[bytes | None]:
        out: list[bytes | None] = []
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._discarding:
                self._discarding = False  # the tail of a line already reported
            elif len(line) > self.max_line:
                out.append(None)
            else:
                out.append(line)
        if len(self._buffer) > self.max_line:
            if not self._discarding:
                out.append(None)
            self._discarding = True
            self._buffer.clear()
        return out


async def serve_stdio_session(
    registry: SessionRegistry,
    settings: Settings,
    receive: trio.abc.ReceiveStream,
    send: trio.abc.SendStream,
) -> None:
    """Serve one session over `receive`/`send` until input ends, the session ends, or we are cancelled.

    Whichever happens first, the session is closed (cancelling its requests and
    their queries) and this returns only once it has fully ended, so the caller
    can exit knowing no query is still running.
    """
    session = await registry.open_session("stdio")
    # The reader's error lines and the writer's batches share the output: one
    # whole write at a time, so lines never interleave.
    write_lock = trio.Lock()

    async def write(data: bytes) -> None:
        async with write_lock:
            await send.send_all(data)

    async def read_input() -> None:
        max_line = settings.http.max_body_bytes
        splitter = LineSplitter(max_line)
        while data := await receive.receive_some(_READ_SIZE):
            for line in splitter.feed(data):
                if line is None:
                    error = refusal("body_too_large", f"the line is over {max_line} bytes")
                elif line.strip():  # blank lines carry nothing; skip them quietly
                    error = await take(session, line)
                else:
                    error = None
                if error is not None:
                    await write(error + b"\n")
        session.close("end of input")

    async def write_output() -> None:
        while True:
            batch = await session.next_outbound()
            await write(encode_lines(batch))
            session.acknowledge(batch)

    try:
        async with trio.open_nursery() as nursery:

            async def stop_after(part: Callable[[], Awaitable[None]]) -> None:
                """Either side ending ends both: no reader without a writer, nor the reverse."""
                try:
                    await part()
                except SessionClosed:
                    pass  # the session ended on its own (dispatcher gone, idle timeout)
                except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                    logger.info("stdio session %s: the peer went away: %r", session.log_id, exc)
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_after, read_input)
            nursery.start_soon(stop_after, write_output)
    finally:
        session.close("stdio transport stopped")  # a no-op if it ended already; the first reason stays
        with trio.CancelScope(shield=True):
            await session.closed.wait()
    logger.info("stdio session %s ended: %s", session.log_id, session.close_reason)


def open_stdio_streams() -> tuple[trio.lowlevel.FdStream, trio.lowlevel.FdStream]:
    """Trio streams over duplicates of fds 0 and 1.

    Duplicates, so closing the streams leaves the process's own stdin/stdout
    open. FdStream puts the (shared) file description in non-blocking mode and
    restores it on close; nothing in emcp writes to `sys.stdout` meanwhile.
    """
    return trio.lowlevel.FdStream(os.dup(0)), trio.lowlevel.FdStream(os.dup(1))
