"""Streamable HTTP at /mcp: the SDK's `streamable_http_client` on the 2025 eras, `mcp.Client` on
2026-07-28, cancellation and disconnects down to the source, and raw HTTP for the refusals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import Any
from unittest.mock import patch

import httpx2
import orjson
import pytest
import trio
from mcp import Client, ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from emcp import EmcpServer, Settings, open_server
from tests.conftest import SLOW_SQL, rpc, tasks_under, wait_running

MODERN = "2026-07-28"
JSON_AND_EVENTS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


def mcp_url(server: EmcpServer) -> str:
    return server.url + "/mcp"


@asynccontextmanager
async def session_on(server: EmcpServer, version: str) -> AsyncIterator[ClientSession]:
    """A 2025-era session that negotiated `version`, over the SDK's own Streamable HTTP client."""
    async with (
        streamable_http_client(mcp_url(server)) as (read, write),
        ClientSession(read, write) as session,
    ):
        # The SDK's client asks for its latest handshake version; this makes it ask for `version`.
        with patch("mcp.client.session.LATEST_HANDSHAKE_VERSION", version):
            result = await session.initialize()
        assert result.protocol_version == version
        yield session


def modern_meta() -> dict[str, Any]:
    return {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
    }


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {**JSON_AND_EVENTS, "MCP-Protocol-Version": MODERN, "Mcp-Method": method}
    if name is not None:
        headers["Mcp-Name"] = name
    return headers


async def queries_settle(server: EmcpServer, interrupted: int) -> None:
    stats = server.source.statistics()
    await stats.watch.wait_until(lambda: stats.interrupted == interrupted and stats.running == 0)


async def cancel_once_running(server: EmcpServer, call: Awaitable[Any]) -> None:
    """Run `call` and cancel it (as its caller would) once its query runs at the source."""
    with trio.CancelScope() as scope:

        async def cancel_when_running() -> None:
            await wait_running(server, 1)
            scope.cancel()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_when_running)
            await call


async def registry_empty(server: EmcpServer) -> None:
    await server.registry.watch.wait_until(lambda: not server.registry.sessions())


@pytest.mark.parametrize("version", ["2025-11-25", "2025-06-18", "2025-03-26"])
async def test_sdk_client_lists_calls_and_runs_calls_at_once(server: EmcpServer, version: str) -> None:
    with trio.fail_after(30):
        async with session_on(server, version) as session:
            (live,) = server.registry.sessions()
            assert live.transport == "streamable-http"
            tools = await session.list_tools()
            assert {"query", "sql", "list_databases"} <= {tool.name for tool in tools.tools}
            rows: dict[int, int] = {}

            async def call(n: int) -> None:
                result = await session.call_tool("query", {"database": "new_company", "table": "sensor", "limit": n})
                assert not result.is_error, result.content
                rows[n] = result.structured_content["row_count"]

            async with trio.open_nursery() as nursery:
                for n in range(1, 11):
                    nursery.start_soon(call, n)
            assert rows == {n: n for n in range(1, 11)}
            assert server.registry.statistics().requests_in_flight == 0
        # Leaving the client sends DELETE: the session ends at once, not at its idle timeout.
        await registry_empty(server)


async def test_cancelling_a_call_interrupts_the_query_and_frees_its_slot(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with session_on(server, "2025-11-25") as session:
            await cancel_once_running(server, session.call_tool("sql", {"database": "new_company", "sql": SLOW_SQL}))
            await queries_settle(server, interrupted=1)
            await server.registry.watch.wait_until(lambda: server.registry.statistics().requests_in_flight == 0)
            # The session goes on after the cancel.
            result = await session.call_tool("list_databases", {})
            assert not result.is_error


async def test_closing_a_post_stream_cancels_its_request_but_not_the_session(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            init = rpc(
                "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            response = await http.post("/mcp", json=init, headers=JSON_AND_EVENTS)
            assert response.status_code == 200
            session_id = response.headers["mcp-session-id"]
            headers = {**JSON_AND_EVENTS, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"}
            assert (await http.post("/mcp", json=rpc("notifications/initialized"), headers=headers)).status_code == 202
            call = rpc("tools/call", 1, name="sql", arguments={"database": "new_company", "sql": SLOW_SQL})
            async with http.stream("POST", "/mcp", json=call, headers=headers) as streaming:
                assert streaming.headers["content-type"].startswith("text/event-stream")
                await wait_running(server, 1)
            # The stream is closed: no event store could ever deliver the response, so the request stops.
            await queries_settle(server, interrupted=1)
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            listed = await http.post("/mcp", json=rpc("tools/list", 2), headers=headers)
            assert listed.status_code == 200 and "list_databases" in listed.text


async def test_json_only_client_gets_one_json_body(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            json_only = {"Accept": "application/json", "Content-Type": "application/json"}
            init = rpc(
                "initialize", 0, protocolVersion="2025-06-18", capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            response = await http.post("/mcp", json=init, headers=json_only)
            assert response.headers["content-type"] == "application/json"
            assert response.json()["result"]["protocolVersion"] == "2025-06-18"
            headers = {**json_only, "Mcp-Session-Id": response.headers["mcp-session-id"]}
            listed = await http.post("/mcp", json=rpc("tools/list", 1), headers=headers)
            assert listed.json()["id"] == 1 and listed.json()["result"]["tools"]


async def test_a_prompt_answer_is_one_json_body_and_progress_first_is_a_stream(settings: Settings) -> None:
    """A client taking both gets a quick answer as plain JSON; a request whose notifications come
    before its answer gets them, then the answer, as events on one stream."""
    settings.query.batch_rows = 10  # progress after every 10 rows read
    with trio.fail_after(30):
        async with open_server(settings) as server, httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            init = rpc(
                "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            response = await http.post("/mcp", json=init, headers=JSON_AND_EVENTS)
            assert response.headers["content-type"] == "application/json"
            headers = {**JSON_AND_EVENTS, "Mcp-Session-Id": response.headers["mcp-session-id"]}
            call = rpc("tools/call", 1, name="list_databases", arguments={})
            answered = await http.post("/mcp", json=call, headers=headers)
            assert answered.headers["content-type"] == "application/json"
            assert answered.json()["result"]["structuredContent"] == {"databases": ["new_company"]}
            sql = "SELECT * FROM sensor LIMIT 50"
            arguments = {"database": "new_company", "sql": sql}
            with_progress = rpc("tools/call", 2, name="sql", arguments=arguments, _meta={"progressToken": 7})
            streamed = await http.post("/mcp", json=with_progress, headers=headers)
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [orjson.loads(line[len("data: ") :]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[0]["method"] == "notifications/progress" and events[-1]["id"] == 2


@pytest.mark.parametrize("accept", ["application/json", "application/json, text/event-stream"])
async def test_a_client_that_leaves_before_its_answer_stops_its_query(server: EmcpServer, accept: str) -> None:
    """Before any byte of the response, a disconnect is all the server sees: it must cancel the request."""
    headers = {"Accept": accept, "Content-Type": "application/json"}
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            init = rpc(
                "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            response = await http.post("/mcp", json=init, headers=headers)
            headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            call = rpc("tools/call", 1, name="sql", arguments={"database": "new_company", "sql": SLOW_SQL})
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: http.post("/mcp", json=call, headers=headers))
                await wait_running(server, 1)
                nursery.cancel_scope.cancel()  # the client gives up: its connection closes
            await queries_settle(server, interrupted=1)
            (live,) = server.registry.sessions()
            await server.registry.watch.wait_until(lambda: live.statistics().requests_in_flight == 0)
            # The session goes on.
            listed = await http.post("/mcp", json=rpc("tools/list", 2), headers=headers)
            assert listed.status_code == 200 and "list_databases" in listed.text
            wrong = await http.put("/mcp", json=rpc("ping", 3), headers=headers)
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST, DELETE"
    assert wrong.json()["error"]["data"]["reason"] == "method_not_allowed"


async def test_get_stream_opens_once_per_session_and_delete_ends_the_session(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            init = rpc(
                "initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            session_id = (await http.post("/mcp", json=init, headers=JSON_AND_EVENTS)).headers["mcp-session-id"]
            headers = {"Accept": "text/event-stream", "Mcp-Session-Id": session_id}
            async with http.stream("GET", "/mcp", headers=headers) as stream:
                assert stream.status_code == 200
                second = await http.get("/mcp", headers=headers)
                assert second.status_code == 409 and second.json()["error"]["data"]["reason"] == "stream_open"
                assert (await http.delete("/mcp", headers={"Mcp-Session-Id": session_id})).status_code == 200
                # The session's end ends its GET stream.
                assert [chunk async for chunk in stream.aiter_bytes()] == []
            await registry_empty(server)
            gone = await http.post("/mcp", json=rpc("tools/list", 1), headers={**JSON_AND_EVENTS, **headers})
            assert gone.status_code == 404 and gone.json()["error"]["data"]["reason"] == "session_not_found"


@pytest.mark.parametrize(
    ("method", "headers", "body", "status", "reason"),
    [
        ("POST", JSON_AND_EVENTS, orjson.dumps(rpc("tools/list", 1)), 400, "missing_session_id"),
        (
            "POST",
            {**JSON_AND_EVENTS, "Mcp-Session-Id": "0" * 32},
            orjson.dumps(rpc("tools/list", 1)),
            404,
            "session_not_found",
        ),
        ("POST", JSON_AND_EVENTS, b"{not json", 400, "invalid_json"),
        ("POST", JSON_AND_EVENTS, b"[]", 400, "batch_not_supported"),
        ("POST", {**JSON_AND_EVENTS, "Content-Type": "text/plain"}, b"{}", 415, "unsupported_media_type"),
        ("POST", {"Accept": "text/html", "Content-Type": "application/json"}, b"{}", 406, "not_acceptable"),
        ("POST", JSON_AND_EVENTS, b" " * (1024 * 1024 + 1), 413, "body_too_large"),
        ("GET", {"Accept": "application/json"}, None, 406, "not_acceptable"),
        ("GET", {"Accept": "text/event-stream"}, None, 400, "missing_session_id"),
        ("DELETE", {"Mcp-Session-Id": "f" * 32}, None, 404, "session_not_found"),
    ],
)
async def test_bad_requests_get_a_json_rpc_error_body(
    server: EmcpServer, method: str, headers: dict[str, str], body: bytes | None, status: int, reason: str
) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.request(method, "/mcp", content=body, headers=headers)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["data"]["reason"] == reason
    assert error["message"]


async def test_a_full_session_is_refused_and_other_sessions_go_on(settings: Settings) -> None:
    settings.sessions.max_in_flight = 1
    settings.sessions.admission_timeout = 0.05
    with trio.fail_after(30):
        async with open_server(settings) as server, session_on(server, "2025-11-25") as session:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                await wait_running(server, 1)
                with pytest.raises(MCPError, match="requests in flight"):
                    await session.call_tool("list_databases", {})
                async with session_on(server, "2025-03-26") as other:
                    assert not (await other.call_tool("list_databases", {})).is_error
                nursery.cancel_scope.cancel()
            await queries_settle(server, interrupted=1)


# -- 2026-07-28: stateless -------------------------------------------------------------------


async def test_modern_client_discovers_lists_and_calls_each_as_a_one_exchange_session(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with Client(mcp_url(server), mode="auto") as client:
            assert client.protocol_version == MODERN
            tools = await client.list_tools()
            assert "query" in {tool.name for tool in tools.tools}
            results: list[int] = []

            async def call(n: int) -> None:
                result = await client.call_tool("query", {"database": "new_company", "table": "sensor", "limit": n})
                results.append(result.structured_content["row_count"])

            async with trio.open_nursery() as nursery:
                for n in range(1, 9):
                    nursery.start_soon(call, n)
            assert sorted(results) == list(range(1, 9))
        await registry_empty(server)
        stats = server.registry.statistics()
        assert stats.sessions_opened >= 10 and stats.requests_in_flight == 0


async def test_modern_cancel_is_closing_the_response_stream(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with Client(mcp_url(server), mode="auto") as client:
            await cancel_once_running(server, client.call_tool("sql", {"database": "new_company", "sql": SLOW_SQL}))
            await queries_settle(server, interrupted=1)
            await registry_empty(server)


async def test_modern_large_result_is_read_by_its_caller_in_later_exchanges(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with Client(mcp_url(server), mode="auto") as client:
            result = await client.call_tool("sql", {"database": "new_company", "sql": "SELECT * FROM sensor"})
            handle = result.structured_content["result"]["handle"]
            assert result.structured_content["truncated"] is True
            # The exchange that made it is over, and the result lives on for the caller.
            await registry_empty(server)
            block = await client.read_resource(f"emcp://results/{handle}/0")
            assert block.contents[0].text.startswith('{"columns"')
            closed = await client.call_tool("close_result", {"handle": handle})
            assert not closed.is_error
    assert server.statistics()["result_streams_open"] == 0


@pytest.mark.parametrize(
    ("headers", "body", "status", "code"),
    [
        # The header and the envelope disagree.
        (
            {**modern_headers("tools/list"), "Mcp-Method": "tools/call"},
            rpc("tools/list", 1, _meta=modern_meta()),
            400,
            -32020,
        ),
        # No per-request envelope.
        (modern_headers("tools/list"), rpc("tools/list", 1), 400, -32602),
        # A version nobody serves.
        ({**modern_headers("tools/list"), "MCP-Protocol-Version": "2099-01-01"}, None, 400, -32022),
    ],
)
async def test_modern_requests_the_ladder_refuses(
    server: EmcpServer, headers: dict[str, str], body: dict[str, Any] | None, status: int, code: int
) -> None:
    if body is None:
        body = rpc("tools/list", 1, _meta={**modern_meta(), "io.modelcontextprotocol/protocolVersion": "2099-01-01"})
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.post("/mcp", json=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert server.registry.statistics().sessions_opened == 0  # refused before any work


async def test_modern_raw_exchange_and_notification_and_get(server: EmcpServer) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            listed = await http.post(
                "/mcp", json=rpc("tools/list", 7, _meta=modern_meta()), headers=modern_headers("tools/list")
            )
            assert listed.status_code == 200 and listed.headers["content-type"] == "application/json"
            assert listed.json()["id"] == 7 and "mcp-session-id" not in listed.headers
            note = rpc("notifications/cancelled", requestId=7)
            assert (
                await http.post("/mcp", json=note, headers=modern_headers("notifications/cancelled"))
            ).status_code == 202
            get = await http.get("/mcp", headers={"MCP-Protocol-Version": MODERN, "Accept": "text/event-stream"})
            assert get.status_code == 405 and get.headers["allow"] == "POST"


async def test_modern_exchange_is_served_alone_with_its_progress_and_initialize_still_goes_to_the_loop(
    settings: Settings,
) -> None:
    """A 2026 exchange runs its one request through the SDK's single-exchange entry: while it runs,
    its session holds no dispatcher loop; its progress and answer come on its stream. An `initialize`
    that names a 2026 version is not an enveloped request: the dual-era loop answers it, as before."""
    settings.query.batch_rows = 10  # progress after every 10 rows read
    with trio.fail_after(30):
        async with open_server(settings) as server, httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            slow = rpc("tools/call", 1, name="sql", arguments={"database": "new_company", "sql": SLOW_SQL})
            slow["params"]["_meta"] = modern_meta()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(lambda: http.post("/mcp", json=slow, headers=modern_headers("tools/call", "sql")))
                await wait_running(server, 1)
                (live,) = server.registry.sessions()
                seen = [task.name for task in [live.nursery.parent_task, *tasks_under(live.nursery.parent_task)]]
                nursery.cancel_scope.cancel()  # closing the stream ends the exchange
            await queries_settle(server, interrupted=1)
            sql = {"database": "new_company", "sql": "SELECT * FROM sensor LIMIT 50"}
            body = rpc("tools/call", 2, name="sql", arguments=sql, _meta={**modern_meta(), "progressToken": "p"})
            streamed = await http.post("/mcp", json=body, headers=modern_headers("tools/call", "sql"))
            init = rpc(
                "initialize", 0, protocolVersion=MODERN, capabilities={}, clientInfo={"name": "t", "version": "1"}
            )
            answered = await http.post("/mcp", json=init, headers={**JSON_AND_EVENTS, "MCP-Protocol-Version": MODERN})
    assert seen and not any("dispatcher" in name.lower() or "relay" in name for name in seen), seen
    events = [orjson.loads(line[len("data: ") :]) for line in streamed.text.splitlines() if line.startswith("data: ")]
    assert events[0]["method"] == "notifications/progress" and events[0]["params"]["progressToken"] == "p"
    assert events[-1]["id"] == 2 and events[-1]["result"]["structuredContent"]["row_count"] == 50
    assert answered.json()["id"] == 0 and ("result" in answered.json() or "error" in answered.json())


async def test_a_full_registry_refuses_initialize_and_stateless_exchanges_with_503(settings: Settings) -> None:
    settings.sessions.max_sessions = 1
    with trio.fail_after(30):
        async with (
            open_server(settings) as server,
            session_on(server, "2025-11-25"),
            httpx2.AsyncClient(base_url=server.url, timeout=10) as http,
        ):
            init = rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t"})
            refused = await http.post("/mcp", json=init, headers=JSON_AND_EVENTS)
            assert refused.status_code == 503
            assert refused.json()["error"]["data"]["reason"] == "too_many_sessions"
            listed = rpc("tools/list", 1, _meta=modern_meta())
            stateless = await http.post("/mcp", json=listed, headers=modern_headers("tools/list"))
            assert stateless.status_code == 503


async def test_shutdown_ends_sessions_and_exchanges_and_interrupts_their_queries(settings: Settings) -> None:
    slow = {"database": "new_company", "sql": SLOW_SQL}
    ended: list[str] = []
    with trio.fail_after(30):
        async with trio.open_nursery() as clients:
            async with open_server(settings) as server:

                async def legacy_call() -> None:
                    with pytest.raises(Exception):  # noqa: B017 (the server went away: which error is the SDK's)
                        async with session_on(server, "2025-11-25") as session:
                            await session.call_tool("sql", slow)
                    ended.append("legacy")

                async def modern_call() -> None:
                    with pytest.raises(Exception):  # noqa: B017
                        async with Client(mcp_url(server), mode="auto") as client:
                            await client.call_tool("sql", slow)
                    ended.append("modern")

                clients.start_soon(legacy_call)
                clients.start_soon(modern_call)
                await wait_running(server, 2)
            # open_server drained on exit: both queries were interrupted at the source.
            assert server.source.statistics().interrupted == 2
            assert not server.registry.sessions()
    assert sorted(ended) == ["legacy", "modern"]


async def test_a_duplicate_request_id_is_refused_and_the_first_request_still_answered(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as http:
            init = rpc("initialize", 0, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t"})
            session_id = (await http.post("/mcp", json=init, headers=JSON_AND_EVENTS)).headers["mcp-session-id"]
            headers = {**JSON_AND_EVENTS, "Mcp-Session-Id": session_id}
            assert (await http.post("/mcp", json=rpc("notifications/initialized"), headers=headers)).status_code == 202
            slow = rpc("tools/call", 5, name="sql", arguments={"database": "new_company", "sql": SLOW_SQL})
            async with http.stream("POST", "/mcp", json=slow, headers=headers) as first:
                await wait_running(server, 1)
                twin = await http.post("/mcp", json=rpc("tools/list", 5), headers=headers)
                assert twin.status_code == 400 and twin.json()["error"]["data"]["reason"] == "duplicate_request_id"
                cancel = rpc("notifications/cancelled", requestId=5)
                assert (await http.post("/mcp", json=cancel, headers=headers)).status_code == 202
                # The first request's own stream still ends, with REQUEST_CANCELLED for its id.
                body = b"".join([chunk async for chunk in first.aiter_bytes()])
            event = orjson.loads(body.split(b"data: ", 1)[1])
            assert event["id"] == 5 and event["error"]["code"] == -32800
            await queries_settle(server, interrupted=1)
