"""JSON error bodies for every HTTP error, so clients never have to parse an HTML page."""

from __future__ import annotations

import orjson
from quart import Response
from werkzeug.exceptions import HTTPException


def json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    body = orjson.dumps({"error": {"code": code, "message": message}})
    return Response(body, status=status, content_type="application/json", headers=headers)


def http_exception_to_json(exc: HTTPException) -> Response:
    """Quart raises these for unknown routes, wrong methods, oversize bodies..."""
    code = (exc.name or "error").lower().replace(" ", "_")
    status = exc.code or 500
    headers = {"Allow": ", ".join(exc.valid_methods)} if getattr(exc, "valid_methods", None) else None
    return json_error(status, code, exc.description or exc.name or "error", headers)
