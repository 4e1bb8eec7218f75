"""Intake for the transports that carry one JSON-RPC message per frame or line (WebSocket, stdio).

On HTTP a message the server cannot take gets a 4xx with a JSON body; on a
connection that carries messages back to back there is no status to set, so
the answer is a JSON-RPC error message on the same connection, and the
connection goes on. Both transports take messages through `take`, so they
refuse the same things with the same codes.
"""

from __future__ import annotations

import orjson
from mcp_types import JSONRPCRequest, RequestId

from emcp.nursery import DuplicateRequest, Overloaded, Session
from emcp.transport.intake import IntakeError, parse_message

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
# JSON-RPC leaves -32000 ... -32099 to servers: this one means "no in-flight slot; retry later".
TOO_MANY_IN_FLIGHT = -32000

# Intake rejections that mean "not JSON at all" rather than "JSON, but not a JSON-RPC message".
_PARSE_FAILURES = frozenset({"invalid_json", "empty_body", "binary_frame"})


def error_message(request_id: RequestId | None, code: int, message: str, reason: str) -> bytes:
    """A JSON-RPC error response; `data.reason` is emcp's machine-readable code, as in HTTP error bodies."""
    error = {"code": code, "message": message, "data": {"reason": reason}}
    return orjson.dumps({"jsonrpc": "2.0", "id": request_id, "error": error})


def refusal(reason: str, message: str) -> bytes:
    """The error for input that is not one JSON-RPC message (no id can be known)."""
    return error_message(None, PARSE_ERROR if reason in _PARSE_FAILURES else INVALID_REQUEST, message, reason)


async def take(session: Session, data: bytes) -> bytes | None:
    """Hand one frame to the session; return the error message to send back, or None.

    `session.submit` may wait for an in-flight slot; meanwhile the caller reads
    no further input, which is the backpressure a flooding client feels.
    `SessionClosed` propagates: the connection is over.
    """
    try:
        message = parse_message(data)
    except IntakeError as exc:
        return refusal(exc.code, exc.message)
    request_id = message.id if isinstance(message, JSONRPCRequest) else None
    try:
        await session.submit(message)
    except DuplicateRequest as exc:
        return error_message(request_id, INVALID_REQUEST, str(exc), "duplicate_request_id")
    except Overloaded as exc:
        return error_message(request_id, TOO_MANY_IN_FLIGHT, str(exc), "too_many_requests_in_flight")
    return None
