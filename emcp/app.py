"""The quart-trio application: every HTTP route of every transport, on one port."""

from __future__ import annotations

import logging

import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from emcp.auth import AuthGuard, TokenBook
from emcp.auth.oauth import JwtVerifier
from emcp.blocks.download import add_download_route
from emcp.blocks.stream import ResultStore
from emcp.nursery import SessionRegistry
from emcp.ops import Observability, add_ops_routes
from emcp.settings import Settings
from emcp.transport.host_guard import HostGuard
from emcp.transport.http_errors import http_exception_to_json, json_error
from emcp.transport.sse import SseEndpoint
from emcp.transport.streamable_http import streamable_http_endpoint
from emcp.transport.websocket import websocket_endpoint

logger = logging.getLogger(__name__)


# How long the last write of a response may take once shielded (see _FinishResponses).
LAST_SEND_GRACE = 5.0


class _FinishResponses:
    """ASGI middleware: the last body message of a response is sent shielded, for a bounded time.

    With hypercorn's trio worker under quart-trio, the connection close that a
    `Connection: close` request asks for runs inside that last send; the
    request's disconnect cancels quart-trio's nursery meanwhile, the close is
    cancelled half way and the socket stays open until the client gives up.
    Shielding only the final message (never a streaming one, whose sends must
    stay cancellable) lets the close complete.
    """

    def __init__(self, app: ASGIFramework) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_finishing(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                with trio.CancelScope(shield=True, deadline=trio.current_time() + LAST_SEND_GRACE):
                    await send(message)
            else:
                await send(message)

        await self.app(scope, receive, send_finishing)


def create_app(
    registry: SessionRegistry,
    results: ResultStore,
    settings: Settings,
    tokens: TokenBook,
    jwt: JwtVerifier | None,
    ops: Observability,
) -> QuartTrio:
    """Every route, behind the Host/Origin check and, when tokens or a JWT issuer are set, the bearer check."""
    app = QuartTrio("emcp")
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    app.register_error_handler(HTTPException, http_exception_to_json)

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        logger.exception("unhandled error in a request handler", exc_info=exc)
        return json_error(500, "internal_error", "the server failed to handle this request; it has been logged")

    # The endpoints every tool call goes through are served below Quart (see their docstrings).
    served: ASGIFramework = websocket_endpoint(
        streamable_http_endpoint(SseEndpoint(app.asgi_app, registry, settings), registry, settings), registry
    )
    inner: ASGIFramework = _FinishResponses(served)
    if tokens or jwt is not None:
        inner = AuthGuard(inner, tokens, jwt)
    app.asgi_app = HostGuard(inner, settings.http)
    add_download_route(app, results)
    add_ops_routes(app, ops)
    return app
