"""JSON error bodies for every HTTP error, so clients never have to parse an HTML page."""

from __future__ import annotations

import orjson
from hypercorn.typing import ASGISendCallable, Scope
from quart import Response
from werkzeug.exceptions import HTTPException


def _error(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps(_error(code, message))
    return Response(body, status=status, content_type="application/json", headers=headers)


async def send_json_error(
    scope: Scope, send: ASGISendCallable, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> None:
    """The same error from ASGI middleware, before any route; on a WebSocket upgrade, as its HTTP refusal."""
    await send_json(scope, send, status, _error(code, message), headers)


async def send_json(
    scope: Scope, send: ASGISendCallable, status: int, document: object, headers: dict[str, str] | None = None
) -> None:
    """A whole JSON response from ASGI middleware, which answers before any Quart route could."""
    body = orjson.dumps(document)
    prefix = "websocket.http" if scope["type"] == "websocket" else "http"
    fields = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}
    start = {
        "type": f"{prefix}.response.start",
        "status": status,
        "headers": [(name.encode(), value.encode()) for name, value in fields.items()],
    }
    await send(start)  # type: ignore[arg-type]
    await send({"type": f"{prefix}.response.body", "body": body})  # type: ignore[arg-type,misc]


def http_exception_to_json(exc: HTTPException) -> Response:
    """Quart raises these for unknown routes, wrong methods, oversize bodies..."""
    code = (exc.name or "error").lower().replace(" ", "_")
    status = exc.code or 500
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
    return json_error(status, code, exc.description or exc.name or "error", headers)
