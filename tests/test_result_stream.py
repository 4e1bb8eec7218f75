"""One result stream and any sequence of reads: the reading rules hold, the window holds, the query ends.

Model-based: the same query is first read block by block to the end, which
gives the blocks every reader must see; then a fresh stream of it is read in
an order Hypothesis picks, and each answer is checked against the rules
(the next block or one further ahead; the last one returned again as a
retry; an earlier one is gone; past the end, the stream is done if nothing is
left unread, else the unread blocks stay) while the producer's window is
checked at every change.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from emcp.blocks.encoding import Block
from emcp.blocks.stream import QueryRequest, ResultStore, ResultStream, StreamError
from emcp.settings import BlocksSettings
from emcp.sources.sqlite import SqliteSource

SQL = "SELECT * FROM sensor ORDER BY row_id LIMIT 3000"


async def _progress(done: float, total: float | None, message: str | None) -> None:
    pass


def _query(source: SqliteSource) -> QueryRequest:
    return QueryRequest(source, "new_company", SQL, (), batch_rows=200, max_inline_rows=50, max_inline_bytes=64 * 1024)


async def _start(nursery: trio.Nursery, store: ResultStore, source: SqliteSource) -> ResultStream:
    stream = store.create(owner="owner", caller="anonymous")
    inline = await nursery.start(stream.run, _query(source), _progress, nullcontext)
    assert inline.truncated
    return stream


async def _every_block(source: SqliteSource, blocks: BlocksSettings) -> list[Block]:
    async with trio.open_nursery() as nursery:
        stream = await _start(nursery, ResultStore(blocks), source)
        read: list[Block] = []
        with pytest.raises(StreamError, match="the result has"):
            while True:
                read.append(await stream.read(len(read)))
    return read


@given(
    reads=st.lists(st.integers(min_value=0, max_value=18), min_size=1, max_size=12),
    window=st.integers(min_value=1, max_value=3),
)
@settings(max_examples=40)
async def test_any_order_of_reads_follows_the_rules(demo_dir: Path, reads: list[int], window: int) -> None:
    blocks = BlocksSettings(size=16 * 1024, window=window, ttl=0)
    source = SqliteSource(demo_dir)
    try:
        with trio.fail_after(30):
            every = await _every_block(source, blocks)
            assert 8 <= len(every) < 18, len(every)
            store = ResultStore(blocks)
            ahead = 0

            def watch_window() -> bool:
                nonlocal ahead
                for open_stream in store.streams():
                    ahead = max(ahead, open_stream.statistics().blocks_buffered)
                return False

            async with trio.open_nursery() as nursery:
                nursery.start_soon(store.watch.wait_until, watch_window)
                stream = await _start(nursery, store, source)
                last, next_unread, ended = None, 0, False
                for n in reads:
                    if n == last:  # a retry of the block last returned, allowed even once the stream has ended
                        assert (await stream.read(n)) == every[n]
                    elif ended:
                        with pytest.raises(StreamError) as gone:
                            await stream.read(n)
                        assert gone.value.code in ("block_gone", "result_closed")
                    elif n < next_unread:
                        with pytest.raises(StreamError) as gone:
                            await stream.read(n)
                        assert gone.value.code == "block_gone"
                    elif n < len(every):  # the next one, or further ahead: the ones between are skipped
                        assert (await stream.read(n)) == every[n]
                        last, next_unread = n, n + 1
                    else:
                        with pytest.raises(StreamError) as past:
                            await stream.read(n)
                        assert past.value.code == "no_such_block"
                        # Once the producer knows the end, nothing unread is skipped; before, all of it was.
                        ended = stream.close_reason == "read to the end"
                        assert ended == (stream.blocks_read == len(every))
                stream.close("done")
                await stream.closed.wait()
                nursery.cancel_scope.cancel()
            assert ahead <= window
            assert not store.streams()
            stats = source.statistics()
            assert stats.running == 0 and stats.started == stats.completed + stats.interrupted
    finally:
        await source.aclose()


async def test_a_read_past_a_known_end_skips_nothing(demo_dir: Path) -> None:
    blocks = BlocksSettings(size=16 * 1024, window=3, ttl=0)
    source = SqliteSource(demo_dir)
    try:
        with trio.fail_after(30):
            every = await _every_block(source, blocks)
            store = ResultStore(blocks)
            async with trio.open_nursery() as nursery:
                stream = await _start(nursery, store, source)
                unread = len(every) - blocks.window
                assert await stream.read(unread - 1) == every[unread - 1]
                # The producer can now put the rest in the window and learn the end.
                await store.watch.wait_until(lambda: stream.total_blocks is not None)
                with pytest.raises(StreamError, match=f"the next unread is {unread}") as past:
                    await stream.read(len(every) + 5)
                assert past.value.code == "no_such_block"
                assert [await stream.read(n) for n in range(unread, len(every))] == every[unread:]
                with pytest.raises(StreamError, match="the result has"):
                    await stream.read(len(every))  # now nothing is left: read to the end
                assert stream.close_reason == "read to the end"
                nursery.cancel_scope.cancel()
    finally:
        await source.aclose()
