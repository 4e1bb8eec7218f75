"""/metrics after real traffic: calls by tool and outcome, cancellations, refusals by limit, source
errors by code, sessions by transport; every figure scraped over HTTP as Prometheus would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx2
import pytest
import trio
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from prometheus_client.parser import text_string_to_metric_families

from emcp import EmcpServer, Settings, load_settings, open_server
from emcp.client import websocket_client
from emcp.dispatch import RATE_LIMITED
from emcp.ops import Limit
from emcp.ops.metrics import CONTENT_TYPE
from tests.conftest import SLOW_SQL, mcp_session, rpc, wait_running
from tests.edgelake_emulator import open_emulator

JSON_AND_EVENTS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
INITIALIZE = rpc(
    "initialize", 1, protocolVersion="2025-11-25", capabilities={}, clientInfo={"name": "t", "version": "1"}
)
MIDDLE_SQL = "SELECT * FROM sensor WHERE device IN ('dev-001', 'dev-002', 'dev-003') ORDER BY row_id"


class Scrape:
    """One scrape of /metrics, parsed: `scrape.value(name, **labels)`, 0 for a series not exposed."""

    def __init__(self, text: str) -> None:
        self.samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def calls(self, tool: str, outcome: str, code: str = "") -> float:
        """`tools/call` requests of `tool` that ended with `outcome` (and `code`)."""
        return self.value("emcp_requests_total", method="tools/call", tool=tool, outcome=outcome, code=code)


async def scrape(server: EmcpServer) -> Scrape:
    async with httpx2.AsyncClient() as http:
        response = await http.get(f"{server.url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    return Scrape(response.text)


@asynccontextmanager
async def ws_session(server: EmcpServer) -> AsyncIterator[ClientSession]:
    async with websocket_client(server.ws_url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_calls_are_counted_by_tool_and_outcome_and_sessions_by_transport(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with (
            mcp_session(server) as sse,
            ws_session(server) as ws,
            streamable_http_client(f"{server.url}/mcp") as (read, write),
            ClientSession(read, write) as http,
        ):
            await http.initialize()
            for _ in range(2):
                assert not (await sse.call_tool("list_databases", {})).is_error
            assert not (await ws.call_tool("list_tables", {"database": "new_company"})).is_error
            unknown = await ws.call_tool("list_tables", {"database": "nowhere"})
            assert unknown.is_error and "Error (unknown_database)" in unknown.content[0].text
            refused = await sse.call_tool("sql", {"database": "new_company", "sql": "DELETE FROM sensor"})
            assert refused.is_error and "Error (sql_rejected)" in refused.content[0].text
            with pytest.raises(MCPError):
                await http.call_tool("no_such_tool", {})
            during = await scrape(server)
        await server.registry.watch.wait_until(lambda: server.registry.statistics().sessions_open == 0)
        after = await scrape(server)

    requests = "emcp_requests_total"
    assert during.value(requests, method="tools/call", tool="list_databases", outcome="ok", code="") == 2
    assert during.value(requests, method="tools/call", tool="list_tables", outcome="ok", code="") == 1
    assert during.value(
        requests, method="tools/call", tool="list_tables", outcome="tool_error", code="unknown_database"
    )
    assert during.value(requests, method="tools/call", tool="sql", outcome="tool_error", code="sql_rejected") == 1
    # A tool the server does not know is one label, whatever the client called it: labels stay bounded.
    assert during.value(requests, method="tools/call", tool="other", outcome="error", code="-32602") == 1
    assert during.value(requests, method="initialize", tool="", outcome="ok", code="") == 3
    assert during.value("emcp_request_duration_seconds_count", method="tools/call", tool="list_databases") == 2
    # The source's error counted by its code; the SQL guard's refusal is not the source's.
    assert during.value("emcp_source_errors_total", code="unknown_database") == 1
    assert during.value("emcp_source_errors_total", code="sql_rejected") == 0
    for transport in ("sse", "websocket", "streamable-http"):
        assert during.value("emcp_sessions", transport=transport) == 1
        assert after.value("emcp_sessions", transport=transport) == 0
    assert during.value("emcp_sessions_opened_total") == after.value("emcp_sessions_opened_total") == 3
    assert after.value("emcp_requests_in_flight") == 0


async def test_a_cancelled_call_is_counted(server: EmcpServer) -> None:
    with trio.fail_after(30):
        async with mcp_session(server) as session:
            with trio.CancelScope() as call_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                    await wait_running(server, 1)
                    call_scope.cancel()  # the SDK client sends notifications/cancelled
            await server.registry.watch.wait_until(lambda: server.registry.statistics().cancellations == 1)
            metrics = await scrape(server)
    assert metrics.value("emcp_cancellations_total") == 1
    assert metrics.calls("sql", "cancelled") == 1
    assert metrics.value("emcp_source_queries_total", outcome="interrupted") == 1
    assert metrics.value("emcp_source_queries_running") == 0


async def test_an_in_flight_refusal_is_counted(settings: Settings) -> None:
    settings.sessions.max_in_flight = 1
    settings.sessions.admission_timeout = 0.05
    with trio.fail_after(30):
        async with open_server(settings) as server, ws_session(server) as session, trio.open_nursery() as nursery:
            nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
            await wait_running(server, 1)
            with pytest.raises(MCPError, match="requests in flight"):
                await session.call_tool("list_databases", {})
            metrics = await scrape(server)
            assert metrics.value("emcp_requests_in_flight") == 1
            nursery.cancel_scope.cancel()
    assert metrics.value("emcp_rejections_total", limit=Limit.IN_FLIGHT) == 1
    assert metrics.value("emcp_rejections_total", limit=Limit.SESSIONS) == 0


async def test_refusals_are_counted_by_limit(settings: Settings) -> None:
    settings.sessions.max_sessions = 1
    settings.http.max_body_bytes = 1000
    settings.query.calls_per_second = 0.001  # no refill during the test
    settings.query.calls_burst = 2
    with trio.fail_after(30):
        async with open_server(settings) as server, mcp_session(server) as session:
            (live,) = server.registry.sessions()
            async with httpx2.AsyncClient(base_url=server.url, headers=JSON_AND_EVENTS) as http:
                assert (await http.post(f"/mcp/messages/{live.id}", content=b"x" * 1001)).status_code == 413
                assert (await http.post("/mcp", content=b"x" * 1001)).status_code == 413
                full = await http.post("/mcp", json=INITIALIZE)
                assert full.status_code == 503, full.text
            # The call's own timeout, asked in _meta, well under query.timeout.
            slow = {"database": "new_company", "sql": SLOW_SQL}
            timed_out = await session.call_tool("sql", slow, meta={"emcp/timeout": 0.2})
            assert timed_out.is_error and "Error (timeout)" in timed_out.content[0].text
            assert not (await session.call_tool("list_databases", {})).is_error
            with pytest.raises(MCPError, match="rate limit"):
                await session.call_tool("list_databases", {})
            metrics = await scrape(server)
    assert metrics.value("emcp_rejections_total", limit=Limit.BODY_SIZE) == 2
    assert metrics.value("emcp_rejections_total", limit=Limit.SESSIONS) == 1
    assert metrics.value("emcp_rejections_total", limit=Limit.REQUEST_TIMEOUT) == 1
    assert metrics.calls("sql", "tool_error", "timeout") == 1
    assert metrics.value("emcp_rejections_total", limit=Limit.RATE) == 1
    assert metrics.calls("list_databases", "error", str(RATE_LIMITED)) == 1
    assert metrics.value("emcp_rejections_total", limit=Limit.IN_FLIGHT) == 0


async def test_block_streams_their_bytes_and_the_streams_limit(settings: Settings) -> None:
    settings.blocks.max_per_session = 1
    with trio.fail_after(60):
        async with open_server(settings) as server, mcp_session(server) as session:
            first = await session.call_tool("sql", {"database": "new_company", "sql": MIDDLE_SQL})
            assert first.structured_content is not None and "result" in first.structured_content
            second = await session.call_tool("sql", {"database": "new_company", "sql": MIDDLE_SQL})
            assert second.structured_content is not None and "result" not in second.structured_content
            produced = server.results.statistics
            await server.results.watch.wait_until(lambda: produced()["result_bytes_streamed"] > 0)
            metrics = await scrape(server)
    assert metrics.value("emcp_block_streams_open") == 1
    assert metrics.value("emcp_block_streams_opened_total") == 1
    assert metrics.value("emcp_block_bytes_total") > 0
    assert metrics.value("emcp_rejections_total", limit=Limit.RESULT_STREAMS) == 1


async def test_edgelake_errors_are_counted_by_code(tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with open_emulator() as node:
            await node.refuse_connections()
            settings = load_settings(
                source=f"edgelake:{node.url}", data_dir=tmp_path, http__port=0, http__graceful_timeout=1.0
            )
            async with open_server(settings) as server, mcp_session(server) as session:
                down = await session.call_tool("list_databases", {})
                assert down.is_error and "Error (node_unreachable)" in down.content[0].text
                # A method only EdgeLake has goes through the count too.
                policies = await session.call_tool("get_policies", {"policy_type": "operator"})
                assert policies.is_error
                metrics = await scrape(server)
    assert metrics.value("emcp_source_errors_total", code="node_unreachable") == 2
    assert metrics.calls("list_databases", "tool_error", "node_unreachable") == 1
