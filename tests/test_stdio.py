"""`emcp stdio`: one MCP session on stdin/stdout, as local clients spawn it.

The official SDK client drives a real process; raw pipes check what the SDK
client would hide (error lines, nothing but JSON-RPC on stdout, exit codes);
in-memory streams let the session loop be checked against the server's own
statistics (queries interrupted, sessions gone).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import trio
import trio.testing
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from emcp import EmcpServer, Settings, load_settings
from emcp.server import open_core
from emcp.transport.stdio import LineSplitter, serve_stdio_session
from tests.conftest import SLOW_SQL, rpc

_INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "raw", "version": "0"},
}
_SLOW = {"name": "sql", "arguments": {"database": "new_company", "sql": SLOW_SQL}}


def _line(method: str, request_id: int | None = None, **params: Any) -> bytes:
    return orjson.dumps(rpc(method, request_id, **params)) + b"\n"


class LineReader:
    """Whole JSON lines from a byte stream; every line must be JSON-RPC 2.0."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = bytearray()

    async def message(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            assert chunk, f"output ended; unterminated: {bytes(self._buffer)!r}"
            self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer[:] = rest
        message = orjson.loads(line)
        assert message["jsonrpc"] == "2.0", line
        return message

    async def response(self, request_id: int) -> dict[str, Any]:
        """The response to `request_id`, skipping notifications on the way."""
        while True:
            message = await self.message()
            if message.get("id") == request_id:
                return message
            assert "method" in message, message  # only notifications may come in between

    async def rest(self) -> bytes:
        """Everything left until the stream ends."""
        while chunk := await self._stream.receive_some():
            self._buffer += chunk
        return bytes(self._buffer)


# -- the official SDK client against a real `emcp stdio` process ---------------


@asynccontextmanager
async def stdio_session(demo_dir: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "emcp", "stdio", "--data-dir", str(demo_dir)])
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _server_statistics(session: ClientSession) -> dict[str, Any]:
    result = await session.call_tool("node_status", {})
    return result.structured_content["server"]


async def test_sdk_client_lists_queries_and_runs_calls_concurrently(demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with stdio_session(demo_dir) as session:
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"query", "sql", "list_databases"} <= names
            result = await session.call_tool("query", {"database": "new_company", "table": "sensor", "limit": 5})
            assert not result.is_error
            assert len(result.structured_content["rows"]) == 5

            counts: dict[int, Any] = {}

            async def count(limit: int) -> None:
                args = {"database": "new_company", "sql": f"SELECT count(*) FROM (SELECT 1 FROM sensor LIMIT {limit})"}
                counts[limit] = (await session.call_tool("sql", args)).structured_content["rows"]

            async with trio.open_nursery() as nursery:
                for limit in range(1, 9):
                    nursery.start_soon(count, limit)
            assert counts == {limit: [[limit]] for limit in range(1, 9)}


async def test_sdk_client_cancels_a_slow_query_and_the_session_goes_on(demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with stdio_session(demo_dir) as session:
            with trio.CancelScope() as call_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.call_tool, "sql", _SLOW["arguments"])
                    # Ask the server itself until its query is running (each ask is a real round trip).
                    while (await _server_statistics(session))["queries_running"] < 1:
                        pass
                    # Cancelling the caller makes the SDK client send notifications/cancelled.
                    call_scope.cancel()
            # The query stops first; the request settles (and is counted as cancelled) just after.
            while (stats := await _server_statistics(session))["queries_running"] or not stats["cancellations"]:
                pass
            assert stats["queries_interrupted"] == 1
            assert stats["cancellations"] == 1
            result = await session.call_tool("list_databases", {})
            assert result.structured_content == {"databases": ["new_company"]}


# -- raw pipes ---------------------------------------------------------------------


@asynccontextmanager
async def raw_process(demo_dir: Path) -> AsyncIterator[trio.Process]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "emcp", "stdio", "--data-dir", str(demo_dir)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        process.kill()
        await process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


async def test_bad_lines_get_error_lines_and_the_session_goes_on(demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with raw_process(demo_dir) as process:
            assert process.stdin is not None and process.stdout is not None and process.stderr is not None
            out = LineReader(process.stdout)
            await process.stdin.send_all(b"this is not json\n")
            error = await out.message()
            assert error["id"] is None and error["error"]["code"] == -32700
            await process.stdin.send_all(b'{"jsonrpc": "1.0", "id": 7, "method": "ping"}\n[1, 2]\n\n')
            for _ in range(2):
                error = await out.message()
                assert error["id"] is None and error["error"]["code"] == -32600
            await process.stdin.send_all(_line("initialize", 1, **_INITIALIZE))
            initialized = await out.response(1)
            assert initialized["result"]["serverInfo"]["name"]
            await process.stdin.send_all(_line("notifications/initialized") + _line("tools/list", 2))
            tools = await out.response(2)
            assert "query" in {tool["name"] for tool in tools["result"]["tools"]}
            await process.stdin.aclose()
            assert await process.wait() == 0
            # stdout held JSON-RPC lines and nothing else: no banner, no logs.
            assert await out.rest() == b""
            errors = b""
            while chunk := await process.stderr.receive_some():
                errors += chunk
            assert b"stdio session" in errors  # the logs went to stderr


async def test_closing_stdin_interrupts_a_slow_query_and_exits_zero(demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with raw_process(demo_dir) as process:
            assert process.stdin is not None and process.stdout is not None
            out = LineReader(process.stdout)
            await process.stdin.send_all(_line("initialize", 1, **_INITIALIZE))
            await out.response(1)
            await process.stdin.send_all(
                _line("notifications/initialized") + _line("tools/call", 2, **_SLOW) + _line("ping", 3)
            )
            await out.response(3)  # the reader is past the slow call: it is admitted and running
            # The slow query would run for minutes; the process must stop it and go.
            with trio.fail_after(15):
                await process.stdin.aclose()
                assert await process.wait() == 0


async def test_sigterm_closes_the_session_and_exits_zero(demo_dir: Path) -> None:
    with trio.fail_after(60):
        async with raw_process(demo_dir) as process:
            assert process.stdin is not None and process.stdout is not None
            out = LineReader(process.stdout)
            await process.stdin.send_all(_line("initialize", 1, **_INITIALIZE))
            await out.response(1)
            await process.stdin.send_all(_line("tools/call", 2, **_SLOW) + _line("ping", 3))
            await out.response(3)
            process.terminate()
            with trio.fail_after(15):
                assert await process.wait() == 0


# -- the session loop over in-memory streams ----------------------------------------


@asynccontextmanager
async def memory_session(settings: Settings) -> AsyncIterator[tuple[EmcpServer, trio.abc.SendStream, LineReader]]:
    """`serve_stdio_session` in-process: yields the server, the input's write end and the output reader."""
    to_server, server_input = trio.testing.memory_stream_one_way_pair()
    server_output, from_server = trio.testing.memory_stream_one_way_pair()

    async def serve(server: EmcpServer) -> None:
        async with server_output:  # the caller owns the streams; closing it ends the reader's output
            await serve_stdio_session(server.registry, settings, server_input, server_output)

    async with open_core(settings) as server, trio.open_nursery() as nursery:
        nursery.start_soon(serve, server)
        yield server, to_server, LineReader(from_server)
        nursery.cancel_scope.cancel()


async def _initialize(to_server: trio.abc.SendStream, out: LineReader) -> None:
    await to_server.send_all(_line("initialize", 1, **_INITIALIZE))
    await out.response(1)
    await to_server.send_all(_line("notifications/initialized"))


async def test_end_of_input_interrupts_the_query_at_the_source(settings: Settings) -> None:
    with trio.fail_after(30):
        async with memory_session(settings) as (server, to_server, out):
            stats = server.source.statistics()
            await _initialize(to_server, out)
            await to_server.send_all(_line("tools/call", 2, **_SLOW))
            await stats.watch.wait_until(lambda: stats.running == 1)
            assert server.registry.statistics().sessions_open == 1
            await to_server.aclose()  # end of input
            await server.registry.watch.wait_until(lambda: server.registry.statistics().sessions_open == 0)
            assert stats.interrupted == 1 and stats.running == 0
            assert await out.rest() == b""  # the interrupted call is not answered after the end


async def test_cancelled_notification_frees_the_slot_for_a_waiting_request(demo_dir: Path) -> None:
    settings = load_settings(data_dir=demo_dir, sessions__max_in_flight=1, sessions__admission_timeout=0.5)
    with trio.fail_after(30):
        async with memory_session(settings) as (server, to_server, out):
            stats = server.source.statistics()
            await _initialize(to_server, out)
            await to_server.send_all(_line("tools/call", 2, **_SLOW) + _line("ping", 3))
            await stats.watch.wait_until(lambda: stats.running == 1)
            (session,) = server.registry.sessions()
            # The reader waits for a slot with the ping in hand instead of buffering more input.
            assert session.statistics().requests_in_flight == 1
            await to_server.send_all(_line("notifications/cancelled", requestId=2))
            # Backpressure holds the cancel behind the ping: the ping is refused once the
            # admission timeout passes, then the cancel is read and the query stops.
            refused = await out.response(3)
            assert refused["error"]["code"] == -32000
            assert refused["error"]["data"]["reason"] == "too_many_requests_in_flight"
            await stats.watch.wait_until(lambda: stats.interrupted == 1)
            await to_server.send_all(_line("ping", 4))
            assert (await out.response(4))["result"] == {}


async def test_a_line_over_the_limit_is_refused_and_skipped(demo_dir: Path) -> None:
    settings = load_settings(data_dir=demo_dir, http__max_body_bytes=1024)
    with trio.fail_after(30):
        async with memory_session(settings) as (_server, to_server, out):
            await to_server.send_all(b'{"jsonrpc": "2.0", "method": "x", "params": {"pad": "' + b"x" * 3000)
            error = await out.message()  # answered before the line even ends
            assert error["id"] is None and error["error"]["data"]["reason"] == "body_too_large"
            await to_server.send_all(b"x" * 3000 + b'"}}\n')
            await _initialize(to_server, out)
            await to_server.send_all(_line("ping", 2))
            assert (await out.response(2))["result"] == {}


async def test_duplicate_request_id_gets_an_error_for_that_id(settings: Settings) -> None:
    with trio.fail_after(30):
        async with memory_session(settings) as (server, to_server, out):
            stats = server.source.statistics()
            await _initialize(to_server, out)
            await to_server.send_all(_line("tools/call", 2, **_SLOW))
            await stats.watch.wait_until(lambda: stats.running == 1)
            await to_server.send_all(_line("tools/call", 2, **_SLOW))
            duplicate = await out.response(2)
            assert duplicate["error"]["data"]["reason"] == "duplicate_request_id"
            await to_server.aclose()


def test_line_splitter_bounds_a_line_and_resumes_after_it() -> None:
    splitter = LineSplitter(max_line=4)
    assert splitter.feed(b"ab\ncd") == [b"ab"]
    assert splitter.feed(b"\n") == [b"cd"]
    assert splitter.feed(b"toolong") == [None]  # reported as soon as it is over the bound
    assert splitter.feed(b"still the same line") == []
    assert splitter.feed(b"end\nok\n") == [b"ok"]
    assert splitter.feed(b"12345\n1234\n") == [None, b"1234"]
