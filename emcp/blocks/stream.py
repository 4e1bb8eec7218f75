"""One large result: the producer that reads it, its window of encoded blocks, and its reader.

The producer task lives in the nursery of the session that asked for the
result. It runs the query, hands the first rows back to the tool call that
started it (`nursery.start` returns them), then keeps encoding the rest into
blocks and sending them through a channel that holds `window` blocks. When the
reader stops, the channel fills, the producer waits in `send`, and the source
is not read further: memory is bounded by the window, whatever the result's
size. Closing the stream, its TTL, or the end of the session cancels the
producer, which stops the source query.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass

import trio

from emcp.blocks.encoding import Block, BlockEncoder
from emcp.errors import ActionableError
from emcp.observe import Watch
from emcp.settings import BlocksSettings
from emcp.sources.base import Params, Source, SourceError
from emcp.tools.results import InlineResult, collect_rows

logger = logging.getLogger(__name__)

Progress = Callable[[float, float | None, str | None], Awaitable[None]]

NDJSON = "application/x-ndjson"


class StreamError(ActionableError):
    """A block that cannot be read (`block_gone`, `no_such_block`, `result_closed`, `stream_failed`)."""


@dataclass(frozen=True, slots=True)
class StreamStatistics:
    handle: str
    owner: str
    blocks_produced: int
    blocks_read: int
    blocks_buffered: int
    rows_produced: int
    bytes_produced: int
    done: bool
    closed: bool


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """What the producer runs, and the inline budget it hands back first."""

    source: Source
    database: str
    sql: str
    params: Params
    batch_rows: int
    max_inline_rows: int
    max_inline_bytes: int


class ResultStream:
    def __init__(self, owner: str, caller: str, settings: BlocksSettings, store: ResultStore) -> None:
        self.handle = secrets.token_hex(16)
        #: A capability for the HTTP download, handed only to the session that owns the result.
        self.token = secrets.token_urlsafe(16)
        self.owner = owner
        #: The authenticated caller who asked: the download also needs their credentials.
        self.caller = caller
        self._settings = settings
        self._store = store
        self._on_change = store.watch.changed
        self._send, self._receive = trio.open_memory_channel[Block](settings.window)
        self._scope = trio.CancelScope()
        self._reading = trio.Lock()  # blocks go out in order: one reader at a time
        #: The block `read` returned last: a retry gets it again, even once the stream has ended.
        self._last: Block | None = None
        self.columns: list[str] = []
        self.blocks_produced = 0
        self.blocks_read = 0
        self.rows_produced = 0
        self.bytes_produced = 0
        #: Set once the producer has read the whole result.
        self.total_blocks: int | None = None
        self.total_rows: int | None = None
        self.error: str | None = None
        #: False while the query is still deciding whether its result fits inline.
        self.streaming = False
        self.close_reason = ""
        self.closed = trio.Event()

    # -- producer --------------------------------------------------------------

    async def run(
        self,
        query: QueryRequest,
        progress: Progress,
        track_query: Callable[[], AbstractContextManager[None]],
        *,
        task_status: trio.TaskStatus[InlineResult],
    ) -> None:
        """Run the query; hand the inline part to the caller; stream the rest until read, closed or expired.

        Errors before the hand-off propagate to the caller (the tool call
        reports them); after it they are the stream's, reported to its reader.
        """
        started = False
        try:
            with self._scope:
                try:
                    with track_query():
                        async with query.source.open_query(
                            query.database, query.sql, query.params, batch_rows=query.batch_rows
                        ) as rows:
                            inline = await collect_rows(
                                rows,
                                max_rows=query.max_inline_rows,
                                max_bytes=query.max_inline_bytes,
                                progress=progress,
                            )
                            self.columns = inline.columns
                            started = True
                            task_status.started(inline)
                            if not inline.truncated:
                                return
                            self.streaming = True
                            self._store.opened += 1
                            self._touch()
                            encoder = BlockEncoder(inline.columns, self._settings.size)
                            await self._send_blocks(encoder.add(inline.rows))
                            await self._send_blocks(encoder.add(inline.overflow))
                            async for batch in rows:
                                await self._send_blocks(encoder.add(batch))
                            last = encoder.finish()
                            await self._send_blocks([last] if last else [])
                    self.total_blocks, self.total_rows = self.blocks_produced, self.rows_produced
                except SourceError as exc:
                    if not started:
                        raise
                    # The reader gets the blocks already made, then this error.
                    self.error = f"the query failed while streaming: {exc.message}"
                    logger.info("result %s: %s", self.handle, self.error)
                self._send.close()
                self._on_change()
                # Keep the last blocks (and the re-readable last one) until read to the end, closed or expired.
                await trio.sleep_forever()
        finally:
            if self._scope.cancelled_caught and not self.close_reason:
                self.close_reason = "expired: it was not read for the TTL"
            self._send.close()
            self.closed.set()
            self._store.discard(self)

    async def _send_blocks(self, blocks: list[Block]) -> None:
        for block in blocks:
            await self._send.send(block)  # waits while the window is full: backpressure to the source
            self.blocks_produced += 1
            self.rows_produced += block.rows
            self.bytes_produced += len(block.data)
            self._on_change()

    def _touch(self) -> None:
        self._scope.deadline = trio.current_time() + self._settings.ttl if self._settings.ttl else math.inf

    def close(self, reason: str) -> None:
        """Stop the producer (and with it the source query) and drop the blocks. Sync and idempotent."""
        if not self.close_reason:
            self.close_reason = reason
        self._scope.cancel()
        self._receive.close()
        self._store.discard(self)  # gone for callers at once, even before the producer has unwound

    # -- reader ----------------------------------------------------------------

    async def read(self, n: int, progress: Progress | None = None) -> Block:
        """Block `n`: the next one, the last one again (a retry), or one further ahead (skipping those between).

        Past the end, once the producer knows where the end is, nothing is
        skipped: the unread blocks stay readable. Only a reader with nothing
        left unread ends the stream that way (read to the end).
        """
        async with self._reading:
            self._scope.deadline = math.inf  # a waiting reader is not idle
            try:
                if self._last is not None and n == self._last.index:
                    return self._last
                if n < self.blocks_read:
                    again = f" ({self._last.index})" if self._last is not None else ""
                    raise StreamError(
                        "block_gone",
                        f"block {n} was read already or skipped; blocks are read in order and only the last one "
                        f"returned{again} can be read again",
                    )
                total = self.total_blocks
                if total is not None and n >= total and self.blocks_read < total:
                    raise StreamError(
                        "no_such_block",
                        f"the result has {total} blocks (0 to {total - 1}); the next unread is {self.blocks_read}",
                    )
                while True:
                    block = await self._next()
                    if progress is not None:
                        await progress(self.rows_produced, self.total_rows, f"{self.rows_produced} rows produced")
                    if block.index == n:
                        self._last = block
                        return block
            finally:
                if not self.closed.is_set():
                    self._touch()

    async def _next(self) -> Block:
        try:
            block = await self._receive.receive()
        except trio.EndOfChannel:
            if self.error:
                self.close("failed")
                raise StreamError("stream_failed", self.error) from None
            # Read past the end: the reader is done with the result.
            self.close("read to the end")
            raise StreamError(
                "no_such_block", f"the result has {self.total_blocks} blocks (0 to {self.total_blocks - 1})"
            ) from None
        except trio.ClosedResourceError:
            raise StreamError("result_closed", f"the result was closed ({self.close_reason})") from None
        self.blocks_read += 1
        self._on_change()
        return block

    async def remaining(self) -> AsyncIterator[Block]:
        """Every block not read yet, in order: the HTTP download."""
        async with self._reading:
            self._scope.deadline = math.inf
            while True:
                try:
                    yield await self._next()
                except StreamError as exc:
                    if exc.code == "no_such_block":
                        return
                    raise

    def statistics(self) -> StreamStatistics:
        return StreamStatistics(
            handle=self.handle,
            owner=self.owner,
            blocks_produced=self.blocks_produced,
            blocks_read=self.blocks_read,
            blocks_buffered=self._send.statistics().current_buffer_used,
            rows_produced=self.rows_produced,
            bytes_produced=self.bytes_produced,
            done=self.total_blocks is not None,
            closed=self.closed.is_set(),
        )


class TooManyResults(Exception):
    """The session or the server holds its maximum of open result streams; the message says which."""


class ResultStore:
    """Every open result stream of the server, by handle; a handle is only ever found for its owner."""

    def __init__(self, settings: BlocksSettings) -> None:
        self.settings = settings
        self._streams: dict[str, ResultStream] = {}
        self.watch = Watch()
        self.opened = 0
        self.bytes_streamed = 0
        # Results refused a stream because a limit was reached (they come back truncated instead).
        self.rejected = 0

    def create(self, owner: str, caller: str) -> ResultStream:
        """A stream for a query about to run; it counts against the limits once it really streams."""
        streaming = self.streams()
        owned = sum(1 for s in streaming if s.owner == owner)
        if owned >= self.settings.max_per_session:
            self.rejected += 1
            raise TooManyResults(
                f"this session holds {owned} open results already; close_result the ones you are done with"
            )
        if len(streaming) >= self.settings.max_streams:
            self.rejected += 1
            raise TooManyResults(
                f"the server streams its maximum of {len(streaming)} results; narrow the query or retry later"
            )
        stream = ResultStream(owner, caller, self.settings, self)
        self._streams[stream.handle] = stream
        return stream

    def discard(self, stream: ResultStream) -> None:
        if self._streams.pop(stream.handle, None) is not None:
            self.bytes_streamed += stream.bytes_produced
            self.watch.changed()

    def get(self, handle: str, owner: str) -> ResultStream | None:
        stream = self._streams.get(handle)
        if stream is None or stream.owner != owner or stream.closed.is_set():
            return None
        return stream

    def get_with_token(self, handle: str, token: str) -> ResultStream | None:
        stream = self._streams.get(handle)
        if stream is None or stream.closed.is_set() or not secrets.compare_digest(stream.token, token):
            return None
        return stream

    def close_all(self, reason: str) -> None:
        """Close every stream: at shutdown, for those that no ending session takes down with it."""
        for stream in list(self._streams.values()):
            stream.close(reason)

    def streams(self) -> list[ResultStream]:
        """The results streaming now (not the queries still deciding whether they fit inline)."""
        return [s for s in self._streams.values() if s.streaming]

    def statistics(self) -> dict[str, int]:
        return {
            "result_streams_open": len(self.streams()),
            "result_streams_opened": self.opened,
            "result_streams_rejected": self.rejected,
            "result_bytes_streamed": self.bytes_streamed + sum(s.bytes_produced for s in self._streams.values()),
        }
