"""Reading a POSTed message body within the size limit, for both HTTP transports."""

from __future__ import annotations

from quart import request
from werkzeug.exceptions import RequestEntityTooLarge

from emcp.transport.intake import IntakeError


async def read_body(max_bytes: int) -> bytes:
    """The request body, or IntakeError `body_too_large` before more than `max_bytes` is buffered."""
    too_large = IntakeError("body_too_large", f"the body is over the {max_bytes}-byte limit")
    if request.content_length is not None and request.content_length > max_bytes:
        raise too_large
    request.max_content_length = max_bytes
    try:
        return await request.get_data(cache=False)
    except RequestEntityTooLarge:
        raise too_large from None
