"""Large results through the block stream, end to end: bounded memory, backpressure, ownership, endings."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import orjson
import pytest
import trio
from mcp import ClientSession
from mcp.shared.exceptions import MCPError

from emcp import EmcpServer, Settings, open_server
from emcp.blocks.stream import ResultStore
from tests.conftest import mcp_session

# About 240 MB of NDJSON: every sensor reading, five times over.
BIG_SQL = (
    "SELECT s.row_id, s.timestamp, s.device, s.value, s.unit, k.n FROM sensor AS s "
    "CROSS JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5) AS k"
)
BIG_ROWS = 5_000_000
MIDDLE_SQL = "SELECT * FROM sensor WHERE device IN ('dev-001', 'dev-002', 'dev-003') ORDER BY row_id"


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class WindowMonitor:
    """Checks, at every change of any stream, how far producers ran ahead of their readers."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self.max_ahead = 0
        self.max_buffered = 0

    def _check(self) -> bool:
        for stream in self.store.streams():
            stats = stream.statistics()
            self.max_ahead = max(self.max_ahead, stats.blocks_produced - stats.blocks_read)
            self.max_buffered = max(self.max_buffered, stats.blocks_buffered)
        return False  # never done: checks until cancelled

    async def run(self) -> None:
        await self.store.watch.wait_until(self._check)


@pytest.fixture
async def monitored(server: EmcpServer) -> AsyncIterator[WindowMonitor]:
    monitor = WindowMonitor(server.results)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(monitor.run)
        yield monitor
        nursery.cancel_scope.cancel()


async def _start_big(session: ClientSession, sql: str = BIG_SQL) -> dict:
    result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
    assert not result.is_error, result.content[0].text
    out = result.structured_content
    assert out is not None and out["truncated"] is True
    (link,) = [c for c in result.content if c.type == "resource_link"]
    assert str(link.uri) == f"emcp://results/{out['result']['handle']}/0"
    return out


async def _stalled(server: EmcpServer) -> None:
    """Wait until the producer has filled its window (or finished): it is then waiting on the reader."""
    window = server.settings.blocks.window

    def stalled() -> bool:
        streams = server.results.streams()
        if not streams:
            return True  # read to the end already
        stats = streams[0].statistics()
        return stats.done or stats.blocks_produced - stats.blocks_read == window

    await server.results.watch.wait_until(stalled)


async def test_a_big_result_through_resources_read_in_bounded_memory(
    server: EmcpServer, monitored: WindowMonitor
) -> None:
    baseline = rss_bytes()
    peak = baseline
    rows = 0
    with trio.fail_after(240):
        async with mcp_session(server) as session:
            out = await _start_big(session)
            handle = out["result"]["handle"]
            n = 0
            while True:
                if n % 50 == 0:
                    await _stalled(server)  # a reader that pauses: the producer must stop and wait
                try:
                    read = await session.read_resource(f"emcp://results/{handle}/{n}")
                except MCPError as exc:
                    assert "has" in exc.error.message and "blocks" in exc.error.message
                    break
                (content,) = read.contents
                lines = content.text.splitlines()
                if n == 0:
                    assert orjson.loads(lines[0]) == {
                        "columns": ["row_id", "timestamp", "device", "value", "unit", "n"]
                    }
                    lines = lines[1:]
                assert len(content.text.encode()) <= server.settings.blocks.size
                rows += len(lines)
                peak = max(peak, rss_bytes())
                n += 1
    assert rows == BIG_ROWS
    assert n > 400  # the result really was ~240 MB
    assert monitored.max_ahead <= server.settings.blocks.window
    assert monitored.max_buffered <= server.settings.blocks.window
    assert peak - baseline < 128 * 1024 * 1024, f"RSS grew {(peak - baseline) >> 20} MiB"


async def test_a_big_result_through_the_http_download_in_bounded_memory(
    server: EmcpServer, monitored: WindowMonitor
) -> None:
    baseline = rss_bytes()
    peak = baseline
    lines = 0
    tail = b""
    with trio.fail_after(240):
        async with mcp_session(server) as session, httpx2.AsyncClient(timeout=60) as client:
            out = await _start_big(session)
            url = server.url + out["result"]["download_url"]
            async with client.stream("GET", url) as response:
                assert response.status_code == 200
                assert response.headers["content-type"] == "application/x-ndjson"
                chunks = 0
                async for chunk in response.aiter_raw():
                    lines += chunk.count(b"\n")
                    tail = (tail + chunk)[-200:]
                    chunks += 1
                    if chunks % 200 == 0:
                        await _stalled(server)  # pause: the producer waits for us
                        peak = max(peak, rss_bytes())
            stats = server.source.statistics()
            await stats.watch.wait_until(lambda: stats.running == 0)
    assert lines == BIG_ROWS + 1  # the columns line, then the rows
    assert orjson.loads(tail.splitlines()[-1])[0] == 1_000_000  # the last row of the last block
    assert monitored.max_ahead <= server.settings.blocks.window
    assert peak - baseline < 128 * 1024 * 1024, f"RSS grew {(peak - baseline) >> 20} MiB"
    assert not server.results.streams()  # a finished download frees its result


async def test_blocks_concatenate_to_the_rows_of_the_query_run_directly(server: EmcpServer, demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with mcp_session(server) as session:
            out = await _start_big(session, MIDDLE_SQL)
            handle = out["result"]["handle"]
            document = b""
            n = 0
            while True:
                fetched = await session.call_tool("fetch_block", {"handle": handle, "block": n})
                if fetched.is_error:
                    assert "no_such_block" in fetched.content[0].text
                    break
                document += fetched.content[0].text.encode()
                assert fetched.structured_content["block"] == n
                n += 1
    lines = document.splitlines()
    with sqlite3.connect(demo_dir / "new_company.db") as conn:
        direct = [list(row) for row in conn.execute(MIDDLE_SQL)]
    assert orjson.loads(lines[0]) == {"columns": ["row_id", "timestamp", "device", "value", "unit"]}
    assert [orjson.loads(line) for line in lines[1:]] == direct
    assert out["rows"] == direct[: out["row_count"]]  # the inline rows are the result's first rows


async def test_csv_download(server: EmcpServer, demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with mcp_session(server) as session, httpx2.AsyncClient() as client:
            out = await _start_big(session, MIDDLE_SQL)
            response = await client.get(server.url + out["result"]["download_url"] + "&format=csv")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    with sqlite3.connect(demo_dir / "new_company.db") as conn:
        count = len(conn.execute(MIDDLE_SQL).fetchall())
    assert lines[0] == "row_id,timestamp,device,value,unit"
    assert len(lines) == count + 1
    assert lines[1].startswith("2,2026-01-01 00:00:03,dev-001,")


async def test_reading_rules_retry_skip_and_gone(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with mcp_session(server) as session:
            handle = (await _start_big(session))["result"]["handle"]

            async def fetch(n: int) -> tuple[bool, str]:
                result = await session.call_tool("fetch_block", {"handle": handle, "block": n})
                return result.is_error, result.content[0].text

            first = await fetch(0)
            assert await fetch(0) == first  # the last block read can be read again
            skipped = await fetch(5)  # further ahead: blocks 1-4 are skipped
            assert not skipped[0]
            gone = await fetch(3)
            assert gone[0] and "block_gone" in gone[1]
            closed = await session.call_tool("close_result", {"handle": handle})
            assert closed.structured_content == {"handle": handle, "closed": True}
            after = await fetch(6)
            assert after[0] and "unknown_result" in after[1]
            stats = server.source.statistics()
            await stats.watch.wait_until(lambda: stats.interrupted == 1 and stats.running == 0)
    assert not server.results.streams()


async def test_a_foreign_session_cannot_see_a_result(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with mcp_session(server) as owner, mcp_session(server) as other, httpx2.AsyncClient() as client:
            out = await _start_big(owner, MIDDLE_SQL)
            handle = out["result"]["handle"]
            with pytest.raises(MCPError, match="Resource not found"):
                await other.read_resource(f"emcp://results/{handle}/0")
            fetched = await other.call_tool("fetch_block", {"handle": handle, "block": 0})
            assert fetched.is_error and "unknown_result" in fetched.content[0].text
            sessions = {s.id for s in server.registry.sessions()}
            (owner_id,) = [s.owner for s in server.results.streams()]
            (other_id,) = sessions - {owner_id}
            plain = await client.get(f"{server.url}/mcp/results/{handle}")
            as_other = await client.get(f"{server.url}/mcp/results/{handle}", headers={"Mcp-Session-Id": other_id})
            wrong_token = await client.get(f"{server.url}/mcp/results/{handle}?token=guess")
            for response in (plain, as_other, wrong_token):
                assert response.status_code == 404
                assert response.json()["error"]["code"] == "result_not_found"
            # The owner still reads it.
            read = await owner.read_resource(f"emcp://results/{handle}/0")
            assert read.contents


async def test_disconnect_mid_stream_cancels_the_producer_and_the_query(server: EmcpServer) -> None:
    stats = server.source.statistics()
    with trio.fail_after(60):
        async with mcp_session(server) as session:
            handle = (await _start_big(session))["result"]["handle"]
            await session.read_resource(f"emcp://results/{handle}/0")
            await _stalled(server)
            assert stats.running == 1  # the producer holds the query open, waiting on the reader
        # The client is gone: its session ends, and with it the producer and the query.
        await server.results.watch.wait_until(lambda: not server.results.streams())
        await stats.watch.wait_until(lambda: stats.running == 0)
    assert stats.interrupted == 1


async def test_ttl_expiry_cancels_the_producer(settings: Settings) -> None:
    settings.blocks.ttl = 0.3
    with trio.fail_after(60):
        async with open_server(settings) as server, mcp_session(server) as session:
            handle = (await _start_big(session))["result"]["handle"]
            stats = server.source.statistics()
            (stream,) = server.results.streams()
            await stream.closed.wait()  # nobody reads: the TTL ends it
            await stats.watch.wait_until(lambda: stats.running == 0)
            assert stats.interrupted == 1
            assert "expired" in stream.close_reason
            fetched = await session.call_tool("fetch_block", {"handle": handle, "block": 0})
            assert fetched.is_error and "unknown_result" in fetched.content[0].text


async def test_blocks_disabled_truncates_with_a_hint(settings: Settings) -> None:
    settings.blocks.enabled = False
    with trio.fail_after(60):
        async with open_server(settings) as server, mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": BIG_SQL})
            stats = server.source.statistics()
            await stats.watch.wait_until(lambda: stats.running == 0)
    out = result.structured_content
    assert out["truncated"] is True and "result" not in out
    assert "blocks are disabled" in out["truncated_reason"]
    assert [c.type for c in result.content] == ["text"]


async def test_too_many_open_results_falls_back_to_truncation(settings: Settings) -> None:
    settings.blocks.max_per_session = 1
    with trio.fail_after(60):
        async with open_server(settings) as server, mcp_session(server) as session:
            first = await _start_big(session, MIDDLE_SQL)
            second = (await session.call_tool("sql", {"database": "new_company", "sql": MIDDLE_SQL})).structured_content
            assert "result" in first and "result" not in second
            assert "close_result" in second["truncated_reason"]


async def test_progress_while_waiting_for_blocks(server: EmcpServer) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with trio.fail_after(60):
        async with mcp_session(server) as session:
            handle = (await _start_big(session, MIDDLE_SQL))["result"]["handle"]
            await session.call_tool("fetch_block", {"handle": handle, "block": 3}, progress_callback=on_progress)
    assert seen and seen == sorted(seen) and seen[-1] > 0
