"""Server-sent events as both HTTP transports write them: framing, keepalive, headers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import trio
from mcp.shared.message import SessionMessage
from quart import Response

KEEPALIVE = b": keepalive\n\n"
# no-transform and X-Accel-Buffering keep proxies from buffering or rewriting the stream.
HEADERS = {"Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"}


T = TypeVar("T")


async def next_or_keepalive(interval: float, receive: Callable[[], Awaitable[T]]) -> T | None:
    """What `receive` gives, or None when `interval` passes first: the moment for a keepalive comment."""
    with trio.move_on_after(interval):
        return await receive()
    return None


def encode_events(batch: list[SessionMessage]) -> bytes:
    """`event: message` frames for a batch, joined for a single write.

    Pydantic's JSON is compact (no raw newlines), so each message is one `data:` line.
    """
    return b"".join(
        b"event: message\ndata: " + item.message.model_dump_json(by_alias=True, exclude_unset=True).encode() + b"\n\n"
        for item in batch
    )


def event_stream_response(events: AsyncIterator[bytes], headers: dict[str, str] | None = None) -> Response:
    response = Response(events, content_type="text/event-stream", headers={**HEADERS, **(headers or {})})
    response.timeout = None  # Quart's RESPONSE_TIMEOUT would cut the stream at 60 s
    return response
