"""Legacy HTTP+SSE transport (protocol 2024-11-05).

`GET /mcp/sse` opens a session and streams its server messages; the first
event names the URI to POST client messages to. `POST /mcp/messages/{id}`
answers 202 and the reply travels on the stream. Server messages that are
ready together go out as one chunk (one socket write), and the in-flight
slots of the responses in a chunk are released only after the chunk has been
handed to the socket.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from quart import Quart, Response, request

from emcp.auth.caller import caller_of
from emcp.nursery import DuplicateRequest, Overloaded, RegistryFull, SessionClosed, SessionRegistry
from emcp.settings import Settings
from emcp.transport.event_stream import KEEPALIVE, encode_events, event_stream_response, next_or_keepalive
from emcp.transport.http_body import read_body
from emcp.transport.http_errors import json_error
from emcp.transport.intake import IntakeError, parse_message

SSE_PATH = "/mcp/sse"
MESSAGES_PATH = "/mcp/messages"


def add_sse_routes(app: Quart, registry: SessionRegistry, settings: Settings) -> None:
    keepalive = settings.http.keepalive

    @app.get(SSE_PATH)
    async def open_stream() -> Response:
        try:
            session = await registry.open_session("sse", caller_of(request.scope))
        except RegistryFull:
            return json_error(503, "too_many_sessions", "the server holds its maximum number of sessions; retry later")

        async def events() -> AsyncIterator[bytes]:
            try:
                yield f"event: endpoint\ndata: {MESSAGES_PATH}/{session.id}\n\n".encode()
                while True:
                    batch = await next_or_keepalive(keepalive, session.next_outbound)
                    if batch is None:
                        yield KEEPALIVE
                        continue
                    yield encode_events(batch)
                    session.acknowledge(batch)
            except SessionClosed:
                return  # the session ended on its own (idle, shutdown): the stream just ends
            finally:
                # Also reached when the client goes away (quart-trio cancels us); then it ends the session.
                session.close("client disconnected")

        return event_stream_response(events())

    @app.post(f"{MESSAGES_PATH}/<session_id>")
    @app.post(MESSAGES_PATH)
    async def post_message(session_id: str | None = None) -> Response:
        session_id = session_id or request.args.get("session_id") or request.args.get("sessionId")
        if not session_id:
            return json_error(
                400, "missing_session_id", f"POST to {MESSAGES_PATH}/<session_id>, the URI of the endpoint event"
            )
        session = registry.get(session_id, caller_of(request.scope))
        if session is None:
            return json_error(404, "session_not_found", "no such session, or it has ended; open a new one")
        try:
            message = parse_message(await read_body(settings.http.max_body_bytes))
        except IntakeError as exc:
            return json_error(413 if exc.code == "body_too_large" else 400, exc.code, exc.message)
        try:
            await session.submit(message)
        except SessionClosed:
            return json_error(404, "session_not_found", "the session has ended; open a new one")
        except Overloaded as exc:
            return json_error(429, "too_many_requests_in_flight", str(exc), headers={"Retry-After": "1"})
        except DuplicateRequest as exc:
            return json_error(400, "duplicate_request_id", str(exc))
        return Response(b"Accepted", status=202, content_type="text/plain")
