"""Reading a POSTed message body within the size limit, for both HTTP transports (served as ASGI)."""

from __future__ import annotations

from hypercorn.typing import ASGIReceiveCallable, Scope

from emcp.transport.intake import IntakeError


class ClientGone(Exception):
    """The client disconnected before its body was read: there is nobody to answer."""


def _too_large(max_bytes: int) -> IntakeError:
    return IntakeError("body_too_large", f"the body is over the {max_bytes}-byte limit")


async def receive_body(scope: Scope, receive: ASGIReceiveCallable, max_bytes: int) -> bytes:
    """The request body; IntakeError `body_too_large` as soon as the declared or received length
    passes `max_bytes` (nothing more is buffered); ClientGone on a disconnect."""
    for name, value in scope["headers"]:
        if name.lower() == b"content-length" and value.isdigit() and int(value) > max_bytes:
            raise _too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_bytes:
            raise _too_large(max_bytes)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
