"""The quart-trio application: every HTTP route of every transport, on one port."""

from __future__ import annotations

import logging

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from emcp.blocks.download import add_download_route
from emcp.blocks.stream import ResultStore
from emcp.nursery import SessionRegistry
from emcp.settings import Settings
from emcp.transport.http_errors import http_exception_to_json, json_error
from emcp.transport.sse import add_sse_routes
from emcp.transport.websocket import add_websocket_route

logger = logging.getLogger(__name__)


def create_app(registry: SessionRegistry, results: ResultStore, settings: Settings) -> QuartTrio:
    app = QuartTrio("emcp")
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    app.register_error_handler(HTTPException, http_exception_to_json)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error in a request handler", exc_info=exc)
        return json_error(500, "internal_error", "the server failed to handle this request; it has been logged")

    add_sse_routes(app, registry, settings)
    add_websocket_route(app, registry, settings)
    add_download_route(app, results)
    return app
