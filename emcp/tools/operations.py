"""The operations tools run. Each takes the call's context and its checked arguments
and returns the structured result; anything the caller can fix is a `ToolFailure`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from importlib import metadata
from typing import Any

import trio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from emcp import __version__
from emcp.sources.base import Column, Params
from emcp.sources.edgelake.source import EdgeLakeSource
from emcp.sql.build import build_select
from emcp.sql.guard import check_select
from emcp.tools.context import ToolCall, ToolFailure
from emcp.tools.results import collect_rows

Operation = Callable[[ToolCall, dict[str, Any]], Awaitable[dict[str, Any]]]


def _column(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": column.type, "nullable": column.nullable, "primary_key": column.primary_key}


async def run_query(call: ToolCall, database: str, sql: str, params: Params = ()) -> dict[str, Any]:
    """Run checked SQL and shape its rows into the inline budget."""
    settings = call.settings
    started = trio.current_time()
    # Read at most one row past the inline cap: enough to know the result was cut.
    batch_rows = min(settings.batch_rows, settings.max_inline_rows + 1)
    with call.track_query():
        async with call.source.open_query(database, sql, params, batch_rows=batch_rows) as stream:
            result = await collect_rows(
                stream,
                max_rows=settings.max_inline_rows,
                max_bytes=settings.max_inline_bytes,
                progress=call.report_progress,
            )
    out: dict[str, Any] = {
        "database": database,
        "columns": result.columns,
        "rows": result.rows,
        "row_count": len(result.rows),
        "truncated": result.truncated,
        "sql": sql,
        "elapsed_ms": round((trio.current_time() - started) * 1000, 3),
    }
    if stream.statistics is not None:
        out["statistics"] = stream.statistics
    if result.truncated:
        out["truncated_reason"] = (
            f"{result.truncated_reason}; the first {len(result.rows)} rows are returned. "
            "Narrow the query (where, limit) or aggregate it (group_by) to see the rest."
        )
    return out


async def list_databases(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"databases": await call.source.list_databases()}


async def list_tables(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"database": args["database"], "tables": await call.source.list_tables(args["database"])}


async def get_schema(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    columns = await call.source.get_columns(args["database"], args["table"])
    shown = [c for c in columns if args.get("include_system_columns") or not c.system]
    return {"database": args["database"], "table": args["table"], "columns": [_column(c) for c in shown]}


async def list_database_schema(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    databases = []
    for database in await call.source.list_databases():
        tables = []
        for table in await call.source.list_tables(database):
            columns = await call.source.get_columns(database, table)
            tables.append(
                {"database": database, "table": table, "columns": [_column(c) for c in columns if not c.system]}
            )
        databases.append({"database": database, "tables": tables})
    return {"databases": databases}


async def query(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    database, table = args["database"], args["table"]
    columns = await call.source.get_columns(database, table)
    sql = build_select(
        table=table,
        columns=columns,
        select=args.get("select", ["*"]),
        where=args.get("where"),
        group_by=args.get("group_by", []),
        order_by=args.get("order_by", []),
        limit=args.get("limit", 100),
        dialect=call.source.dialect,
    )
    return await run_query(call, database, sql)


async def sql(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    checked = check_select(args["sql"], dialect=call.source.dialect)
    return await run_query(call, args["database"], checked)


async def saved_query(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    """A query declared in the user's YAML: its SQL was proven read-only at start-up,
    the call's arguments are bound as named parameters, never spliced into the text."""
    options: Mapping[str, Any] = call.spec.options
    return await run_query(call, options["database"], options["sql"], args)


async def node_status(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    source = await call.source.status()
    return {
        "status": "ok" if source.get("reachable", True) else "degraded",
        "source": source,
        "server": call.server_statistics(),
    }


async def server_info(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "emcp",
        "version": __version__,
        "mcp_sdk_version": metadata.version("mcp"),
        "protocol_versions": [*HANDSHAKE_PROTOCOL_VERSIONS, *MODERN_PROTOCOL_VERSIONS],
        "source": await call.source.version(),
        "tools": call.tool_names,
    }


def _network(call: ToolCall) -> EdgeLakeSource:
    """The EdgeLake source behind a network tool (tools.yaml scopes these tools to it)."""
    source = call.source
    if not isinstance(source, EdgeLakeSource):
        raise ToolFailure("wrong_source", f"{call.spec.name} needs an EdgeLake source", "use it on an EdgeLake network")
    return source


async def data_nodes(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": await _network(call).data_nodes(args["database"], args["table"])}


async def network_nodes(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"nodes": await _network(call).network_nodes(args["roles"])}


async def policies(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    return {"policies": await _network(call).policies(args["policy_type"], args.get("where"))}


async def root_policies(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    found = await _network(call).all_policies(args["policy_types"])
    return {"policies": [p for p in found if not p.get("parent")]}


async def policy_children(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    found = await _network(call).all_policies(args["policy_types"])
    return {"policies": [p for p in found if p.get("parent") == args["id"]]}


async def edgelake_help(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    command = args.get("command", "")
    return {"command": command, "help": await _network(call).help(command)}


OPERATIONS: dict[str, Operation] = {
    "list_databases": list_databases,
    "list_tables": list_tables,
    "get_schema": get_schema,
    "list_database_schema": list_database_schema,
    "query": query,
    "sql": sql,
    "saved_query": saved_query,
    "node_status": node_status,
    "server_info": server_info,
    "data_nodes": data_nodes,
    "network_nodes": network_nodes,
    "policies": policies,
    "root_policies": root_policies,
    "policy_children": policy_children,
    "help": edgelake_help,
}
