"""Wire emcp's tools into the MCP SDK's low-level `Server`.

The SDK owns the protocol (handshake, eras, JSON-RPC, `notifications/cancelled`,
progress); emcp owns what a call does and which session it belongs to. One
`Server` serves every session: per-session state travels in each request's
metadata (`ctx.request` is the emcp `Session`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage

from emcp import __version__
from emcp.nursery.session import ServeMcp, Session
from emcp.settings import Settings
from emcp.sources.base import Source
from emcp.tools.context import ToolCall
from emcp.tools.spec import ToolSpec
from emcp.tools.toolset import ToolSet

INSTRUCTIONS = (
    "emcp serves EdgeLake-style edge data. Discover with list_databases, list_tables and get_schema "
    "(or list_database_schema for everything at once), then read with `query` (structured, preferred) "
    "or `sql` (one read-only SELECT). Results over the inline limit say truncated=true: narrow or aggregate."
)


def build_mcp_server(
    toolset: ToolSet, source: Source, settings: Settings, server_statistics: Callable[[], dict[str, Any]]
) -> Server[Any]:
    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=toolset.tools)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        if toolset.spec(params.name) is None:
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"Unknown tool: {params.name!r}; tools/list names the tools",
                data={"tools": toolset.names},
            )
        session = ctx.request if isinstance(ctx.request, Session) else None

        def make_call(spec: ToolSpec) -> ToolCall:
            return ToolCall(
                spec=spec,
                source=source,
                settings=settings.query,
                server_statistics=server_statistics,
                tool_names=toolset.names,
                report_progress=ctx.session.report_progress,
                track_query=session.track_query if session is not None else nullcontext,
            )

        return await toolset.call(params.name, params.arguments, make_call)

    return Server(
        "emcp",
        version=__version__,
        title="emcp: EdgeLake data over MCP",
        instructions=INSTRUCTIONS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
    )


def session_runner(server: Server[Any]) -> ServeMcp:
    """What a session runs: the SDK's dual-era loop over the session's two streams."""
    options = server.create_initialization_options()

    async def serve(
        read_stream: MemoryObjectReceiveStream[Any], write_stream: MemoryObjectSendStream[SessionMessage]
    ) -> None:
        await server.run(read_stream, write_stream, options)

    return serve
