"""The WebSocket binding at /mcp/ws: the SDK's ClientSession over `websocket_client`, cancellation
to the source, bad frames answered without closing, refusals, and block streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import trio
from mcp import ClientSession
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection

from emcp import EmcpServer, Settings, open_server
from emcp.client import websocket_client
from emcp.client.websocket import open_websocket
from tests.conftest import SLOW_SQL, rpc, wait_running


@asynccontextmanager
async def ws_session(server: EmcpServer) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over the WebSocket binding, with emcp's client transport."""
    async with websocket_client(server.ws_url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


INIT = rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"})


async def _receive(ws: WebSocketConnection) -> dict[str, Any]:
    frame = await ws.get_message()
    assert isinstance(frame, str)  # the server only sends text frames
    return orjson.loads(frame)


@asynccontextmanager
async def raw_session(server: EmcpServer) -> AsyncIterator[WebSocketConnection]:
    """A raw, initialized connection: frames exactly as a client puts them on the wire."""
    async with open_websocket(server.ws_url) as ws:
        assert ws.subprotocol == "mcp"
        await ws.send_message(orjson.dumps(INIT).decode())
        assert (await _receive(ws))["id"] == 0
        await ws.send_message(orjson.dumps(rpc("notifications/initialized")).decode())
        yield ws


async def test_client_session_lists_queries_and_runs_twenty_calls_at_once(server: EmcpServer) -> None:
    results: dict[int, int] = {}
    with trio.fail_after(30):
        async with ws_session(server) as session:
            (live,) = server.registry.sessions()
            assert live.transport == "websocket"
            tools = await session.list_tools()
            assert {"query", "sql", "list_databases"} <= {tool.name for tool in tools.tools}
            queried = await session.call_tool("query", {"database": "new_company", "table": "sensor", "limit": 3})
            assert not queried.is_error, queried.content
            assert queried.structured_content["row_count"] == 3
            assert len(queried.structured_content["rows"]) == 3

            async def one(i: int) -> None:
                sql = f"SELECT count(*) FROM sensor WHERE device = 'dev-{i:03d}'"
                result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
                results[i] = result.structured_content["rows"][0][0]

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
    assert sum(results.values()) == 20 * 1_000_000 // 50
    assert server.registry.statistics().sessions_opened == 1


async def test_cancelled_call_interrupts_the_query_and_session_goes_on(server: EmcpServer) -> None:
    stats = server.source.statistics()
    with trio.fail_after(30):
        async with ws_session(server) as session:
            with trio.CancelScope() as call_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                    await wait_running(server, 1)
                    call_scope.cancel()  # the SDK client sends notifications/cancelled
            await stats.watch.wait_until(lambda: stats.interrupted == 1 and stats.running == 0)
            result = await session.call_tool("list_databases", {})
            assert result.structured_content == {"databases": ["new_company"]}
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            assert live.statistics().cancellations == 1


async def test_closing_the_socket_ends_the_session_and_its_queries(server: EmcpServer) -> None:
    stats = server.source.statistics()
    with trio.fail_after(30):
        with trio.CancelScope() as client_scope:
            async with ws_session(server) as session, trio.open_nursery() as nursery:
                for _ in range(2):
                    nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                await wait_running(server, 2)
                (live,) = server.registry.sessions()
                client_scope.cancel()  # leaves websocket_client: the socket closes
        await server.registry.watch.wait_until(lambda: server.registry.statistics().sessions_open == 0)
        await stats.watch.wait_until(lambda: stats.running == 0)
    assert stats.interrupted == 2
    assert live.closed.is_set() and live.close_reason == "client disconnected"


@pytest.mark.parametrize(
    ("frame", "code", "reason"),
    [
        ("{not json", -32700, "invalid_json"),
        ("", -32700, "empty_body"),
        (b'{"jsonrpc": "2.0", "id": 7, "method": "ping"}', -32700, "binary_frame"),
        ("[1, 2]", -32600, "batch_not_supported"),
        ('{"jsonrpc": "1.0", "id": 1, "method": "ping"}', -32600, "invalid_jsonrpc"),
        ('{"jsonrpc": "2.0", "id": 1}', -32600, "invalid_jsonrpc"),
    ],
)
async def test_bad_frames_get_error_frames_and_the_connection_goes_on(
    server: EmcpServer, frame: str | bytes, code: int, reason: str
) -> None:
    with trio.fail_after(20):
        async with raw_session(server) as ws:
            await ws.send_message(frame)
            error = await _receive(ws)
            assert error["jsonrpc"] == "2.0" and error["id"] is None
            assert error["error"]["code"] == code
            assert error["error"]["data"] == {"reason": reason}
            assert error["error"]["message"]
            await ws.send_message(orjson.dumps(rpc("ping", 8)).decode())
            assert await _receive(ws) == {"jsonrpc": "2.0", "id": 8, "result": {}}


async def test_duplicate_and_overloaded_requests_get_error_frames_with_their_ids(settings: Settings) -> None:
    settings.sessions.max_in_flight = 1
    settings.sessions.admission_timeout = 0.2
    slow = {"name": "sql", "arguments": {"database": "new_company", "sql": SLOW_SQL}}
    with trio.fail_after(30):
        async with open_server(settings) as server, raw_session(server) as ws:
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            await ws.send_message(orjson.dumps(rpc("tools/call", 1, **slow)).decode())
            await wait_running(server, 1)
            await ws.send_message(orjson.dumps(rpc("tools/call", 1, **slow)).decode())
            duplicate = await _receive(ws)
            assert duplicate["id"] == 1 and duplicate["error"]["code"] == -32600
            assert "in flight" in duplicate["error"]["message"]
            await ws.send_message(orjson.dumps(rpc("ping", 2)).decode())
            overloaded = await _receive(ws)
            assert overloaded["id"] == 2 and overloaded["error"]["data"]["reason"] == "too_many_requests_in_flight"
            assert "requests in flight" in overloaded["error"]["message"]
            await ws.send_message(orjson.dumps(rpc("notifications/cancelled", requestId=1)).decode())
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            await ws.send_message(orjson.dumps(rpc("ping", 3)).decode())
            assert await _receive(ws) == {"jsonrpc": "2.0", "id": 3, "result": {}}


async def test_upgrade_without_the_subprotocol_is_refused(server: EmcpServer) -> None:
    with trio.fail_after(20):
        with pytest.raises(ConnectionRejected) as rejected:
            async with open_websocket(server.ws_url, subprotocols=()):
                pass
    assert rejected.value.status_code == 400
    assert rejected.value.body is not None
    assert orjson.loads(rejected.value.body)["error"]["code"] == "subprotocol_required"
    assert server.registry.statistics().sessions_opened == 0


async def test_registry_full_refuses_the_upgrade_with_503(settings: Settings) -> None:
    settings.sessions.max_sessions = 1
    with trio.fail_after(20):
        async with open_server(settings) as server, ws_session(server):
            with pytest.raises(ConnectionRejected) as rejected:
                async with websocket_client(server.ws_url):
                    pass
            assert rejected.value.status_code == 503
            assert server.registry.statistics().sessions_rejected == 1


async def test_idle_session_closes_the_socket_with_1001(settings: Settings) -> None:
    settings.sessions.idle_timeout = 0.2
    with trio.fail_after(20):
        async with open_server(settings) as server, raw_session(server) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
    assert closed.value.reason.code == 1001
    assert closed.value.reason.reason == "idle timeout"


async def test_server_shutdown_closes_the_socket_with_1001(settings: Settings) -> None:
    codes: list[int | None] = []

    async def client(server: EmcpServer, *, task_status: trio.TaskStatus[None]) -> None:
        async with raw_session(server) as ws:
            task_status.started()
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            codes.append(closed.value.reason.code)

    with trio.fail_after(20):
        async with trio.open_nursery() as clients, open_server(settings) as server:
            await clients.start(client, server)
    # open_server drained on exit: the session ended and the server closed the socket.
    assert codes == [1001]


async def test_a_message_over_the_size_limit_closes_with_1009(settings: Settings) -> None:
    settings.http.ws_max_message_bytes = 1000
    with trio.fail_after(20):
        async with open_server(settings) as server, raw_session(server) as ws:
            await ws.send_message(orjson.dumps(rpc("ping", 1, pad="x" * 2000)).decode())
            with pytest.raises(ConnectionClosed) as closed:
                await ws.get_message()
            await server.registry.watch.wait_until(lambda: server.registry.statistics().sessions_open == 0)
    assert closed.value.reason.code == 1009


async def test_a_truncated_result_streams_its_blocks_over_the_same_session(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with ws_session(server) as session:
            sql = "SELECT * FROM sensor LIMIT 5000"
            result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
            assert not result.is_error, result.content
            out = result.structured_content
            assert out["truncated"] is True
            handle = out["result"]["handle"]
            read = await session.read_resource(f"emcp://results/{handle}/0")
            (content,) = read.contents
            lines = content.text.splitlines()
            assert orjson.loads(lines[0])["columns"][:3] == ["row_id", "timestamp", "device"]
            assert len(lines) > 1
