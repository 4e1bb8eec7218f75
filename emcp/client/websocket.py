"""A WebSocket client transport for the `mcp` SDK's `ClientSession`, on trio-websocket.

    async with websocket_client("ws://127.0.0.1:8765/mcp/ws") as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()

It yields the same pair of anyio memory streams as the SDK's `sse_client`, so
everything the SDK does over SSE (requests, cancellation, progress) works over
the WebSocket unchanged. One JSON-RPC message per text frame, subprotocol `mcp`.
The streams are unbuffered and trio-websocket's queue holds one message, so a
slow consumer slows the socket rather than growing memory.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import anyio
import mcp_types
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.message import SessionMessage
from trio_websocket import ConnectionClosed, ConnectionRejected, WebSocketConnection, wrap_client_stream

from emcp.transport.outbound import message_json

SUBPROTOCOL = "mcp"


class BinaryFrame(Exception):
    """The server sent a binary frame; the binding carries JSON text frames only."""


async def _read_frames(ws: WebSocketConnection, read_send: MemoryObjectSendStream[SessionMessage | Exception]) -> None:
    """Parse each text frame into a message; a frame that does not parse goes to the reader as its error.

    Ends the read stream when the socket closes, which is how `ClientSession`
    learns that its pending requests will never be answered.
    """
    async with read_send:
        while True:
            try:
                frame = await ws.get_message()
            except ConnectionClosed:
                return
            item: SessionMessage | Exception
            if isinstance(frame, bytes):
                item = BinaryFrame(f"the server sent a {len(frame)}-byte binary frame; expected JSON text")
            else:
                try:
                    item = SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(frame, by_name=False))
                except ValueError as exc:  # pydantic's ValidationError is a ValueError
                    item = exc
            try:
                await read_send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return  # the consumer has gone


async def _write_frames(ws: WebSocketConnection, write_recv: MemoryObjectReceiveStream[SessionMessage]) -> None:
    """Send each outgoing message as one text frame, awaiting every send."""
    async with write_recv:
        async for item in write_recv:
            try:
                await ws.send_message(message_json(item.message).decode())  # a text frame
            except ConnectionClosed:
                return


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    subprotocols: Sequence[str] = (SUBPROTOCOL,),
    extra_headers: Sequence[tuple[str, str]] = (),
    connect_timeout: float = 10.0,
) -> AsyncIterator[WebSocketConnection]:
    """A WebSocket connection offering `subprotocols`, over a TCP stream this function owns.

    trio-websocket 0.12's own `open_websocket_url` leaves its socket open when
    the server refuses the upgrade or drops the connection while closing (it is
    closed only when collected); owning the stream closes it on every path.
    Raises `ConnectionRejected` (with the HTTP status) when the upgrade is refused.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"a WebSocket URL looks like ws://HOST:PORT/mcp/ws, not {url!r}")
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    with trio.fail_after(connect_timeout):
        if parts.scheme == "wss":
            stream: trio.SocketStream | trio.SSLStream[trio.SocketStream] = await trio.open_ssl_over_tcp_stream(
                parts.hostname, port, ssl_context=ssl.create_default_context()
            )
        else:
            stream = await trio.open_tcp_stream(parts.hostname, port)
    try:
        async with trio.open_nursery() as nursery:
            with trio.fail_after(connect_timeout):
                ws = await wrap_client_stream(
                    nursery,
                    stream,
                    parts.netloc,
                    resource,
                    subprotocols=subprotocols,
                    extra_headers=[(name.encode(), value.encode()) for name, value in extra_headers],
                )
            try:
                yield ws
            finally:
                await ws.aclose()
    except BaseExceptionGroup as group:
        # The refusal is raised in trio-websocket's reader task: hand it on as itself.
        rejected, _ = group.split(ConnectionRejected)
        if rejected is None:
            raise
        raise rejected.exceptions[0] from None
    finally:
        await trio.aclose_forcefully(stream)


@asynccontextmanager
async def websocket_client(
    url: str, *, headers: dict[str, str] | None = None, connect_timeout: float = 10.0
) -> AsyncIterator[
    tuple[MemoryObjectReceiveStream[SessionMessage | Exception], MemoryObjectSendStream[SessionMessage]]
]:
    """Connect to an emcp `/mcp/ws` URL (`ws://` or `wss://`) and yield `(read_stream, write_stream)`.

    Raises trio-websocket's `ConnectionRejected` (with the HTTP status) when the
    server refuses the upgrade, e.g. 503 when it holds its maximum of sessions,
    or 401 without the bearer token `headers` should carry. Leaving the block
    closes the socket and all four stream ends.
    """
    read_send, read_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_send, write_recv = anyio.create_memory_object_stream[SessionMessage](0)
    try:
        async with (
            open_websocket(url, extra_headers=list((headers or {}).items()), connect_timeout=connect_timeout) as ws,
            trio.open_nursery() as nursery,
        ):
            nursery.start_soon(_read_frames, ws, read_send)
            nursery.start_soon(_write_frames, ws, write_recv)
            try:
                yield read_recv, write_send
            finally:
                nursery.cancel_scope.cancel()
    finally:
        for stream in (read_send, read_recv, write_send, write_recv):
            stream.close()
