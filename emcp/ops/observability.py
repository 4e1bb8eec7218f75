"""One server's observability: its metrics, and where they are fed from.

`open_core` builds one per server and wires it in three steps, in the order
the server comes up: the source (its errors counted by code), the SDK server
(every request timed and logged), then the session registry and result store
(their statistics reported at every scrape). The app's ops routes read it, and
so may any limit of the server's own: `ops.metrics.rejected(Limit.X)`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mcp.server.lowlevel import Server

from emcp.blocks.stream import ResultStore
from emcp.nursery import SessionRegistry
from emcp.ops.metrics import Metrics
from emcp.ops.requests import RequestObserver
from emcp.ops.source_errors import count_source_errors
from emcp.settings import Settings
from emcp.sources.base import Source


class Observability:
    """What one server's metrics, request observer and ops routes share."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics()
        #: The source as served (errors counted); `/readyz` asks it. Set by `observe_source`.
        self.source: Source

    def observe_source(self, source: Source) -> Source:
        """The source to serve from: `source`, its errors counted by code."""
        self.source = count_source_errors(source, self.metrics.source_error)
        return self.source

    def observe_requests(self, server: Server[Any], tools: Iterable[str]) -> None:
        """Time, count and log every request `server` dispatches; `tools` are the names worth a label."""
        # Outermost in the chain: it sees what every other middleware does, and the time they take.
        server.middleware.insert(0, RequestObserver(server, self.metrics, self.settings, tools))

    def observe_server(self, sessions: SessionRegistry, results: ResultStore) -> None:
        """Report sessions, requests in flight, cancellations, block streams and source queries at each scrape."""
        self.metrics.observe_server(sessions, results, self.source)
