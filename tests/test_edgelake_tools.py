"""Every tool on an EdgeLake network, end to end: the SDK's SSE client, emcp, the emulated node."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import orjson
import pytest
import trio

from emcp import EmcpServer, Settings, load_settings, open_server
from tests.conftest import mcp_session
from tests.edgelake_emulator import SHARED, EdgeLakeEmulator, Fault, open_emulator


def _dataset(table: str) -> list[dict]:
    with (SHARED / "dataset.jsonl").open() as lines:
        return [row["stored"] for row in map(json.loads, lines) if row["table"] == table]


@pytest.fixture
async def emulator() -> AsyncIterator[EdgeLakeEmulator]:
    async with open_emulator() as running:
        yield running


def _settings(*urls: str, tmp_path: Path) -> Settings:
    return load_settings(
        source="edgelake:" + ",".join(urls),
        data_dir=tmp_path,
        http__port=0,
        http__graceful_timeout=1.0,
        edgelake__timeout=5.0,
    )


@pytest.fixture
async def server(emulator: EdgeLakeEmulator, tmp_path: Path) -> AsyncIterator[EmcpServer]:
    async with open_server(_settings(emulator.url, tmp_path=tmp_path)) as running:
        yield running


async def _call(server: EmcpServer, tool: str, args: dict) -> dict:
    async with mcp_session(server) as session:
        result = await session.call_tool(tool, args)
    assert not result.is_error, result.content[0].text
    assert result.structured_content is not None
    return result.structured_content


async def test_tools_list_includes_the_network_tools(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
    assert {"get_data_nodes", "list_network_nodes", "get_policies", "get_root_policies"} <= set(tools)
    assert "JOIN" in tools["query"].description and "NOW() - 7 days" in tools["query"].description


async def test_catalogue(server: EmcpServer) -> None:
    with trio.fail_after(20):
        assert await _call(server, "list_databases", {}) == {"databases": ["new_company"]}
        tables = await _call(server, "list_tables", {"database": "new_company"})
        schema = await _call(server, "get_schema", {"database": "new_company", "table": "sensor"})
        full = await _call(
            server, "get_schema", {"database": "new_company", "table": "sensor", "include_system_columns": True}
        )
        everything = await _call(server, "list_database_schema", {})
    assert tables == {"database": "new_company", "tables": ["events", "sensor"]}
    assert [c["name"] for c in schema["columns"]] == ["timestamp", "device", "value"]
    assert [c["name"] for c in full["columns"]][:4] == ["row_id", "insert_timestamp", "tsd_name", "tsd_id"]
    (db,) = everything["databases"]
    assert [t["table"] for t in db["tables"]] == ["events", "sensor"]


async def test_query_groups_over_the_network(server: EmcpServer) -> None:
    args = {
        "database": "new_company",
        "table": "sensor",
        "select": ["device", "count(*) AS n"],
        "group_by": ["device"],
        "order_by": [{"column": "device"}],
    }
    with trio.fail_after(20):
        out = await _call(server, "query", args)
    expected = Counter(row["device"] for row in _dataset("sensor"))
    assert out["columns"] == ["device", "n"]
    assert out["rows"] == [[device, n] for device, n in sorted(expected.items())]
    assert out["statistics"]["Count"] == 5
    assert out["sql"] == "SELECT device, count(*) AS n FROM sensor GROUP BY device ORDER BY device ASC LIMIT 100"


async def test_relative_time_and_sql_tool(server: EmcpServer) -> None:
    with trio.fail_after(20):
        recent = await _call(
            server,
            "query",
            {
                "database": "new_company",
                "table": "sensor",
                "select": ["count(*) AS n"],
                "where": "timestamp >= NOW() - 3 days",
            },
        )
        errors = await _call(
            server,
            "sql",
            {"database": "new_company", "sql": "select device, message from events where level = 'error' limit 3"},
        )
    assert recent["rows"] == [[781]]  # the count the real node answered (sql_count_now_days_network)
    assert errors["columns"] == ["device", "message"] and errors["row_count"] == 3


async def test_all_rows_match_the_dataset(server: EmcpServer) -> None:
    server.settings.query.max_inline_rows = 5000
    server.settings.query.max_inline_bytes = 10 * 1024 * 1024
    with trio.fail_after(20):
        out = await _call(server, "sql", {"database": "new_company", "sql": "select * from sensor"})
    stored = _dataset("sensor")
    assert out["row_count"] == len(stored) == 3000
    assert out["rows"] == [list(row.values()) for row in stored]
    assert out["truncated"] is False


@pytest.mark.parametrize(
    ("sql", "code", "hint"),
    [
        ("select s.device from sensor s, events e where s.device = e.device", "134", "JOIN"),
        ("select * from nosuch", "45", "list_tables"),
        ("select nosuchcol from sensor", "46", "get_schema"),
        ('select "a""b" from sensor', "sql_rejected", ""),
        # The SQL travels inside "..." in a header: what cannot go there is refused, not mangled.
        ("select device from sensor where device = 'a\"b'", "bad_request", "single quotes"),
        ("select device from sensor where device = 'a\nb'", "bad_request", ""),
        ("select device from sensor where device = '\u20ac'", "bad_request", "latin-1"),
    ],
)
async def test_edgelake_errors_are_tool_errors_with_hints(server: EmcpServer, sql: str, code: str, hint: str) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
    assert result.is_error
    text = result.content[0].text
    assert code in text and hint in text
    assert "Traceback" not in text


async def test_network_tools(server: EmcpServer) -> None:
    with trio.fail_after(20):
        holders = await _call(server, "get_data_nodes", {"database": "new_company", "table": "sensor"})
        nodes = await _call(server, "list_network_nodes", {})
        tables = await _call(server, "get_policies", {"policy_type": "table", "where": {"dbms": "new_company"}})
        roots = await _call(server, "get_root_policies", {"policy_types": ["master", "operator", "cluster"]})
        cluster = next(p for p in roots["policies"] if p["type"] == "cluster")
        children = await _call(server, "get_policy_children", {"id": cluster["id"]})
    assert [(n["Table"], n["Node Name"]) for n in holders["nodes"]] == [("sensor", "el-single-operator")]
    assert {(n["role"], n["name"], n["port"]) for n in nodes["nodes"]} == {
        ("operator", "el-single-operator", 32048),
        ("master", "el-single-master", 32048),
    }
    assert sorted(p["name"] for p in tables["policies"]) == ["events", "sensor"]
    assert {p["type"] for p in roots["policies"]} == {"master", "operator", "cluster"}
    assert all("parent" not in p for p in roots["policies"])
    assert sorted(p["table"][0]["name"] for p in children["policies"]) == ["events", "sensor"]


async def test_policy_filter_with_spaces_and_help(server: EmcpServer, emulator: EdgeLakeEmulator) -> None:
    with trio.fail_after(20):
        operators = await _call(
            server, "get_policies", {"policy_type": "operator", "where": {"company": "Test Company"}}
        )
        async with mcp_session(server) as session:
            bad = await session.call_tool("get_policies", {"policy_type": "operator", "where": {"company": 'a"b'}})
            helped = await session.call_tool("edgelake_help", {"command": "get status"})
    assert [p["name"] for p in operators["policies"]] == ["el-single-operator"]
    assert bad.is_error and "bad_request" in bad.content[0].text
    # The emulator knows no help text (none was recorded): emcp sends `help get status` by GET
    # and relays the node's answer, here its error, with EdgeLake's code.
    (asked,) = [c for c in emulator.connections if c.command and c.command.startswith("help")]
    assert (asked.method, asked.command) == ("GET", "help get status")
    assert helped.is_error and "EdgeLake" in helped.content[0].text


async def test_a_node_past_the_deadline_is_a_timeout_naming_it(emulator: EdgeLakeEmulator, tmp_path: Path) -> None:
    emulator.fault = Fault.SLOW
    settings = _settings(emulator.url, tmp_path=tmp_path)
    settings.edgelake.timeout = 0.3
    with trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            result = await session.call_tool("list_databases", {})
        (connection,) = emulator.connections
        await connection.closed.wait()
    assert result.is_error
    text = result.content[0].text
    assert "timeout" in text and emulator.url in text
    assert connection.client_closed_at is not None


async def test_node_status_and_server_info(server: EmcpServer, emulator: EdgeLakeEmulator) -> None:
    with trio.fail_after(20):
        status = await _call(server, "node_status", {})
        info = await _call(server, "server_info", {})
    assert status["status"] == "ok"
    assert status["source"]["node"]["status"] == "running"
    assert info["source"] == {"engine": "edgelake", "version": "1.4.2604", "node_name": "el-single@127.0.0.1:32048"}
    assert emulator.url in status["source"]["nodes"]["nodes"]


async def test_cancel_closes_the_node_connection_within_50ms(server: EmcpServer, emulator: EdgeLakeEmulator) -> None:
    emulator.fault = Fault.SLOW
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            with trio.CancelScope() as call_scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": "select 1"})
                    await emulator.watch.wait_until(lambda: any(c.command for c in emulator.connections))
                    cancelled_at = trio.current_time()
                    call_scope.cancel()  # the SDK client sends notifications/cancelled
            (connection,) = emulator.connections
            await connection.closed.wait()
    assert connection.client_closed_at is not None
    assert connection.client_closed_at - cancelled_at < 0.05
    stats = server.source.statistics()
    await stats.watch.wait_until(lambda: stats.interrupted == 1)


async def test_disconnect_closes_the_node_connection_within_50ms(
    server: EmcpServer, emulator: EdgeLakeEmulator
) -> None:
    emulator.fault = Fault.SLOW
    with trio.fail_after(20):
        with trio.CancelScope() as client_scope:
            async with mcp_session(server) as session, trio.open_nursery() as nursery:
                nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": "select 1"})
                await emulator.watch.wait_until(lambda: any(c.command for c in emulator.connections))
                disconnected_at = trio.current_time()
                client_scope.cancel()  # drop the MCP connection
        (connection,) = emulator.connections
        await connection.closed.wait()
    assert connection.client_closed_at is not None
    assert connection.client_closed_at - disconnected_at < 0.05


async def test_failover_when_the_first_node_is_down(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_emulator() as down, open_emulator() as up:
            await down.refuse_connections()
            async with open_server(_settings(down.url, up.url, tmp_path=tmp_path)) as server:
                assert await _call(server, "list_databases", {}) == {"databases": ["new_company"]}
                assert await _call(server, "list_tables", {"database": "new_company"})
                nodes = server.source.client.statistics()["nodes"]
    assert nodes[down.url]["failures"] == 1  # marked down once, then skipped
    assert nodes[up.url]["failures"] == 0 and nodes[up.url]["requests"] >= 2


async def test_every_node_down_is_a_clear_error(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with open_emulator() as first, open_emulator() as second:
            await first.refuse_connections()
            await second.refuse_connections()
            settings = _settings(first.url, second.url, tmp_path=tmp_path)
            async with open_server(settings) as server, mcp_session(server) as session:
                result = await session.call_tool("list_databases", {})
    assert result.is_error
    text = result.content[0].text
    assert "node_unreachable" in text and first.url in text and second.url in text


async def test_large_result_streams_as_blocks_from_the_incremental_parse(
    server: EmcpServer, emulator: EdgeLakeEmulator
) -> None:
    emulator.large_rows = 50_000
    with trio.fail_after(60):
        async with mcp_session(server) as session, httpx2.AsyncClient() as client:
            result = await session.call_tool("sql", {"database": "new_company", "sql": "select * from sensor_large"})
            out = result.structured_content
            assert out["truncated"] is True and out["row_count"] == server.settings.query.max_inline_rows
            response = await client.get(server.url + out["result"]["download_url"])
    lines = response.content.splitlines()
    assert orjson.loads(lines[0])["columns"][:4] == ["row_id", "insert_timestamp", "tsd_name", "tsd_id"]
    rows = [orjson.loads(line) for line in lines[1:]]
    assert len(rows) == 50_000
    assert [row[0] for row in rows] == list(range(1, 50_001))
    assert rows[: out["row_count"]] == out["rows"]


async def test_closing_a_large_result_closes_the_node_connection(
    server: EmcpServer, emulator: EdgeLakeEmulator
) -> None:
    emulator.large_rows = 1_000_000
    with trio.fail_after(30):
        async with mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": "select * from sensor_large"})
            handle = result.structured_content["result"]["handle"]
            (connection,) = [c for c in emulator.connections if c.command and "sensor_large" in c.command]
            await session.call_tool("close_result", {"handle": handle})
            await connection.closed.wait()
    assert connection.client_closed_at is not None  # emcp hung up instead of reading a million rows
    assert connection.bytes_sent < 50 * 1024 * 1024


async def test_a_node_dying_mid_reply_is_an_error(server: EmcpServer, emulator: EdgeLakeEmulator) -> None:
    emulator.fault = Fault.DEAD_MID_BODY
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": "select * from sensor"})
    assert result.is_error
    assert emulator.url in result.content[0].text


async def test_a_node_dying_mid_stream_fails_the_stream_for_its_reader(
    server: EmcpServer, emulator: EdgeLakeEmulator
) -> None:
    emulator.large_rows = 20_000
    emulator.fault = Fault.DEAD_MID_BODY  # half the rows, then the connection drops
    with trio.fail_after(30):
        async with mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": "select * from sensor_large"})
            handle = result.structured_content["result"]["handle"]
            n = 0
            while True:
                fetched = await session.call_tool("fetch_block", {"handle": handle, "block": n})
                if fetched.is_error:
                    break
                n += 1
    text = fetched.content[0].text
    assert n >= 1 and "stream_failed" in text and emulator.url in text
