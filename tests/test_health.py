"""/healthz and /readyz: alive while serving; ready only while the source answers its status check."""

from __future__ import annotations

from pathlib import Path

import httpx2
import trio

from emcp import EmcpServer, Settings, load_settings, open_server
from tests.conftest import SLOW_SQL, mcp_session, wait_running
from tests.edgelake_emulator import Fault, open_emulator


def edgelake_settings(url: str, tmp_path: Path) -> Settings:
    # retry_down_after=0: a node that refused is asked again at once, so readiness follows it.
    return load_settings(
        source=f"edgelake:{url}",
        data_dir=tmp_path,
        http__port=0,
        http__graceful_timeout=1.0,
        edgelake__retry_down_after=0.0,
    )


async def probe(server: EmcpServer, path: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        response = await http.get(server.url + path)
    assert response.headers["content-type"] == "application/json"
    return response


async def test_alive_and_ready_on_the_demo_data(server: EmcpServer) -> None:
    with trio.fail_after(20):
        healthz, readyz = await probe(server, "/healthz"), await probe(server, "/readyz")
    assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
    assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})


async def test_ready_while_every_query_thread_is_busy(settings: Settings) -> None:
    """A saturated thread pool is load, not a lost source: the status check has a thread of its own."""
    settings.query.max_threads = 1
    with trio.fail_after(30):
        async with open_server(settings) as server, mcp_session(server) as session, trio.open_nursery() as nursery:
            nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
            await wait_running(server, 1)
            assert server.source.limiter.borrowed_tokens == 1  # the only query thread is taken
            readyz = await probe(server, "/readyz")
            assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"})
            nursery.cancel_scope.cancel()


async def test_not_ready_while_the_edgelake_node_refuses_then_ready_again(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_emulator() as node, open_server(edgelake_settings(node.url, tmp_path)) as server:
            assert (await probe(server, "/readyz")).status_code == 200
            await node.refuse_connections()
            down = await probe(server, "/readyz")
            assert (await probe(server, "/healthz")).status_code == 200  # alive: a restart would not help
            await node.accept_connections()
            back = await probe(server, "/readyz")
    assert down.status_code == 503
    error = down.json()["error"]
    assert error["code"] == "not_ready"
    assert "edgelake source is unreachable" in error["message"] and node.url in error["message"]
    assert back.status_code == 200


async def test_not_ready_when_the_source_does_not_answer_in_time(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_emulator() as node:
            settings = edgelake_settings(node.url, tmp_path)
            settings.http.ready_timeout = 0.2
            node.fault = Fault.SLOW  # reads the request, then stalls
            async with open_server(settings) as server:
                slow = await probe(server, "/readyz")
    assert slow.status_code == 503
    assert "did not answer its status check within 0.2 s" in slow.json()["error"]["message"]
