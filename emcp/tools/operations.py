"""The operations tools run. Each takes the call's context and its checked arguments
and returns the structured result; anything the caller can fix is a `ToolFailure`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from importlib import metadata
from typing import Any

import mcp_types as types
import trio
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS

from emcp import __version__
from emcp.blocks.stream import NDJSON, QueryRequest, ResultStream, StreamError, TooManyResults
from emcp.sources.base import Column, Params
from emcp.sources.edgelake.source import EdgeLakeSource
from emcp.sql.build import build_select
from emcp.sql.guard import SqlRejected, check_select
from emcp.tools.context import ToolCall, ToolFailure, ToolOutput
from emcp.tools.results import collect_rows

Operation = Callable[[ToolCall, dict[str, Any]], Awaitable[dict[str, Any] | ToolOutput]]


def _column(column: Column) -> dict[str, Any]:
    return {"name": column.name, "type": column.type, "nullable": column.nullable, "primary_key": column.primary_key}


def _result_uri(handle: str, block: int | str) -> str:
    return f"emcp://results/{handle}/{block}"


async def run_query(call: ToolCall, database: str, sql: str, params: Params = ()) -> dict[str, Any] | ToolOutput:
    """Run checked SQL: rows within the inline budget come back whole; a larger result comes back
    as its first rows plus a handle to a block stream of the whole result, or, where no stream
    can be had, truncated with a hint. Never cut silently."""
    settings = call.settings
    started = trio.current_time()
    results = call.results
    stream: ResultStream | None = None
    no_stream_hint = "large results cannot stream here (blocks are disabled)"
    if results is not None:
        try:
            stream = results.store.create(results.owner, results.caller)
        except TooManyResults as exc:
            no_stream_hint = str(exc)
    query = QueryRequest(
        source=call.source,
        database=database,
        sql=sql,
        params=params,
        # Without a stream, read at most one row past the inline cap: enough to know the result is
        # larger. A stream reads on anyway, in full batches.
        batch_rows=settings.batch_rows if stream else min(settings.batch_rows, settings.max_inline_rows + 1),
        max_inline_rows=settings.max_inline_rows,
        max_inline_bytes=min(settings.max_inline_bytes, results.settings.threshold)
        if results
        else settings.max_inline_bytes,
    )
    if stream is not None:
        assert results is not None
        inline = await results.nursery.start(stream.run, query, call.report_progress, call.track_query)
    else:
        with call.track_query():
            async with call.source.open_query(database, sql, params, batch_rows=query.batch_rows) as rows:
                inline = await collect_rows(
                    rows,
                    max_rows=query.max_inline_rows,
                    max_bytes=query.max_inline_bytes,
                    progress=call.report_progress,
                )
    out: dict[str, Any] = {
        "database": database,
        "columns": inline.columns,
        "rows": inline.rows,
        "row_count": len(inline.rows),
        "truncated": inline.truncated,
        "sql": sql,
        "elapsed_ms": round((trio.current_time() - started) * 1000, 3),
    }
    if inline.statistics is not None:
        out["statistics"] = inline.statistics
    if not inline.truncated:
        return out
    first = f"{inline.truncated_reason}; the first {len(inline.rows)} rows are returned."
    if stream is None:
        out["truncated_reason"] = f"{first} {no_stream_hint}: narrow the query (where, limit) or aggregate it."
        return out
    out["truncated_reason"] = (
        f"{first} The whole result streams as blocks of NDJSON (a columns line, then one JSON array per row): "
        f"read {_result_uri(stream.handle, 0)}, then /1, /2 ... with resources/read, or call fetch_block, "
        "or GET download_url; call close_result when done. Or narrow the query or aggregate it."
    )
    out["result"] = {
        "handle": stream.handle,
        "block_uri_template": _result_uri(stream.handle, "{n}"),
        "download_url": f"/mcp/results/{stream.handle}?token={stream.token}",
        "blocks": stream.total_blocks,
        "rows": stream.total_rows,
    }
    link = types.ResourceLink(
        type="resource_link",
        name=f"result-{stream.handle}-0",
        title="The result's first block",
        uri=_result_uri(stream.handle, 0),
        mime_type=NDJSON,
        description="Block 0 of the whole result; read blocks 1, 2 ... after it.",
    )
    return ToolOutput(out, extra=[link])


def _stream(call: ToolCall, handle: str) -> ResultStream:
    stream = call.results.store.get(handle, call.results.owner) if call.results else None
    if stream is None:
        raise ToolFailure(
            "unknown_result",
            f"no open result {handle!r} in this session",
            "results expire when unread for a while, are closed by close_result and end with the session; "
            "run the query again",
        )
    return stream


async def fetch_block(call: ToolCall, args: dict[str, Any]) -> ToolOutput:
    stream = _stream(call, args["handle"])
    try:
        block = await stream.read(args["block"], call.report_progress)
    except StreamError as exc:
        raise ToolFailure(exc.code, exc.message, "blocks are numbered from 0 and read in order") from None
    last = None if stream.total_blocks is None else block.index == stream.total_blocks - 1
    meta = {
        "handle": stream.handle,
        "block": block.index,
        "rows": block.rows,
        "first_row": block.first_row,
        "last": last,
        "next_block": None if last else block.index + 1,
    }
    return ToolOutput(meta, text=block.data.decode())


async def close_result(call: ToolCall, args: dict[str, Any]) -> dict[str, Any]:
    stream = _stream(call, args["handle"])
    stream.close("closed by close_result")
    return {"handle": stream.handle, "closed": True}


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

    def build(columns: Sequence[Column]) -> str:
        return build_select(
            table=table,
            columns=columns,
            select=args.get("select", ["*"]),
            where=args.get("where"),
            group_by=args.get("group_by", []),
            order_by=args.get("order_by", []),
            limit=args.get("limit", 100),
            dialect=call.source.dialect,
        )

    columns, remembered = await call.schema.columns(call.source, database, table)
    try:
        sql = build(columns)
    except SqlRejected:
        if not remembered:
            raise
        # Perhaps a column added since the schema was remembered: refuse only against a fresh one.
        sql = build((await call.schema.columns(call.source, database, table, fresh=True))[0])
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
    "fetch_block": fetch_block,
    "close_result": close_result,
}
