"""Parse a client's message body into a JSON-RPC message, with errors a client can act on.

No I/O here, so every rejection rule is testable without sockets. Each
transport maps `IntakeError` to its own wire form (a 4xx JSON body on HTTP).
"""

from __future__ import annotations

from typing import Any

import orjson
from mcp_types import JSONRPCMessage, jsonrpc_message_adapter
from pydantic import ValidationError

from emcp.errors import ActionableError


class IntakeError(ActionableError):
    """A message the server will not take; `code` and `message` go back to the client."""


def parse_message(body: bytes) -> JSONRPCMessage:
    """One JSON-RPC 2.0 request, notification or response, or IntakeError saying why not."""
    if not body.strip():
        raise IntakeError("empty_body", "the body is empty; send one JSON-RPC 2.0 message as JSON")
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise IntakeError("invalid_json", f"the body is not valid JSON: {exc}") from None
    if isinstance(data, list):
        raise IntakeError("batch_not_supported", "JSON-RPC batches are not supported; send one message per request")
    if not isinstance(data, dict):
        raise IntakeError("invalid_jsonrpc", "the body must be a JSON object (one JSON-RPC 2.0 message)")
    if data.get("jsonrpc") != "2.0":
        raise IntakeError("invalid_jsonrpc", 'not a JSON-RPC 2.0 message: "jsonrpc" must be "2.0"')
    if "id" in data and (isinstance(data["id"], bool) or not isinstance(data["id"], str | int | None)):
        raise IntakeError("invalid_jsonrpc", 'not a JSON-RPC 2.0 message: "id" must be a string or a number')
    try:
        return jsonrpc_message_adapter.validate_python(data, by_name=False)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'message'}: {err['msg']}" for err in exc.errors()[:3]
        )
        raise IntakeError("invalid_jsonrpc", f"not a valid JSON-RPC 2.0 message ({problems})") from None
