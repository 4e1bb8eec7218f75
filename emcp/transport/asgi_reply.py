"""Responses written straight to ASGI, by the transport endpoints served below Quart.

Those endpoints (every tool call goes through one) skip Quart's request and
response machinery, which costs about as much as a call's own work. A handler
builds a `Reply`, one body or an event stream, and `send_reply` writes it; a
client that disconnects meanwhile cancels what it was waiting for through
`cancel_on_disconnect`, as Quart would have.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable

from emcp.transport.event_stream import HEADERS as EVENT_STREAM_HEADERS

__all__ = ["Reply", "cancel_on_disconnect", "event_stream_reply", "json_reply", "send_reply"]


@dataclass
class Reply:
    """A whole HTTP response: one body, or an event stream written as it is produced."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    events: AsyncIterator[bytes] | None = None


def json_reply(status: int, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status, {"content-type": "application/json", **(headers or {})}, body)


def event_stream_reply(events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Reply:
    return Reply(200, {"content-type": "text/event-stream", **EVENT_STREAM_HEADERS, **(headers or {})}, events=events)


async def send_reply(send: ASGISendCallable, reply: Reply) -> None:
    fields = dict(reply.headers)
    if reply.events is None:
        fields["content-length"] = str(len(reply.body))
    headers = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in fields.items()]
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})  # type: ignore[typeddict-item]
    if reply.events is not None:
        async with aclosing(reply.events) as events:  # its finally runs here, even when cancelled
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": reply.body, "more_body": False})


async def cancel_on_disconnect(receive: ASGIReceiveCallable, scope: trio.CancelScope) -> None:
    """Cancel `scope` when the client goes away: what it was waiting for must not outlive it.

    Reads the ASGI receive channel, so only once the request's body has been read."""
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
