"""The operations endpoints: `/metrics`, `/healthz`, `/readyz`; and the count of bodies refused as too large.

They sit on the same port as MCP. Authentication is not theirs to decide: the
app's auth middleware guards `/metrics` like every route, and leaves the two
probes open (they reveal nothing, and orchestrators call them without
credentials).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
import trio
from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, ASGISendEvent, Scope
from quart import Quart, Response

from emcp.ops.health import check_ready, unanswered
from emcp.ops.metrics import CONTENT_TYPE, Limit, Metrics
from emcp.transport.http_errors import json_error

# The probes: open to anyone, whatever Host, Origin or credentials (they reveal nothing).
HEALTHZ = "/healthz"
READYZ = "/readyz"
PROBE_PATHS = frozenset({HEALTHZ, READYZ})

if TYPE_CHECKING:
    from emcp.ops.observability import Observability


def add_ops_routes(app: Quart, ops: Observability) -> None:
    app.asgi_app = _CountBodyRefusals(app.asgi_app, ops.metrics)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(ops.metrics.exposition(), content_type=CONTENT_TYPE)

    @app.get(HEALTHZ)
    async def healthz() -> Response:
        """Alive: this process answers HTTP. Nothing else is checked (a restart would not fix the source)."""
        return Response(orjson.dumps({"status": "ok"}), content_type="application/json")

    @app.get(READYZ)
    async def readyz() -> Response:
        timeout = ops.settings.http.ready_timeout
        readiness = unanswered(ops.source, timeout)
        with trio.move_on_after(timeout):
            readiness = await check_ready(ops.source)
        if not readiness.ready:
            return json_error(503, "not_ready", readiness.reason)
        return Response(orjson.dumps({"status": "ready"}), content_type="application/json")


class _CountBodyRefusals:
    """ASGI middleware: count every 413 response, whichever layer refused the body.

    The transports and Quart each refuse an oversized body on their own; the
    status of the response is the one thing they all share.
    """

    def __init__(self, app: ASGIFramework, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: ASGISendEvent) -> None:
            if message["type"] == "http.response.start" and message["status"] == 413:
                self.metrics.rejected(Limit.BODY_SIZE)
            await send(message)

        await self.app(scope, receive, counting_send)
