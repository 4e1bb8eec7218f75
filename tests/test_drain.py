"""Graceful drain: no new work is admitted, calls in flight finish within the grace period, then the rest stops."""

from __future__ import annotations

import httpx2
import trio

from emcp import Settings, open_server
from tests.conftest import mcp_session, wait_running

# About a second of work in SQLite: long enough to still run when the drain starts, well within its grace.
MEDIUM_SQL = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) SELECT count(*) FROM n"


async def test_a_call_in_flight_finishes_while_new_connections_are_refused(settings: Settings) -> None:
    settings.http.graceful_timeout = 60.0
    answers: list[object] = []
    refused: list[str] = []

    with trio.fail_after(60):
        async with trio.open_nursery() as clients:
            async with open_server(settings) as server:
                registry, stats = server.registry, server.source.statistics()

                async def call_in_flight() -> None:
                    async with mcp_session(server) as session:
                        # The SDK checks a result against the tool's output schema, listing the tools first
                        # if it has not: done now, since a drained session takes no new request.
                        await session.list_tools()
                        result = await session.call_tool("sql", {"database": "new_company", "sql": MEDIUM_SQL})
                        answers.append(result.structured_content["rows"])

                async def knock_while_draining() -> None:
                    await registry.watch.wait_until(lambda: registry.draining)
                    async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
                        try:
                            response = await http.get("/mcp/sse")
                            refused.append(f"HTTP {response.status_code}")
                        except httpx2.ConnectError:
                            refused.append("connection refused")

                clients.start_soon(call_in_flight)
                clients.start_soon(knock_while_draining)
                await wait_running(server, 1)
            # Leaving open_server drained: the call was let finish, nothing was interrupted.
            assert stats.interrupted == 0 and stats.running == 0
            assert registry.statistics().sessions_open == 0
    assert answers == [[[2000000]]]
    assert refused in (["connection refused"], ["HTTP 503"])
