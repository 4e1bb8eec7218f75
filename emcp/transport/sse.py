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
from urllib.parse import parse_qs

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from emcp.auth.caller import caller_of
from emcp.nursery import DuplicateRequest, Overloaded, RegistryFull, SessionClosed, SessionRegistry
from emcp.settings import Settings
from emcp.transport.asgi_reply import Reply, cancel_on_disconnect, event_stream_reply, send_reply
from emcp.transport.event_stream import KEEPALIVE, encode_events, next_or_keepalive
from emcp.transport.http_body import ClientGone, receive_body
from emcp.transport.http_errors import send_json_error
from emcp.transport.intake import IntakeError, parse_message

SSE_PATH = "/mcp/sse"
MESSAGES_PATH = "/mcp/messages"


class SseEndpoint:
    """`GET /mcp/sse` and `POST /mcp/messages/{id}` (or `?session_id=`), served as ASGI below Quart.

    Every tool call over SSE is one of these POSTs, and Quart's request and
    response machinery (request context, routing, wrappers) costs about as
    much as the call's own work; a stream held by Quart keeps its request
    context and two more tasks for the session's whole life. Any other path
    goes on to Quart. The auth and Host/Origin guards and the body-size
    counting wrap this as they wrap Quart.
    """

    def __init__(self, app: ASGIFramework, registry: SessionRegistry, settings: Settings) -> None:
        self.app = app
        self.registry = registry
        self.keepalive = settings.http.keepalive
        self.max_body_bytes = settings.http.max_body_bytes

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" and scope["path"] == SSE_PATH:
            if scope["method"] == "GET":
                await self._stream(scope, receive, send)
            else:
                allowed = {"Allow": "GET"}
                await send_json_error(scope, send, 405, "method_not_allowed", "open the stream with GET", allowed)
            return
        session_id = _named_session_id(scope)
        if session_id is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            allowed = {"Allow": "POST"}
            await send_json_error(scope, send, 405, "method_not_allowed", "send messages with POST", allowed)
            return
        try:
            status, code, message, headers = await self._post(scope, receive, session_id)
        except ClientGone:
            return
        if status == 202:
            await send_reply(send, Reply(202, {"content-type": "text/plain"}, _ACCEPTED))
        else:
            await send_json_error(scope, send, status, code, message, headers)

    async def _stream(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        try:
            session = await self.registry.open_session("sse", caller_of(scope))
        except RegistryFull as exc:
            await send_json_error(scope, send, 503, "too_many_sessions", str(exc))
            return
        keepalive = self.keepalive

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
                # Also reached when the client goes away (the disconnect cancels us); then it ends the session.
                session.close("client disconnected")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(cancel_on_disconnect, receive, nursery.cancel_scope)
            await send_reply(send, event_stream_reply(events()))
            nursery.cancel_scope.cancel()

    async def _post(
        self, scope: Scope, receive: ASGIReceiveCallable, session_id: str
    ) -> tuple[int, str, str, dict[str, str] | None]:
        """(status, error code, error message, headers): 202 when the message was taken."""
        if not session_id:
            where = f"POST to {MESSAGES_PATH}/<session_id>, the URI of the endpoint event"
            return 400, "missing_session_id", where, None
        session = self.registry.get(session_id, caller_of(scope))
        if session is None:
            return 404, "session_not_found", "no such session, or it has ended; open a new one", None
        try:
            message = parse_message(await receive_body(scope, receive, self.max_body_bytes))
        except IntakeError as exc:
            return (413 if exc.code == "body_too_large" else 400), exc.code, exc.message, None
        try:
            await session.submit(message)
        except SessionClosed:
            return 404, "session_not_found", "the session has ended; open a new one", None
        except Overloaded as exc:
            return 429, "too_many_requests_in_flight", str(exc), {"Retry-After": "1"}
        except DuplicateRequest as exc:
            return 400, "duplicate_request_id", str(exc), None
        return 202, "", "", None


_ACCEPTED = b"Accepted"


def _named_session_id(scope: Scope) -> str | None:
    """The session a request to the messages endpoint names ("" when it names none); None for
    a request to any other path."""
    if scope["type"] != "http":
        return None
    path = scope["path"]
    if path == MESSAGES_PATH:
        query = parse_qs(scope["query_string"].decode("latin-1"))
        return next(iter(query.get("session_id") or query.get("sessionId") or [""]))
    prefix = MESSAGES_PATH + "/"
    if path.startswith(prefix) and len(path) > len(prefix) and "/" not in path[len(prefix) :]:
        return path[len(prefix) :]
    return None
