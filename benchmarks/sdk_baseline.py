"""The baseline emcp is compared with: the official `mcp` SDK's `MCPServer` on uvicorn.

    python benchmarks/sdk_baseline.py --data-dir DIR

It serves a `query` tool over the same SQLite demo data, written the way the
SDK's documentation shows (a decorated function; the SDK runs a sync tool in
a worker thread), on Streamable HTTP (`/mcp`, both protocol eras: 2025-11-25
sessions and 2026-07-28 stateless requests) and legacy SSE (`/sse`) in one
uvicorn server. It prints `listening on PORT` once bound. For benchmarks only:
`where` is spliced into the SQL, as a quick SDK server would do it.

Its `sql` tool is the baseline for large results: the SDK has no way to stream
a tool's result, so the whole result travels as one text, as an SDK server
returns it. The SDK has no WebSocket server transport (2.x).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.applications import Starlette


def build_app(data_dir: Path, max_sessions: int | None = None) -> Starlette:
    mcp = MCPServer("sdk-baseline")

    @mcp.tool()
    def query(database: str, table: str, where: str | None = None, limit: int = 100) -> dict[str, Any]:
        """Rows of a table, optionally filtered by a WHERE expression."""
        conn = sqlite3.connect(f"file:{data_dir / database}.db?mode=ro", uri=True)
        try:
            sql = f'SELECT * FROM "{table}"' + (f" WHERE {where}" if where else "") + " LIMIT ?"
            cursor = conn.execute(sql, (limit,))
            columns = [d[0] for d in cursor.description]
            rows = [list(row) for row in cursor.fetchall()]
        finally:
            conn.close()
        return {"database": database, "columns": columns, "rows": rows, "row_count": len(rows)}

    @mcp.tool(structured_output=False)
    def sql(database: str, sql: str) -> str:
        """The rows of one SELECT as one text: NDJSON, a `{"columns": [...]}` line then one array per row.

        The same document emcp's block stream carries, so the two sides move the same bytes.
        """
        conn = sqlite3.connect(f"file:{data_dir / database}.db?mode=ro", uri=True)
        try:
            cursor = conn.execute(sql)
            lines = [json.dumps({"columns": [d[0] for d in cursor.description]})]
            lines.extend(json.dumps(list(row)) for row in cursor)
        finally:
            conn.close()
        return "\n".join(lines) + "\n"

    # The SDK refuses Streamable HTTP sessions past 10,000 by default; the idle benchmark raises it as it does emcp's.
    streamable = mcp.streamable_http_app(max_sessions=max_sessions) if max_sessions else mcp.streamable_http_app()
    sse = mcp.sse_app()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with streamable.router.lifespan_context(app):  # the Streamable HTTP session manager
            yield

    return Starlette(routes=[*sse.routes, *streamable.routes], lifespan=lifespan)


async def serve(data_dir: Path, port: int, max_sessions: int | None) -> None:
    app = build_app(data_dir, max_sessions)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # the error that stopped it
        await asyncio.sleep(0.05)
    bound = server.servers[0].sockets[0].getsockname()[1]
    print(f"listening on {bound}", flush=True)
    await task


def main() -> None:
    logging.basicConfig(level=logging.WARNING)  # the SDK logs every session at INFO: noise in the figures' output
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-sessions", type=int, help="Streamable HTTP sessions at once (the SDK's default: 10,000)")
    args = parser.parse_args()
    asyncio.run(serve(args.data_dir, args.port, args.max_sessions))


if __name__ == "__main__":
    main()
