"""Every tool, with good and bad arguments, through the real server and the SDK's SSE client."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import trio
from jsonschema.validators import validator_for
from mcp.shared.exceptions import MCPError

from emcp import EmcpServer
from tests.conftest import mcp_session

EXPECTED_TOOLS = {
    "list_databases",
    "list_tables",
    "get_schema",
    "list_database_schema",
    "query",
    "sql",
    "node_status",
    "server_info",
    "fetch_block",
    "close_result",
}


async def test_tools_list_has_valid_schemas(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            tools = (await session.list_tools()).tools
    assert {t.name for t in tools} == EXPECTED_TOOLS
    for tool in tools:
        assert tool.description
        validator_for(tool.input_schema).check_schema(tool.input_schema)
        assert tool.output_schema is not None
        validator_for(tool.output_schema).check_schema(tool.output_schema)
        assert tool.annotations is not None and tool.annotations.read_only_hint is True


async def test_catalogue_tools(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            dbs = await session.call_tool("list_databases", {})
            tables = await session.call_tool("list_tables", {"database": "new_company"})
            schema = await session.call_tool("get_schema", {"database": "new_company", "table": "sensor"})
            everything = await session.call_tool("list_database_schema", {})
    assert dbs.structured_content == {"databases": ["new_company"]}
    assert set(tables.structured_content["tables"]) >= {"sensor", "events", "devices"}
    columns = {c["name"] for c in schema.structured_content["columns"]}
    assert {"timestamp", "device", "value"} <= columns
    (db,) = everything.structured_content["databases"]
    assert db["database"] == "new_company"
    assert {t["table"] for t in db["tables"]} == set(tables.structured_content["tables"])


async def test_query_tool_builds_quoted_sql_and_returns_rows(server: EmcpServer, demo_dir: Path) -> None:
    args = {
        "database": "new_company",
        "table": "sensor",
        "select": ["device", "count(*) AS n", "max(value) AS peak"],
        "where": "device IN ('dev-001', 'dev-002') AND value > 0",
        "group_by": ["device"],
        "order_by": [{"column": "device", "direction": "DESC"}],
        "limit": 10,
    }
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool("query", args)
    assert not result.is_error, result.content
    out = result.structured_content
    assert out["columns"] == ["device", "n", "peak"]
    assert [row[0] for row in out["rows"]] == ["dev-002", "dev-001"]
    assert out["truncated"] is False and out["row_count"] == 2
    with sqlite3.connect(demo_dir / "new_company.db") as conn:
        expected = conn.execute(
            "SELECT device, count(*), max(value) FROM sensor WHERE device IN ('dev-001','dev-002') AND value > 0 "
            "GROUP BY device ORDER BY device DESC"
        ).fetchall()
    assert [tuple(r) for r in out["rows"]] == expected


async def test_query_defaults_and_truncation_is_explicit(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            default = await session.call_tool("query", {"database": "new_company", "table": "sensor"})
            big = await session.call_tool("query", {"database": "new_company", "table": "sensor", "limit": 100000})
    assert default.structured_content["row_count"] == 100
    assert default.structured_content["truncated"] is False
    cap = server.settings.query.max_inline_rows
    out = big.structured_content
    assert out["truncated"] is True and out["row_count"] <= cap
    assert "truncated_reason" in out


async def test_sql_tool_runs_one_select(server: EmcpServer) -> None:
    sql = "WITH d AS (SELECT device, avg(value) AS a FROM sensor GROUP BY device) SELECT count(*) FROM d"
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
    assert not result.is_error, result.content
    assert result.structured_content["rows"] == [[50]]


@pytest.mark.parametrize(
    ("tool", "args", "expect"),
    [
        ("list_tables", {"database": "nope"}, "unknown_database"),
        ("list_tables", {}, "invalid_arguments"),
        ("get_schema", {"database": "new_company", "table": "nope"}, "unknown_table"),
        ("get_schema", {"database": "new_company", "table": "sensor", "extra": 1}, "invalid_arguments"),
        ("query", {"database": "new_company", "table": "sensor", "limit": 0}, "invalid_arguments"),
        ("query", {"database": "new_company", "table": "sensor", "limit": "ten"}, "invalid_arguments"),
        ("query", {"database": "new_company", "table": "sensor", "select": ["nosuch"]}, "sql_rejected"),
        ("query", {"database": "new_company", "table": "sensor", "where": "1=1; DROP TABLE sensor"}, "sql_rejected"),
        ("query", {"database": "new_company", "table": "sensor", "where": "value > (SELECT 1)"}, "sql_rejected"),
        (
            "query",
            {"database": "new_company", "table": "sensor", "order_by": [{"column": "value", "direction": "UP"}]},
            "invalid_arguments",
        ),
        ("sql", {"database": "new_company", "sql": "DELETE FROM sensor"}, "sql_rejected"),
        ("sql", {"database": "new_company", "sql": "SELECT 1; DROP TABLE sensor"}, "sql_rejected"),
        ("sql", {"database": "new_company", "sql": "PRAGMA writable_schema = 1"}, "sql_rejected"),
        ("sql", {"database": "new_company", "sql": "ATTACH DATABASE 'x.db' AS x"}, "sql_rejected"),
        ("sql", {"database": "new_company", "sql": "SELECT 1 -- \n; DELETE FROM sensor"}, "sql_rejected"),
        ("sql", {"database": "new_company", "sql": "SELECT * FROM nosuch"}, "query_failed"),
        ("sql", {"database": "new_company", "sql": "SELEC 1"}, "sql_rejected"),
    ],
)
async def test_bad_arguments_are_tool_errors_that_say_what_to_fix(
    server: EmcpServer, tool: str, args: dict, expect: str
) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool(tool, args)
            # The session is unharmed by the bad call.
            assert (await session.call_tool("list_databases", {})).structured_content == {"databases": ["new_company"]}
    assert result.is_error
    text = result.content[0].text
    assert f"Error ({expect})" in text
    assert "Hint:" in text or expect == "query_failed"
    # Nothing was written: the demo table is intact.
    async with mcp_session(server) as session:
        count = await session.call_tool("sql", {"database": "new_company", "sql": "SELECT count(*) FROM sensor"})
    assert count.structured_content["rows"] == [[1_000_000]]


async def test_unknown_tool_is_a_jsonrpc_error(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            with pytest.raises(MCPError, match="Unknown tool"):
                await session.call_tool("drop_everything", {})


async def test_node_status_and_server_info(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with mcp_session(server) as session:
            status = (await session.call_tool("node_status", {})).structured_content
            info = (await session.call_tool("server_info", {})).structured_content
    assert status["status"] == "ok"
    assert status["source"]["reachable"] is True
    assert status["server"]["sessions_open"] == 1
    assert info["name"] == "emcp" and info["version"]
    assert info["source"]["engine"] == "sqlite"
    assert "2024-11-05" in info["protocol_versions"]
    assert set(info["tools"]) == EXPECTED_TOOLS


async def test_progress_notifications_for_queries(server: EmcpServer) -> None:
    seen: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append(progress)

    with trio.fail_after(20):
        async with mcp_session(server) as session:
            result = await session.call_tool(
                "sql",
                {"database": "new_company", "sql": "SELECT row_id FROM sensor LIMIT 900"},
                progress_callback=on_progress,
            )
    assert result.structured_content["row_count"] == 900
    assert seen and seen[-1] == 900 and seen == sorted(seen)
