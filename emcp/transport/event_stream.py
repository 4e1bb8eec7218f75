"""Server-sent events as both HTTP transports write them: framing, keepalive, headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

import trio
from mcp.shared.message import SessionMessage

from emcp.transport.outbound import message_json

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

    Each message is one `data:` line: its JSON holds no raw newline.
    """
    return b"".join(b"event: message\ndata: " + message_json(item.message) + b"\n\n" for item in batch)
