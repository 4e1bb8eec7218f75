"""Streamable HTTP at `/mcp`: the 2025 protocol eras with sessions, and the stateless 2026-07-28 one.

The era is read from the `MCP-Protocol-Version` header, as the SDK routes it:
no header, or a handshake-era version, is the 2025 protocol; anything else is
a 2026-07-28 request (or an unknown version, which the SDK's validation
ladder turns down with the versions served).

2025-03-26 / 2025-06-18 / 2025-11-25: `initialize` opens a registry session
whose id travels in `Mcp-Session-Id`. Each POST that carries a request gets a
stream of its own (SSE, or one JSON body for a client that accepts only
JSON): the session's router hands every server message to the stream of the
request it answers or relates to, and messages tied to no open request go to
the session's GET stream. emcp keeps no event store, so a response whose
stream has closed could never be delivered: closing a POST's stream cancels
its request, which interrupts the source query. DELETE ends the session.

2026-07-28: every POST is one self-contained exchange, served by a session
that lives for that exchange only (same limits, statistics and shutdown as
any other); the SDK's dual-era loop serves it on the per-request envelope.
Closing the response stream ends the session, which cancels the request.
Large results belong to the caller, so their handles outlive the exchange.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import Any

import orjson
import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.inbound import (
    ERROR_CODE_HTTP_STATUS,
    MCP_PROTOCOL_VERSION_HEADER,
    InboundLadderRejection,
    classify_inbound_request,
    find_duplicated_routing_header,
    unsupported_protocol_version_rejection,
)
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    HEADER_MISMATCH,
    ErrorData,
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import ValidationError
from werkzeug.datastructures import MIMEAccept
from werkzeug.http import parse_accept_header, parse_options_header

from emcp.auth.caller import caller_of
from emcp.nursery import DuplicateRequest, Overloaded, RegistryFull, Session, SessionClosed, SessionRegistry
from emcp.nursery.detached import start_soon_detached
from emcp.settings import Settings
from emcp.transport.asgi_reply import Reply, cancel_on_disconnect, event_stream_reply, json_reply, send_reply
from emcp.transport.event_stream import KEEPALIVE, encode_events, next_or_keepalive
from emcp.transport.frame_errors import INVALID_REQUEST, PARSE_ERROR, TOO_MANY_IN_FLIGHT, error_message, refusal
from emcp.transport.http_body import ClientGone, receive_body
from emcp.transport.intake import IntakeError, parse_message
from emcp.transport.outbound import message_json

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
SESSION_HEADER = "Mcp-Session-Id"
# The 2025-era answer to a request cancelled while its stream was open: the stream must still end
# with a response for its id (the SDK's server sends the same).
REQUEST_CANCELLED = -32800
# Seconds a 2025-era POST waits for its answer to send it as one JSON body rather than a stream.
_JSON_ANSWER_WINDOW = 0.5
# Messages queued for one request's stream (progress notifications, then the response) before the
# router waits for that stream's reader.
_STREAM_BUFFER = 16


def _rpc_error(
    status: int,
    code: int,
    message: str,
    reason: str,
    request_id: RequestId | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An HTTP error whose body is a JSON-RPC error: what MCP clients on this transport parse."""
    return json_reply(status, error_message(request_id, code, message, reason), headers)


def _json_message(message: JSONRPCMessage, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(status, message_json(message), headers)


class _Request:
    """The request's method, headers and body, as the handlers below read them."""

    def __init__(self, scope: Scope, receive: ASGIReceiveCallable, nursery: trio.Nursery) -> None:
        self.scope = scope
        self._receive = receive
        self._nursery = nursery
        self._watching = False
        self.method: str = scope["method"]
        #: The first value of each header, by lower-case name.
        self.headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            self.headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))

    @property
    def header_lines(self) -> list[tuple[str, str]]:
        """Every header line in order, duplicates included (a routing header sent twice is refused);
        only a 2026 exchange needs them, so they are not built for every request."""
        return [(name.decode("latin-1"), value.decode("latin-1")) for name, value in self.scope["headers"]]

    async def body(self, max_bytes: int) -> bytes:
        """The whole body (IntakeError past `max_bytes`); from then on a disconnect cancels the request."""
        try:
            return await receive_body(self.scope, self._receive, max_bytes)
        except ClientGone:
            self._nursery.cancel_scope.cancel()
            await trio.lowlevel.checkpoint()  # raises Cancelled: there is nobody to answer
            raise
        finally:
            self.watch()

    def watch(self) -> None:
        """Cancel the request when the client disconnects (once its body, if any, has been read)."""
        if not self._watching:
            self._watching = True
            self._nursery.start_soon(cancel_on_disconnect, self._receive, self._nursery.cancel_scope)

    def accepts(self) -> tuple[bool, bool]:
        """Whether the client takes a JSON body, and an event stream (wildcards count)."""
        accept = parse_accept_header(self.headers.get("accept"), MIMEAccept)
        return accept["application/json"] > 0, accept["text/event-stream"] > 0

    @property
    def mimetype(self) -> str:
        return parse_options_header(self.headers.get("content-type", ""))[0].lower()


def _is_response(message: JSONRPCMessage) -> bool:
    return isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None


def _is_cancelled(message: JSONRPCMessage) -> bool:
    return isinstance(message, JSONRPCError) and message.error.code == REQUEST_CANCELLED


class _Router:
    """Where a 2025-era session's server messages go: the stream of their request, else the GET stream."""

    def __init__(self, session: Session) -> None:
        self.session = session
        # Open request streams by coerced id, with the id as the client sent it.
        self._requests: dict[RequestId, tuple[RequestId, trio.MemorySendChannel[SessionMessage]]] = {}
        self.standalone: trio.MemorySendChannel[SessionMessage] | None = None
        session.on_unanswered = self._unanswered

    def open_request(self, request_id: RequestId) -> trio.MemoryReceiveChannel[SessionMessage]:
        send, receive = trio.open_memory_channel[SessionMessage](_STREAM_BUFFER)
        self._requests[coerce_request_id(request_id)] = (request_id, send)
        return receive

    def is_open(self, request_id: RequestId) -> bool:
        return coerce_request_id(request_id) in self._requests

    def close_request(self, request_id: RequestId) -> None:
        entry = self._requests.pop(coerce_request_id(request_id), None)
        if entry is not None:
            entry[1].close()

    def _unanswered(self, key: RequestId) -> None:
        """A cancelled request: end its stream with REQUEST_CANCELLED (its slot is already free)."""
        entry = self._requests.pop(key, None)
        if entry is None:
            return
        request_id, send = entry
        error = JSONRPCError(
            jsonrpc="2.0", id=request_id, error=ErrorData(code=REQUEST_CANCELLED, message="Request cancelled")
        )
        with suppress(trio.WouldBlock):  # the stream's reader is behind; ending the stream is what matters
            send.send_nowait(SessionMessage(error))
        send.close()

    async def run(self) -> None:
        """Route until the session ends, then end every stream."""
        try:
            while True:
                for item in await self.session.next_outbound():
                    await self._route(item)
        except SessionClosed:
            pass
        finally:
            for _, send in self._requests.values():
                send.close()
            self._requests.clear()
            if self.standalone is not None:
                self.standalone.close()

    async def _route(self, item: SessionMessage) -> None:
        message = item.message
        target: trio.MemorySendChannel[SessionMessage] | None = None
        last = False
        if _is_response(message):
            entry = self._requests.pop(coerce_request_id(message.id), None)  # type: ignore[union-attr]
            target, last = (entry[1], True) if entry is not None else (None, False)
        else:
            related = item.metadata.related_request_id if isinstance(item.metadata, ServerMessageMetadata) else None
            entry = self._requests.get(coerce_request_id(related)) if related is not None else None
            target = entry[1] if entry is not None else self.standalone
        if target is None:
            # Its stream is gone (the request was cancelled with it), or a notification with no GET stream open.
            logger.debug("session %s: no open stream for %s; dropped", self.session.log_id, type(message).__name__)
            self.session.acknowledge([item])
            return
        try:
            await target.send(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.session.acknowledge([item])
        if last:
            target.close()


def streamable_http_endpoint(app: ASGIFramework, registry: SessionRegistry, settings: Settings) -> ASGIFramework:
    """`/mcp` as ASGI in front of `app` (Quart), which gets every other path.

    Served below Quart because its request and response machinery costs about
    as much as a tool call's own work, and every call is a request here. A
    client that disconnects cancels whatever its request was waiting for, as
    Quart would: the request, its stream, its stateless session.
    """
    keepalive = settings.http.keepalive
    routers: dict[str, _Router] = {}

    async def endpoint(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http" or scope["path"] != MCP_PATH:
            await app(scope, receive, send)
            return
        async with trio.open_nursery() as nursery:
            request = _Request(scope, receive, nursery)
            reply = await route(request)
            request.watch()
            await send_reply(send, reply)
            nursery.cancel_scope.cancel()  # answered: stop watching for a disconnect

    def start_router(session: Session) -> _Router:
        router = routers[session.id] = _Router(session)

        async def run() -> None:
            try:
                await router.run()
            finally:
                del routers[session.id]

        start_soon_detached(session.nursery, run)  # not holding the initialize request's context
        return router

    def too_many_sessions(full: RegistryFull) -> Reply:
        return _rpc_error(503, INVALID_REQUEST, str(full), "too_many_sessions")

    async def route(request: _Request) -> Reply:
        version = request.headers.get(MCP_PROTOCOL_VERSION_HEADER.lower())
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await stateless_exchange(request)
        if request.method == "GET":
            return await open_standalone_stream(request)
        if request.method == "DELETE":
            return end_session(request)
        if request.method == "POST":
            return await post_2025(request)
        return json_reply(
            405, refusal("method_not_allowed", "use POST, GET or DELETE on /mcp"), {"Allow": "GET, POST, DELETE"}
        )

    # -- 2025 eras: sessions -------------------------------------------------------------

    def find_session(request: _Request) -> tuple[Session, _Router] | Reply:
        session_id = request.headers.get(SESSION_HEADER.lower())
        if not session_id:
            return _rpc_error(
                400,
                INVALID_REQUEST,
                f"missing {SESSION_HEADER} header: send the id the initialize response carried",
                "missing_session_id",
            )
        session, router = registry.get(session_id, caller_of(request.scope)), routers.get(session_id)
        if session is None or router is None:
            return _rpc_error(
                404, INVALID_REQUEST, "no such session, or it has ended; initialize a new one", "session_not_found"
            )
        return session, router

    async def post_2025(request: _Request) -> Reply:
        wants_json, wants_events = request.accepts()
        if not (wants_json or wants_events):
            return _rpc_error(
                406,
                INVALID_REQUEST,
                "the client must accept application/json and text/event-stream",
                "not_acceptable",
            )
        if request.mimetype != "application/json":
            return _rpc_error(415, INVALID_REQUEST, "Content-Type must be application/json", "unsupported_media_type")
        try:
            message = parse_message(await request.body(settings.http.max_body_bytes))
        except IntakeError as exc:
            return json_reply(413 if exc.code == "body_too_large" else 400, refusal(exc.code, exc.message))
        if isinstance(message, JSONRPCRequest) and message.method == "initialize":
            try:
                session = await registry.open_session("streamable-http", caller_of(request.scope))
            except RegistryFull as full:
                return too_many_sessions(full)
            found: tuple[Session, _Router] | Reply = (session, start_router(session))
        else:
            found = find_session(request)
        if isinstance(found, Reply):
            return found
        session, router = found
        headers = {SESSION_HEADER: session.id}
        if not isinstance(message, JSONRPCRequest):
            # A notification or a client's response: nothing comes back on this POST.
            try:
                await session.submit(message)
            except SessionClosed:
                return _rpc_error(404, INVALID_REQUEST, "the session has ended", "session_not_found")
            return Reply(202, headers)
        return await answer_request(session, router, message, headers, events=wants_events)

    async def answer_request(
        session: Session, router: _Router, message: JSONRPCRequest, headers: dict[str, str], *, events: bool
    ) -> Reply:
        if router.is_open(message.id):
            return duplicate(message.id)
        replies = router.open_request(message.id)
        try:
            await session.submit(message)
        except SessionClosed:
            router.close_request(message.id)
            return _rpc_error(404, INVALID_REQUEST, "the session has ended", "session_not_found", message.id)
        except Overloaded as exc:
            router.close_request(message.id)
            return _rpc_error(
                429,
                TOO_MANY_IN_FLIGHT,
                str(exc),
                "too_many_requests_in_flight",
                message.id,
                headers={**headers, "Retry-After": "1"},
            )
        except DuplicateRequest:
            # Its twin's stream was closed, and the twin is still winding down.
            router.close_request(message.id)
            return duplicate(message.id)
        streaming = False
        try:
            if events:
                # An answer that comes before anything else and within _JSON_ANSWER_WINDOW (most do,
                # in milliseconds) is one JSON body, which the client accepts too: no chunked stream
                # to set up and end. A notification first, or a longer wait, commits to an event
                # stream, so the client and any proxy soon see the response start; so does the answer
                # to a cancelled request, which a client that has stopped waiting may not read
                # (the SDK's client tolerates that on a stream, not in a JSON body).
                try:
                    first = await next_or_keepalive(min(keepalive, _JSON_ANSWER_WINDOW), replies.receive)
                except trio.EndOfChannel:
                    pass  # the session ended
                else:
                    if first is not None and _is_response(first.message) and not _is_cancelled(first.message):
                        session.acknowledge([first])
                        return _json_message(first.message, headers=headers)
                    streaming = True
                    return event_stream_reply(request_events(session, router, message.id, replies, first), headers)
            else:
                # JSON only: wait for the response; notifications for the request have no wire here.
                async for item in replies:
                    session.acknowledge([item])
                    if _is_response(item.message):
                        return _json_message(item.message, headers=headers)
        finally:
            # Also reached when the client goes away (the disconnect cancels us).
            if not streaming:
                end_request(session, router, message.id, replies)
        return _rpc_error(
            404, INVALID_REQUEST, "the session ended before the request completed", "session_not_found", message.id
        )

    def duplicate(request_id: RequestId) -> Reply:
        return _rpc_error(400, INVALID_REQUEST, str(DuplicateRequest()), "duplicate_request_id", request_id)

    async def request_events(
        session: Session,
        router: _Router,
        request_id: RequestId,
        replies: trio.MemoryReceiveChannel[SessionMessage],
        item: SessionMessage | None,
    ) -> AsyncIterator[bytes]:
        """The request's stream, from `item` (None: nothing yet, so a keepalive) to its response."""
        try:
            while True:
                if item is None:
                    yield KEEPALIVE
                else:
                    try:
                        yield encode_events([item])
                    finally:
                        session.acknowledge([item])  # written, or never will be: either way its slot is free
                try:
                    item = await next_or_keepalive(keepalive, replies.receive)
                except trio.EndOfChannel:
                    return  # answered (the router closes the stream after the response) or session over
        finally:
            end_request(session, router, request_id, replies)

    def end_request(
        session: Session, router: _Router, request_id: RequestId, replies: trio.MemoryReceiveChannel[SessionMessage]
    ) -> None:
        """Close a request's stream: free what it still held, and stop the request if it is still running."""
        router.close_request(request_id)
        while True:
            try:
                session.acknowledge([replies.receive_nowait()])
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        # A no-op once answered; when the client closed the stream early, the request stops.
        session.cancel_request(request_id, "the client closed the request's response stream")

    async def open_standalone_stream(request: _Request) -> Reply:
        if not request.accepts()[1]:
            return _rpc_error(406, INVALID_REQUEST, "the GET stream is text/event-stream: accept it", "not_acceptable")
        found = find_session(request)
        if isinstance(found, Reply):
            return found
        session, router = found
        if router.standalone is not None:
            return _rpc_error(409, INVALID_REQUEST, "this session's GET stream is open already", "stream_open")
        send, receive = trio.open_memory_channel[SessionMessage](_STREAM_BUFFER)
        router.standalone = send

        async def events() -> AsyncIterator[bytes]:
            try:
                while True:
                    try:
                        item = await next_or_keepalive(keepalive, receive.receive)
                    except trio.EndOfChannel:
                        return  # the session ended
                    yield KEEPALIVE if item is None else encode_events([item])
            finally:
                # The session goes on: a client may open its GET stream again.
                if router.standalone is send:
                    router.standalone = None
                send.close()

        return event_stream_reply(events(), {SESSION_HEADER: session.id})

    def end_session(request: _Request) -> Reply:
        found = find_session(request)
        if isinstance(found, Reply):
            return found
        found[0].close("the client ended the session (DELETE)")
        return Reply(200)

    # -- 2026-07-28: stateless exchanges ----------------------------------------------------

    async def stateless_exchange(request: _Request) -> Reply:
        if request.method != "POST":
            return Reply(405, {"Allow": "POST"})
        wants_json, wants_events = request.accepts()
        if not wants_json:
            return _rpc_error(406, INVALID_REQUEST, "the client must accept application/json", "not_acceptable")
        try:
            body = await request.body(settings.http.max_body_bytes)
        except IntakeError as exc:
            return _rpc_error(413, INVALID_REQUEST, exc.message, exc.code)
        try:
            decoded: Any = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _rpc_error(400, PARSE_ERROR, f"the body is not valid JSON: {exc}", "invalid_json")
        if isinstance(decoded, dict) and "id" not in decoded:
            return acknowledge_notification(request, decoded)
        try:
            message = JSONRPCRequest.model_validate(decoded)
        except ValidationError:
            return _rpc_error(
                400,
                INVALID_REQUEST,
                "the body must be one JSON-RPC request or notification object",
                "invalid_jsonrpc",
            )
        duplicated = find_duplicated_routing_header(request.header_lines)
        if duplicated is not None:
            return ladder_rejection(HEADER_MISMATCH, f"{duplicated} header appears more than once", None, message.id)
        verdict = classify_inbound_request(decoded, headers=request.headers)
        if isinstance(verdict, InboundLadderRejection):
            return ladder_rejection(verdict.code, verdict.message, verdict.data, message.id)
        try:
            session = await registry.open_session("streamable-http-stateless", caller_of(request.scope), stateless=True)
        except RegistryFull as full:
            return too_many_sessions(full)
        streaming = False
        try:
            await session.submit(message)
            if not wants_events:
                while True:  # notifications have no wire in a JSON body: wait for the response
                    batch = await session.next_outbound()
                    session.acknowledge(batch)
                    response = next((item.message for item in batch if _is_response(item.message)), None)
                    if response is not None:
                        return exchange_answer(response)
            # A response before any notification is answered in JSON (errors then keep their HTTP
            # status); anything else, or a long wait, commits to an event stream.
            first = await next_or_keepalive(keepalive, session.next_outbound)
            if first is not None and len(first) == 1 and _is_response(first[0].message):
                session.acknowledge(first)
                return exchange_answer(first[0].message)
            streaming = True
            return event_stream_reply(exchange_events(session, first))
        except SessionClosed:
            return _rpc_error(503, INVALID_REQUEST, "the server is shutting down; retry", "shutting_down", message.id)
        finally:
            # Also reached when the client goes away (the disconnect cancels us): that ends the request.
            if not streaming:
                session.close("exchange ended")

    def exchange_answer(message: JSONRPCMessage) -> Reply:
        status = ERROR_CODE_HTTP_STATUS.get(message.error.code, 200) if isinstance(message, JSONRPCError) else 200
        return _json_message(message, status)

    async def exchange_events(session: Session, batch: list[SessionMessage] | None) -> AsyncIterator[bytes]:
        try:
            while True:
                if batch is None:
                    yield KEEPALIVE
                else:
                    try:
                        yield encode_events(batch)
                    finally:
                        session.acknowledge(batch)
                    if any(_is_response(item.message) for item in batch):
                        return
                batch = await next_or_keepalive(keepalive, session.next_outbound)
        except SessionClosed:
            return
        finally:
            # Closing the response stream is how a 2026 client cancels: this ends the request.
            session.close("exchange ended")

    def ladder_rejection(code: int, message: str, data: Any, request_id: RequestId | None) -> Reply:
        error = JSONRPCError(jsonrpc="2.0", id=request_id, error=ErrorData(code=code, message=message, data=data))
        return exchange_answer(error)

    def acknowledge_notification(request: _Request, decoded: dict[str, Any]) -> Reply:
        """The 2026 wire has no client notifications (a client cancels by closing the stream): accept, drop."""
        try:
            JSONRPCNotification.model_validate(decoded)
        except ValidationError:
            return _rpc_error(
                400, INVALID_REQUEST, "the body must be one JSON-RPC request or notification object", "invalid_jsonrpc"
            )
        rejection = unsupported_protocol_version_rejection(request.headers.get(MCP_PROTOCOL_VERSION_HEADER.lower(), ""))
        if rejection is not None:
            return ladder_rejection(rejection.code, rejection.message, rejection.data, None)
        return Reply(202)

    return endpoint
