"""Sessions as nurseries: concurrency, cancellation to the source, disconnects, limits, idle timeout."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx2
import orjson
import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from emcp import EmcpServer, Settings, open_server
from emcp.client import websocket_client
from tests.conftest import SLOW_SQL, mcp_session, rpc, tasks_under, wait_running
from tests.rawsse import RawSse, open_raw_sse


async def test_twenty_concurrent_calls_in_one_session(server: EmcpServer) -> None:
    results: dict[int, int] = {}
    with trio.fail_after(30):
        async with mcp_session(server) as session:

            async def one(i: int) -> None:
                sql = f"SELECT count(*) FROM sensor WHERE device = 'dev-{i:03d}'"
                result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
                results[i] = result.structured_content["rows"][0][0]

            async with trio.open_nursery() as nursery:
                for i in range(20):
                    nursery.start_soon(one, i)
    assert len(results) == 20
    assert sum(results.values()) == 20 * 1_000_000 // 50


async def test_fifty_sessions_at_once(server: EmcpServer) -> None:
    answers: list[list[str]] = []
    all_open = trio.Event()

    async def client() -> None:
        async with mcp_session(server) as session:
            if server.registry.statistics().sessions_open == 50:
                all_open.set()
            result = await session.call_tool("list_databases", {})
            answers.append(result.structured_content["databases"])
            await all_open.wait()  # hold every session open until all 50 exist at once

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for _ in range(50):
                nursery.start_soon(client)
    assert answers == [["new_company"]] * 50
    assert server.registry.statistics().sessions_opened == 50


async def test_cancelled_notification_interrupts_the_query_and_session_goes_on(server: EmcpServer) -> None:
    stats = server.source.statistics()
    with trio.fail_after(30):
        async with mcp_session(server) as session:
            slow = {"database": "new_company", "sql": SLOW_SQL}
            async with trio.open_nursery() as others:
                others.start_soon(session.call_tool, "sql", slow)  # a second request that must go on
                with trio.CancelScope() as call_scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(session.call_tool, "sql", slow)
                        await wait_running(server, 2)
                        # Cancelling the caller makes the SDK client send notifications/cancelled.
                        call_scope.cancel()
                await stats.watch.wait_until(lambda: stats.interrupted == 1)
                assert stats.running == 1  # the other request's query is untouched
                others.cancel_scope.cancel()
            await stats.watch.wait_until(lambda: stats.interrupted == 2 and stats.running == 0)
            # The session still answers, and its slot came back.
            result = await session.call_tool("list_databases", {})
            assert result.structured_content == {"databases": ["new_company"]}
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            assert live.statistics().cancellations == 2


async def test_disconnect_ends_session_tasks_and_queries_within_100ms(server: EmcpServer) -> None:
    stats = server.source.statistics()
    with trio.fail_after(30):
        with trio.CancelScope() as client_scope:
            async with mcp_session(server) as session, trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                await wait_running(server, 3)
                (live,) = server.registry.sessions()
                owned = tasks_under(live.nursery.parent_task)
                assert len(owned) >= 4  # the dispatcher and the three request tasks at least
                client_scope.cancel()  # drop the connection with three queries running
        disconnected_at = trio.current_time()
        with trio.fail_after(0.1):
            await server.registry.watch.wait_until(lambda: server.registry.statistics().sessions_open == 0)
            await stats.watch.wait_until(lambda: stats.running == 0)
        elapsed = trio.current_time() - disconnected_at
    assert stats.interrupted == 3, stats
    assert live.closed.is_set()
    assert all(task.coro.cr_frame is None for task in owned)  # every task the session owned has ended
    assert server.registry.statistics().queries_running == 0
    assert elapsed < 0.1


async def test_call_timeout_stops_the_query(settings: Settings) -> None:
    settings.query.timeout = 0.2
    with trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": SLOW_SQL})
            stats = server.source.statistics()
            assert stats.interrupted == 1 and stats.running == 0
    assert result.is_error
    assert "Error (timeout)" in result.content[0].text


async def test_idle_session_is_closed(settings: Settings) -> None:
    settings.sessions.idle_timeout = 0.2
    with trio.fail_after(20):
        async with open_server(settings) as server:
            # A bare SSE stream: with a full client, a slow moment of the machine could let the idle
            # timeout end the session during its own initialize.
            sse, _ = await _raw_session(server)
            async with sse.stream:
                (live,) = server.registry.sessions()
                await live.closed.wait()
                assert live.close_reason == "idle timeout"


async def _raw_session(server: EmcpServer) -> tuple[RawSse, str]:
    """Open GET /mcp/sse by hand and return it with the messages URL it names."""
    sse = await open_raw_sse(server.sse_url)
    data = await sse.read_until(b"\n\n")
    path = data.split(b"data: ")[1].split(b"\n")[0].decode()
    return sse, server.url + path


INIT = rpc("initialize", 0, protocolVersion="2024-11-05", capabilities={}, clientInfo={"name": "t", "version": "1"})


async def test_in_flight_limit_admits_after_a_cancel(settings: Settings) -> None:
    settings.sessions.max_in_flight = 2
    settings.sessions.admission_timeout = 0.3
    with trio.fail_after(30):
        async with open_server(settings) as server, httpx2.AsyncClient() as client:
            sse, url = await _raw_session(server)
            assert (await client.post(url, json=INIT)).status_code == 202
            await client.post(url, json=rpc("notifications/initialized"))
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            slow = {"name": "sql", "arguments": {"database": "new_company", "sql": SLOW_SQL}}
            for i in (1, 2):
                assert (await client.post(url, json=rpc("tools/call", i, **slow))).status_code == 202
            await wait_running(server, 2)
            third = await client.post(url, json=rpc("tools/call", 3, **slow))
            assert third.status_code == 429
            assert third.json()["error"]["code"] == "too_many_requests_in_flight"
            duplicate = await client.post(url, json=rpc("tools/call", 1, **slow))
            assert duplicate.status_code == 400 and duplicate.json()["error"]["code"] == "duplicate_request_id"
            await client.post(url, json=rpc("notifications/cancelled", requestId=1))
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 1)
            assert (await client.post(url, json=rpc("ping", 4))).status_code == 202
            await sse.stream.aclose()


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"{not json", 400, "invalid_json"),
        (b"", 400, "empty_body"),
        (b"[1, 2]", 400, "batch_not_supported"),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}', 400, "invalid_jsonrpc"),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}', 400, "invalid_jsonrpc"),
        (b'{"jsonrpc": "2.0", "id": 1}', 400, "invalid_jsonrpc"),
        (b"x" * (1024 * 1024 + 1), 413, "body_too_large"),
    ],
)
async def test_bad_posts_get_json_4xx_and_lose_nothing(server: EmcpServer, body: bytes, status: int, code: str) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session, httpx2.AsyncClient() as client:
            (live,) = server.registry.sessions()
            response = await client.post(
                f"{server.url}/mcp/messages/{live.id}", content=body, headers={"content-type": "application/json"}
            )
            assert response.status_code == status
            assert response.headers["content-type"] == "application/json"
            assert response.json()["error"]["code"] == code
            # The session is untouched and still answers.
            assert (await session.call_tool("list_databases", {})).structured_content == {"databases": ["new_company"]}


async def test_unknown_session_and_routes_are_json_errors(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with httpx2.AsyncClient() as client:
            ping = orjson.dumps(rpc("ping", 1))
            unknown = await client.post(f"{server.url}/mcp/messages/{'0' * 32}", content=ping)
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "session_not_found"
            by_query = await client.post(f"{server.url}/mcp/messages?session_id={'0' * 32}", content=ping)
            assert by_query.status_code == 404
            missing = await client.post(f"{server.url}/mcp/messages", content=ping)
            assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_session_id"
            nowhere = await client.get(f"{server.url}/nowhere")
            assert nowhere.status_code == 404 and "error" in nowhere.json()
            wrong_method = await client.put(f"{server.url}/mcp/sse")
            assert wrong_method.status_code == 405 and "error" in wrong_method.json()
            # The messages endpoint is served below Quart: the same JSON errors, the same routes.
            get_messages = await client.get(f"{server.url}/mcp/messages/{'0' * 32}")
            assert get_messages.status_code == 405 and get_messages.headers["allow"] == "POST"
            assert get_messages.json()["error"]["code"] == "method_not_allowed"
            deeper = await client.post(f"{server.url}/mcp/messages/{'0' * 32}/more", content=ping)
            assert deeper.status_code == 404 and "error" in deeper.json()


async def test_session_id_form_and_stream_headers(server: EmcpServer) -> None:
    with trio.fail_after(20):
        sse = await open_raw_sse(server.sse_url)
        assert sse.status == 200
        assert sse.headers["content-type"].startswith("text/event-stream")
        assert sse.headers["cache-control"] == "no-cache, no-transform"
        assert sse.headers["x-accel-buffering"] == "no"
        data = await sse.read_until(b"\n\n")
        (session_id,) = re.findall(rb"event: endpoint\ndata: /mcp/messages/([0-9a-f]+)\n\n", data)
        assert len(session_id) == 32  # 128 random bits, hex
        await sse.stream.aclose()


async def test_keepalive_comment_on_idle_stream(settings: Settings) -> None:
    settings.http.keepalive = 0.05
    with trio.fail_after(20):
        async with open_server(settings) as server:
            sse = await open_raw_sse(server.sse_url)
            await sse.read_until(b": keepalive\n\n")
            await sse.stream.aclose()


async def test_registry_full_is_503(settings: Settings) -> None:
    settings.sessions.max_sessions = 1
    with trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server), httpx2.AsyncClient() as client:
            response = await client.get(server.sse_url)
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "too_many_sessions"
            assert server.registry.statistics().sessions_rejected == 1


async def test_graceful_shutdown_with_sessions_open(settings: Settings) -> None:
    outcomes: list[str] = []

    async def hold_session_with_slow_query(server: EmcpServer) -> None:
        async with mcp_session(server) as session:
            try:
                await session.call_tool("sql", {"database": "new_company", "sql": SLOW_SQL})
            except MCPError as exc:
                outcomes.append(exc.error.message)

    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            async with open_server(settings) as server:
                stats = server.source.statistics()
                for _ in range(3):
                    clients.start_soon(hold_session_with_slow_query, server)
                await wait_running(server, 3)
            # open_server has drained: sessions ended, their queries interrupted, the port closed.
            assert stats.interrupted == 3 and stats.running == 0
            assert server.registry.statistics().sessions_open == 0
    assert outcomes == ["Connection closed"] * 3


@pytest.mark.parametrize("version", ["HTTP/1.1", "HTTP/1.0"])
async def test_connection_close_is_honoured(server: EmcpServer, version: str) -> None:
    """hypercorn's close after a `Connection: close` response used to be cancelled with quart-trio's
    request nursery, leaving the socket open; the client must see EOF."""
    host, port = server.url.removeprefix("http://").split(":")
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(f"GET /nowhere {version}\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        received = b""
        while chunk := await stream.receive_some():
            received += chunk  # ends only when the server closes the connection
        await stream.aclose()
    assert received.startswith(b"HTTP/1.1 404")
    assert received.endswith(b'"}}')


@pytest.mark.parametrize("transport", ["sse", "streamable-http", "websocket"])
async def test_a_session_keeps_nothing_of_the_request_that_opened_it(server: EmcpServer, transport: str) -> None:
    """Tasks copy their spawner's context variables; a session is spawned by a request handler
    whose context holds that request (Quart's request and app contexts), which must not live on
    for as long as the session does."""
    with trio.fail_after(20):
        streams = {
            "sse": lambda: sse_client(server.sse_url),
            "streamable-http": lambda: streamable_http_client(server.url + "/mcp"),
            "websocket": lambda: websocket_client(server.ws_url),
        }[transport]()
        async with streams as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            await session.list_tools()
            (live,) = server.registry.sessions()
            tasks = [live.nursery.parent_task, *tasks_under(live.nursery.parent_task)]
            held = {var.name for task in tasks for var in task.context}
    assert not {"quart.request_ctx", "quart.websocket_ctx", "quart.app_ctx"} & held, held


@pytest.mark.parametrize("path", ["/mcp/messages/{id}", "/mcp"])
async def test_a_chunked_body_over_the_limit_and_a_body_cut_short_lose_nothing(settings: Settings, path: str) -> None:
    """Without a Content-Length the limit is counted as the body arrives; a client that leaves
    half way through its body gets nothing and takes nothing down."""
    settings.http.max_body_bytes = 1000

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 100

    with trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session, httpx2.AsyncClient() as client:
            (live,) = server.registry.sessions()
            url = server.url + path.format(id=live.id)
            headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
            refused = await client.post(url, content=chunks(), headers=headers)
            assert refused.status_code == 413 and "body_too_large" in refused.text
            host, port = server.url.removeprefix("http://").rsplit(":", 1)
            stream = await trio.open_tcp_stream(host, int(port))
            head = f"POST {path.format(id=live.id)} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 500\r\n"
            await stream.send_all(head.encode() + b"content-type: application/json\r\n\r\n" + b'{"jsonrpc"')
            await stream.aclose()  # half a body, then gone
            # The session still answers.
            assert (await session.call_tool("list_databases", {})).structured_content == {"databases": ["new_company"]}
