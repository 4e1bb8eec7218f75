"""One MCP session: a nursery that owns the SDK's dispatcher and every task it starts.

The transport feeds client messages in with `submit()` and drains server
messages with `next_outbound()` / `acknowledge()`. A request holds one of the
session's in-flight slots from admission until its response has been handed
to the socket (or it settled unanswered), so a client that stops reading can
pin at most `max_in_flight` results in memory. Closing the session cancels its
scope: the dispatcher, the request tasks and, through them, the source
queries stop, and the channels close so the transport's stream ends.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
import trio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from mcp.shared.dispatcher import coerce_request_id
from mcp.shared.message import ServerMessageMetadata, SessionMessage
from mcp_types import (
    JSONRPCError,
    JSONRPCMessage,
    JSONRPCNotification,
    JSONRPCRequest,
    JSONRPCResponse,
    RequestId,
)

from emcp.auth.caller import ANONYMOUS, Caller
from emcp.settings import SessionSettings

if TYPE_CHECKING:
    from collections.abc import Iterator

logger = logging.getLogger(__name__)

# Hex digits of a session id that logs show.
LOGGED_ID_LENGTH = 8

# How many ready server messages one outbound batch may coalesce into a single write.
_MAX_BATCH = 64

ServeMcp = Callable[[MemoryObjectReceiveStream[Any], MemoryObjectSendStream[SessionMessage]], Awaitable[None]]


class SessionClosed(Exception):
    """The session ended; the client must open a new one."""


class Overloaded(Exception):
    """No in-flight slot freed up within the admission timeout. Its text is what the client is told."""

    def __init__(self, max_in_flight: int) -> None:
        super().__init__(
            f"the session has {max_in_flight} requests in flight; read their responses before sending more"
        )


class DuplicateRequest(Exception):
    """A request id that is still in flight was sent again. Its text is what the client is told."""

    def __init__(self) -> None:
        super().__init__("a request with this id is still in flight; use a new id")


@dataclass(frozen=True, slots=True)
class SessionStatistics:
    session_id: str
    transport: str
    requests_in_flight: int
    requests_total: int
    queries_running: int
    cancellations: int
    overloaded: int
    closed: bool


class Session:
    """A client's session. Created by the registry, which runs `run()` in its nursery."""

    def __init__(
        self,
        session_id: str,
        transport: str,
        settings: SessionSettings,
        on_change: Callable[[], None],
        *,
        caller: Caller = ANONYMOUS,
        owner: str | None = None,
        results_nursery: trio.Nursery | None = None,
    ):
        self.id = session_id
        self.transport = transport
        #: Who opened the session: only they may use it, and only the tools they may use.
        self.caller = caller
        #: Who owns the large results this session's calls make: the session itself, or, for a
        #: stateless request that lives one exchange, its caller (results outlive the exchange).
        self.owner = owner or session_id
        self._results_nursery = results_nursery
        #: Told the id of each request that settled without a response (cancelled), for a
        #: transport whose wire must still end that request's stream.
        self.on_unanswered: Callable[[RequestId], None] | None = None
        self._settings = settings
        self._on_change = on_change
        self._slots = trio.Semaphore(settings.max_in_flight)
        self._in_flight: set[RequestId] = set()
        self._inbound_send, self._inbound_recv = anyio.create_memory_object_stream[SessionMessage | Exception](0)
        self._outbound_send, self._outbound_recv = anyio.create_memory_object_stream[SessionMessage](0)
        self._scope = trio.CancelScope()
        # A separate scope for the idle deadline, so its expiry is told apart from close().
        self._idle = trio.CancelScope()
        self.closed = trio.Event()
        self.close_reason = ""
        self.requests_total = 0
        self.queries_running = 0
        self.cancellations = 0
        # Requests refused with Overloaded: no in-flight slot within the admission timeout.
        self.overloaded = 0
        self._touch()

    @property
    def log_id(self) -> str:
        """The id as logs show it: a prefix, enough to correlate lines; the whole id is a capability."""
        return self.id[:LOGGED_ID_LENGTH]

    # -- lifecycle -----------------------------------------------------------

    async def run(self, serve_mcp: ServeMcp, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until closed. Never raises: a failing session must not take the registry down."""
        try:
            with self._scope, self._idle:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    self.results_nursery = self._results_nursery or nursery
                    task_status.started()
                    # The dispatcher runs in this task, in the nursery's body: one task fewer per
                    # session than a child of its own, and ending it still cancels the children.
                    try:
                        await serve_mcp(self._inbound_recv, self._outbound_send)
                    except Exception:
                        logger.exception("session %s: MCP dispatcher failed", self.log_id)
                    self.close("dispatcher ended")
        finally:
            self._finish()

    def close(self, reason: str) -> None:
        """Cancel everything the session owns. Sync and idempotent.

        The channels close first: the SDK answers cancelled requests with a
        shielded write that would otherwise wait (up to a second) for a reader
        that is gone.
        """
        if not self.close_reason:
            self.close_reason = "idle timeout" if self._idle.cancel_called else reason
        self._outbound_recv.close()
        self._inbound_send.close()
        self._scope.cancel()

    def _finish(self) -> None:
        self.close("session ended")
        self.cancellations += len(self._in_flight)
        self._in_flight.clear()
        for stream in (self._inbound_send, self._inbound_recv, self._outbound_send, self._outbound_recv):
            stream.close()
        self.closed.set()
        self._on_change()

    def _touch(self) -> None:
        """Push the idle deadline out; a session with work in flight never idles out."""
        if self._in_flight or not self._settings.idle_timeout:
            self._idle.deadline = math.inf
        else:
            self._idle.deadline = trio.current_time() + self._settings.idle_timeout

    # -- inbound ---------------------------------------------------------------

    async def submit(self, message: JSONRPCMessage) -> None:
        """Hand one client message to the dispatcher.

        Requests wait (up to the admission timeout) for an in-flight slot, so a
        client that floods a session is slowed down, not buffered without bound.
        """
        if self.closed.is_set():
            raise SessionClosed
        metadata = None
        key: RequestId | None = None
        if isinstance(message, JSONRPCRequest):
            key = coerce_request_id(message.id)
            if key in self._in_flight:
                raise DuplicateRequest
            acquired = False
            with trio.move_on_after(self._settings.admission_timeout):
                await self._slots.acquire()
                acquired = True
            if not acquired:
                if self.closed.is_set():
                    raise SessionClosed
                self.overloaded += 1
                raise Overloaded(self._settings.max_in_flight)
            if self.closed.is_set() or key in self._in_flight:
                # Closed, or a twin of this id was admitted while we waited.
                self._slots.release()
                raise SessionClosed if self.closed.is_set() else DuplicateRequest
            self._in_flight.add(key)
            self.requests_total += 1
            metadata = ServerMessageMetadata(request_context=self, on_request_unanswered=partial(self._unanswered, key))
        self._touch()
        try:
            await self._inbound_send.send(SessionMessage(message, metadata=metadata))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise SessionClosed from None
        self._on_change()

    def cancel_request(self, request_id: RequestId, reason: str) -> None:
        """Cancel an admitted request as the client's `notifications/cancelled` would.

        Sync, so a transport can call it from the `finally` of a cancelled
        response (the client went away): the notification is submitted from a
        task of the session's own.
        """
        if self.closed.is_set() or coerce_request_id(request_id) not in self._in_flight:
            return
        cancel = JSONRPCNotification(
            jsonrpc="2.0", method="notifications/cancelled", params={"requestId": request_id, "reason": reason}
        )
        self.nursery.start_soon(self._submit_quietly, cancel)

    async def _submit_quietly(self, message: JSONRPCMessage) -> None:
        with suppress(SessionClosed):  # ending anyway: the session's close cancels the request
            await self.submit(message)

    async def _unanswered(self, key: RequestId) -> None:
        """The dispatcher settled a request with no response (the peer cancelled it)."""
        self.cancellations += 1
        self._release(key)
        if self.on_unanswered is not None:
            self.on_unanswered(key)

    def _release(self, key: RequestId) -> None:
        if key in self._in_flight:
            self._in_flight.discard(key)
            self._slots.release()
            self._touch()
            self._on_change()

    # -- outbound --------------------------------------------------------------

    async def next_outbound(self) -> list[SessionMessage]:
        """Wait for server messages; return every one already queued, for one coalesced write.

        Raises SessionClosed once the session has ended and nothing is left.
        """
        try:
            batch = [await self._outbound_recv.receive()]
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise SessionClosed from None
        try:
            while len(batch) < _MAX_BATCH:
                batch.append(self._outbound_recv.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            pass
        return batch

    def acknowledge(self, batch: list[SessionMessage]) -> None:
        """The transport has written `batch` to the socket: free the slots of the responses in it."""
        for item in batch:
            message = item.message
            if isinstance(message, JSONRPCResponse | JSONRPCError) and message.id is not None:
                self._release(coerce_request_id(message.id))

    # -- accounting ------------------------------------------------------------

    @contextmanager
    def track_query(self) -> Iterator[None]:
        """Count a source query as this session's while it runs."""
        self.queries_running += 1
        self._on_change()
        try:
            yield
        finally:
            self.queries_running -= 1
            self._on_change()

    def statistics(self) -> SessionStatistics:
        return SessionStatistics(
            session_id=self.id,
            transport=self.transport,
            requests_in_flight=len(self._in_flight),
            requests_total=self.requests_total,
            queries_running=self.queries_running,
            cancellations=self.cancellations,
            overloaded=self.overloaded,
            closed=self.closed.is_set(),
        )
