"""WebSocket transport: `GET /mcp/ws`, subprotocol `mcp`, one JSON-RPC message per text frame.

A connection is one session. A reader task feeds client frames to the
session and a writer task sends its messages, so the two directions never
wait on each other. Both stay bounded: the reader stops reading the socket
while a request waits for an in-flight slot (TCP pushes back on the client),
and a response's slot is freed only after its frame has been handed to the
socket. Nothing a client sends ends the connection: a frame the server cannot
take gets a JSON-RPC error frame and the connection goes on. Closing the
socket ends the session; a session that ends on its own (idle timeout,
shutdown) closes the socket with 1001.

Ping/pong keepalive and the largest accepted message are hypercorn's job
(`websocket_ping_interval`, `websocket_max_message_size`, set from
`HttpSettings`); a message over the limit is closed with 1009 by hypercorn.
"""

from __future__ import annotations

import trio
from mcp.shared.message import SessionMessage
from quart import Quart, Response, websocket

from emcp.auth.caller import caller_of
from emcp.nursery import RegistryFull, Session, SessionClosed, SessionRegistry
from emcp.settings import Settings
from emcp.transport.frame_errors import refusal, take
from emcp.transport.http_errors import json_error
from emcp.transport.outbound import message_json

WS_PATH = "/mcp/ws"
SUBPROTOCOL = "mcp"

# Close code for a session the server ended (idle timeout, shutdown): RFC 6455 "going away".
GOING_AWAY = 1001


async def _read_frames(session: Session) -> None:
    """Hand each client frame to the session; answer the ones it cannot take with an error frame."""
    while True:
        data = await websocket.receive()
        if isinstance(data, str):
            error = await take(session, data.encode())
        else:
            error = refusal("binary_frame", "binary frames are not accepted; send JSON text frames")
        if error is not None:
            await websocket.send(error.decode())


async def _write_frames(session: Session) -> None:
    """Send the session's messages, one text frame each, until the session ends.

    Returns when the session has ended on its own (idle timeout, shutdown).
    Every send is awaited before the next, and a batch's slots are freed only
    once all of it is written: a client that stops reading stalls its responses
    in the socket, not in server memory.
    """
    while True:
        try:
            batch: list[SessionMessage] = await session.next_outbound()
        except SessionClosed:
            return
        for item in batch:
            await websocket.send(message_json(item.message).decode())  # a text frame, as MCP over WebSocket uses
        session.acknowledge(batch)


def add_websocket_route(app: Quart, registry: SessionRegistry, settings: Settings) -> None:
    @app.websocket(WS_PATH)
    async def websocket_session() -> Response | None:
        # Returning a response before accept() refuses the upgrade with that HTTP status.
        if SUBPROTOCOL not in websocket.requested_subprotocols:
            return json_error(
                400,
                "subprotocol_required",
                f"offer the WebSocket subprotocol {SUBPROTOCOL!r} (Sec-WebSocket-Protocol: {SUBPROTOCOL})",
            )
        try:
            session = await registry.open_session("websocket", caller_of(websocket.scope))
        except RegistryFull:
            return json_error(503, "too_many_sessions", "the server holds its maximum number of sessions; retry later")
        try:
            await websocket.accept(subprotocol=SUBPROTOCOL)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_read_frames, session)
                await _write_frames(session)
                nursery.cancel_scope.cancel()
            # The session ended on its own; a client that disconnects gets us cancelled instead.
            # Its close reason is final once it has finished unwinding.
            await session.closed.wait()
            await websocket.close(GOING_AWAY, session.close_reason)
        finally:
            # Also reached when the client goes away (quart-trio cancels us): it ends the session.
            session.close("client disconnected")
        return None
