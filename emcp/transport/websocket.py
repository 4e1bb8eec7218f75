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

Served as ASGI below Quart: Quart's websocket wrapper costs two tasks and its
request context per connection, held for the connection's whole life, and a
layer of calls on every frame.
"""

from __future__ import annotations

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from mcp.shared.message import SessionMessage

from emcp.auth.caller import caller_of
from emcp.nursery import RegistryFull, Session, SessionClosed, SessionRegistry
from emcp.transport.frame_errors import refusal, take
from emcp.transport.http_errors import send_json_error
from emcp.transport.outbound import message_json

WS_PATH = "/mcp/ws"
SUBPROTOCOL = "mcp"

# Close code for a session the server ended (idle timeout, shutdown): RFC 6455 "going away".
GOING_AWAY = 1001


async def _read_frames(session: Session, receive: ASGIReceiveCallable, send: ASGISendCallable) -> bool:
    """Hand each client frame to the session; answer the ones it cannot take with an error frame.

    Returns True when the client disconnects, False when the session ends first
    (then the writer closes the connection).
    """
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return True
        text = event.get("text")
        if text is not None:
            try:
                error = await take(session, text.encode())
            except SessionClosed:
                return False
        else:
            error = refusal("binary_frame", "binary frames are not accepted; send JSON text frames")
        if error is not None:
            await send({"type": "websocket.send", "text": error.decode()})


async def _write_frames(session: Session, send: ASGISendCallable) -> None:
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
            # A text frame, as MCP over WebSocket uses.
            await send({"type": "websocket.send", "text": message_json(item.message).decode()})
        session.acknowledge(batch)


def websocket_endpoint(app: ASGIFramework, registry: SessionRegistry) -> ASGIFramework:
    """`/mcp/ws` in front of `app` (Quart), which gets everything else."""

    async def endpoint(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "websocket" or scope["path"] != WS_PATH:
            await app(scope, receive, send)
            return
        if (await receive())["type"] != "websocket.connect":
            return
        # An HTTP response instead of the accept refuses the upgrade with that status.
        if SUBPROTOCOL not in scope.get("subprotocols", ()):
            message = f"offer the WebSocket subprotocol {SUBPROTOCOL!r} (Sec-WebSocket-Protocol: {SUBPROTOCOL})"
            await send_json_error(scope, send, 400, "subprotocol_required", message)
            return
        try:
            session = await registry.open_session("websocket", caller_of(scope))
        except RegistryFull as exc:
            await send_json_error(scope, send, 503, "too_many_sessions", str(exc))
            return
        try:
            await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL})
            client_left = False
            async with trio.open_nursery() as nursery:

                async def read() -> None:
                    nonlocal client_left
                    if await _read_frames(session, receive, send):
                        client_left = True
                        nursery.cancel_scope.cancel()

                nursery.start_soon(read)
                await _write_frames(session, send)
                nursery.cancel_scope.cancel()
            if not client_left:
                # The session ended on its own; its close reason is final once it has finished unwinding.
                await session.closed.wait()
                await send({"type": "websocket.close", "code": GOING_AWAY, "reason": session.close_reason})
        finally:
            session.close("client disconnected")

    return endpoint
