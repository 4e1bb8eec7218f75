"""Wire emcp's tools into the MCP SDK's low-level `Server`.

The SDK owns the protocol (handshake, eras, JSON-RPC, `notifications/cancelled`,
progress); emcp owns what a call does and which session it belongs to. One
`Server` serves every session: per-session state travels in each request's
metadata (`ctx.request` is the emcp `Session`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import anyio
import mcp_types as types
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.runner import modern_error_data, serve_one
from mcp.shared.dispatcher import CallOptions
from mcp.shared.exceptions import MCPError, NoBackChannelError
from mcp.shared.inbound import InboundModernRoute, classify_inbound_request
from mcp.shared.jsonrpc_dispatcher import progress_token_from_params
from mcp.shared.message import MessageMetadata, ServerMessageMetadata, SessionMessage
from mcp.shared.transport_context import TransportContext
from mcp_types import JSONRPCError, JSONRPCNotification, JSONRPCRequest, JSONRPCResponse, RequestId

from emcp import __version__
from emcp.auth.caller import ANONYMOUS, Caller
from emcp.blocks.stream import NDJSON, ResultStore, StreamError
from emcp.nursery.session import ServeMcp, Session
from emcp.rate_limit import RateLimiter
from emcp.settings import QuerySettings, Settings
from emcp.sources.base import Source
from emcp.sources.schema_cache import SchemaCache
from emcp.tools.context import Results, ToolCall
from emcp.tools.spec import ToolSpec
from emcp.tools.toolset import ToolSet

INSTRUCTIONS = (
    "emcp serves EdgeLake-style edge data. Discover with list_databases, list_tables and get_schema "
    "(or list_database_schema for everything at once), then read with `query` (structured, preferred) "
    "or `sql` (one read-only SELECT). Results over the inline limit say truncated=true: narrow or aggregate."
)


# MCP's code for a resource that does not exist (not among JSON-RPC's reserved ones).
RESOURCE_NOT_FOUND = -32002
# emcp's code for a call refused by the caller's rate limit (a server-defined JSON-RPC code).
RATE_LIMITED = -32029
# The request `_meta` key in which a call asks for its own timeout, in seconds.
TIMEOUT_META_KEY = "emcp/timeout"


def call_timeout(meta: Mapping[str, Any] | None, settings: QuerySettings) -> float:
    """The call's timeout: what it asked for in `_meta`, within the server's maximum; else the default."""
    asked = (meta or {}).get(TIMEOUT_META_KEY)
    if asked is None:
        return settings.timeout
    if isinstance(asked, bool) or not isinstance(asked, int | float) or asked <= 0:
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"_meta[{TIMEOUT_META_KEY!r}] must be a positive number of seconds, not {asked!r}",
        )
    if settings.max_timeout and asked > settings.max_timeout:
        raise MCPError(
            code=types.INVALID_PARAMS,
            message=f"_meta[{TIMEOUT_META_KEY!r}] asks {asked:g} s; the most this server allows is "
            f"{settings.max_timeout:g} s",
            data={"max_timeout": settings.max_timeout},
        )
    return float(asked)


_BLOCK_URI = re.compile(r"emcp://results/([0-9a-f]{32})/(\d+)")


def build_mcp_server(
    toolset: ToolSet,
    source: Source,
    settings: Settings,
    results: ResultStore,
    server_statistics: Callable[[], dict[str, Any]],
) -> Server[Any]:
    def results_for(session: Session | None) -> Results | None:
        if session is None or not settings.blocks.enabled:
            return None
        return Results(
            store=results,
            owner=session.owner,
            caller=session.caller.name,
            nursery=session.results_nursery,
            settings=settings.blocks,
        )

    rate_limiter = RateLimiter()
    schema = SchemaCache(settings.query.schema_ttl)

    def caller_in(ctx: ServerRequestContext[Any]) -> Caller:
        return ctx.request.caller if isinstance(ctx.request, Session) else ANONYMOUS

    async def on_list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        caller = caller_in(ctx)
        return types.ListToolsResult(tools=[tool for tool in toolset.tools if caller.may_use(tool.name)])

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        caller = caller_in(ctx)
        tool_names = caller.visible(toolset.names)
        # A tool outside the caller's toolset is reported exactly as one that does not exist.
        if toolset.spec(params.name) is None or not caller.may_use(params.name):
            raise MCPError(
                code=types.INVALID_PARAMS,
                message=f"Unknown tool: {params.name!r}; tools/list names the tools",
                data={"tools": tool_names},
            )
        rate = caller.calls_per_second if caller.calls_per_second is not None else settings.query.calls_per_second
        wait = rate_limiter.take(caller.name, rate, settings.query.calls_burst)
        if wait:
            raise MCPError(
                code=RATE_LIMITED,
                message=f"rate limit: at most {rate:g} tool calls per second for {caller.name!r}; "
                f"retry in {wait:.2f} s",
                data={"retry_after": round(wait, 3), "calls_per_second": rate},
            )
        timeout = call_timeout(params.meta, settings.query)
        session = ctx.request if isinstance(ctx.request, Session) else None

        def make_call(spec: ToolSpec) -> ToolCall:
            return ToolCall(
                spec=spec,
                source=source,
                settings=settings.query,
                server_statistics=server_statistics,
                tool_names=tool_names,
                timeout=timeout,
                schema=schema,
                report_progress=ctx.session.report_progress,
                track_query=session.track_query if session is not None else nullcontext,
                results=results_for(session),
            )

        return await toolset.call(params.name, params.arguments, make_call)

    async def on_list_resources(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        """The next unread block of each of the session's open results."""
        session = ctx.request if isinstance(ctx.request, Session) else None
        owned = [s for s in results.streams() if session is not None and s.owner == session.owner]
        return types.ListResourcesResult(
            resources=[
                types.Resource(
                    name=f"result-{s.handle}-{s.blocks_read}",
                    uri=f"emcp://results/{s.handle}/{s.blocks_read}",
                    mime_type=NDJSON,
                    description=f"The next unread block of result {s.handle}",
                )
                for s in owned
            ]
        )

    async def on_list_resource_templates(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(
            resource_templates=[
                types.ResourceTemplate(
                    name="result-block",
                    title="A block of a large query result",
                    uri_template="emcp://results/{handle}/{n}",
                    mime_type=NDJSON,
                    description=(
                        "Block n of the result a query returned as `result.handle`: NDJSON, block 0 starting "
                        'with a {"columns": [...]} line, then one JSON array per row. Read in order from 0.'
                    ),
                )
            ]
        )

    async def on_read_resource(
        ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        session = ctx.request if isinstance(ctx.request, Session) else None
        match = _BLOCK_URI.fullmatch(uri)
        stream = results.get(match[1], session.owner) if match and session is not None else None
        if match is None or stream is None:
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"Resource not found: {uri}", data={"uri": uri})
        try:
            block = await stream.read(int(match[2]), ctx.session.report_progress)
        except StreamError as exc:
            raise MCPError(
                code=types.INVALID_PARAMS, message=exc.message, data={"uri": uri, "code": exc.code}
            ) from None
        last = None if stream.total_blocks is None else block.index == stream.total_blocks - 1
        return types.ReadResourceResult(
            contents=[
                types.TextResourceContents(
                    uri=uri,
                    mime_type=NDJSON,
                    text=block.data.decode(),
                    _meta={"emcp/rows": block.rows, "emcp/first_row": block.first_row, "emcp/last": last},
                )
            ]
        )

    return Server(
        "emcp",
        version=__version__,
        title="emcp: EdgeLake data over MCP",
        instructions=INSTRUCTIONS,
        on_list_tools=on_list_tools,
        on_call_tool=on_call_tool,
        on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_resource_templates,
        on_read_resource=on_read_resource,
    )


def session_runner(server: Server[Any]) -> ServeMcp:
    """What a session runs: the SDK's dual-era loop over the session's two streams."""
    options = server.create_initialization_options()

    async def serve(
        read_stream: MemoryObjectReceiveStream[Any], write_stream: MemoryObjectSendStream[SessionMessage]
    ) -> None:
        await server.run(read_stream, write_stream, options)

    return serve


def exchange_runner(server: Server[Any]) -> ServeMcp:
    """What a 2026-07-28 exchange's session runs: its one request, served by the SDK's `serve_one`.

    The dual-era loop would start a dispatcher, a relay task and their
    streams for the one request a stateless exchange carries; `serve_one` is
    the SDK's own single-exchange entry (its HTTP transport serves 2026
    requests with it). A first message that is not an enveloped request (an
    `initialize`, a notification) is handed to the loop after all, so it is
    answered exactly as on any other session.
    """
    loop = session_runner(server)

    async def serve(
        read_stream: MemoryObjectReceiveStream[Any], write_stream: MemoryObjectSendStream[SessionMessage]
    ) -> None:
        try:
            item: SessionMessage = await read_stream.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            await write_stream.aclose()
            return
        message = item.message
        route = (
            classify_inbound_request({"method": message.method, "params": message.params})
            if isinstance(message, JSONRPCRequest) and message.method != "initialize"
            else None
        )
        if not isinstance(route, InboundModernRoute):
            replay_send, replay_receive = anyio.create_memory_object_stream[Any](1)
            await replay_send.send(item)
            with replay_send:  # held open while the loop serves: the exchange ends the session, not EOF
                await loop(replay_receive, write_stream)
            return
        assert isinstance(message, JSONRPCRequest)
        context = _ExchangeContext(message, item.metadata, write_stream)
        connection = Connection.from_envelope(route.protocol_version, route.client_info, route.client_capabilities)
        async with write_stream, server.lifespan(server) as lifespan_state:
            reply: JSONRPCResponse | JSONRPCError
            try:
                result = await serve_one(
                    server,
                    context,
                    message.method,
                    message.params,
                    connection=connection,
                    lifespan_state=lifespan_state,
                )
                reply = JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result)
            except Exception as exc:
                reply = JSONRPCError(jsonrpc="2.0", id=message.id, error=modern_error_data(exc))
            await write_stream.send(SessionMessage(reply))

    return serve


@dataclass
class _ExchangeContext:
    """The SDK's dispatch context for one 2026-07-28 request: no back-channel for server requests
    (the protocol has none); notifications and progress go onto the exchange's own stream."""

    request: JSONRPCRequest
    metadata: MessageMetadata
    write_stream: MemoryObjectSendStream[SessionMessage]
    transport: TransportContext = field(default=TransportContext(kind="streamable-http", can_send_request=False))
    can_send_request: bool = False
    cancel_requested: anyio.Event = field(default_factory=anyio.Event)

    @property
    def request_id(self) -> RequestId:
        return self.request.id

    @property
    def message_metadata(self) -> MessageMetadata:
        return self.metadata

    async def send_raw_request(
        self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None
    ) -> dict[str, Any]:
        raise NoBackChannelError(method)

    async def notify(self, method: str, params: Mapping[str, Any] | None, opts: CallOptions | None = None) -> None:
        notification = JSONRPCNotification(jsonrpc="2.0", method=method, params=dict(params) if params else None)
        metadata = ServerMessageMetadata(related_request_id=self.request.id)
        await self.write_stream.send(SessionMessage(notification, metadata=metadata))

    async def progress(self, progress: float, total: float | None = None, message: str | None = None) -> None:
        token = progress_token_from_params(self.request.params)
        if token is None:
            return
        params: dict[str, Any] = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        if message is not None:
            params["message"] = message
        await self.notify("notifications/progress", params)
