"""Prometheus metrics, one registry per server.

Two kinds of figures, fed two ways. What happens on the request path (requests
by outcome, their latency, source errors, refusals that leave no other trace)
is counted as it happens. What the server's long-lived objects already count
(sessions, requests in flight, cancellations, block streams, source queries,
the registry's and the result store's own refusals) is read from their
`statistics()` when Prometheus scrapes, so no figure is kept twice and none
can drift from what `node_status` reports.

The registry is the server's own, never prometheus-client's global one: a
process may run several servers (tests do), and each must count only itself.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from enum import StrEnum

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from emcp.blocks.stream import ResultStore
from emcp.nursery import SessionRegistry
from emcp.sources.base import Source

#: The `Content-Type` of `Metrics.exposition()`: Prometheus' text format.
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Seconds: from a cached catalogue answer (milliseconds) to a call stopped at query.timeout (300 s).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)


class Limit(StrEnum):
    """The limits whose refusals `emcp_rejections_total` counts, by its `limit` label."""

    #: A session's requests in flight (`sessions.max_in_flight`): HTTP 429, JSON-RPC -32000 elsewhere.
    IN_FLIGHT = "in_flight"
    #: The session registry is full or draining (`sessions.max_sessions`): HTTP 503.
    SESSIONS = "sessions"
    #: A request body over `http.max_body_bytes`: HTTP 413.
    BODY_SIZE = "body_size"
    #: A tool call stopped at its timeout (`query.timeout`, or what it asked for in `_meta`).
    REQUEST_TIMEOUT = "request_timeout"
    #: No room for another block stream (`blocks.max_per_session`, `blocks.max_streams`): the result is truncated.
    RESULT_STREAMS = "result_streams"
    #: A tool call over its caller's rate (`query.calls_per_second`): JSON-RPC -32029.
    RATE = "rate"


class Metrics:
    """One server's metrics: the request-path counters, and `exposition()` for `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "emcp_requests",
            "MCP requests settled, by method, tool (tools/call only) and outcome: ok; error (a JSON-RPC error, "
            "code = its code); tool_error (an isError tool result, code = emcp's error code); cancelled.",
            ["method", "tool", "outcome", "code"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "emcp_request_duration_seconds",
            "Time from a request reaching the MCP dispatcher to its result, by method and tool.",
            ["method", "tool"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.source_errors = Counter(
            "emcp_source_errors",
            "Errors the data source raised, by their code (node_unreachable, timeout, unknown_table, ...).",
            ["code"],
            registry=self.registry,
        )
        # Refusals that no long-lived object counts; the others are read at scrape time.
        self._rejections: Tally[Limit] = Tally()

    def rejected(self, limit: Limit) -> None:
        """Count one refusal by `limit`. Sync and cheap: call it where the refusal is decided."""
        self._rejections[limit] += 1

    def source_error(self, code: str) -> None:
        self.source_errors.labels(code).inc()

    def observe_server(self, sessions: SessionRegistry, results: ResultStore, source: Source) -> None:
        """Report these objects' statistics at every scrape, from then on."""
        self.registry.register(_ServerState(sessions, results, source, self._rejections))

    def exposition(self) -> bytes:
        """Every metric in Prometheus' text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)


class _ServerState:
    """A prometheus-client collector that turns the server's `statistics()` into metrics when scraped."""

    def __init__(self, sessions: SessionRegistry, results: ResultStore, source: Source, rejections: Tally[Limit]):
        self._sessions = sessions
        self._results = results
        self._source = source
        self._rejections = rejections

    def describe(self) -> Iterable[Metric]:
        """The families without samples: how the registry learns their names without scraping."""
        return list(_families())

    def collect(self) -> Iterable[Metric]:
        registry = self._sessions.statistics()
        results = self._results.statistics()
        queries = self._source.statistics()
        open_by_transport = Tally(s.transport for s in self._sessions.sessions() if not s.closed.is_set())
        rejections = self._rejections + Tally(
            {
                Limit.SESSIONS: registry.sessions_rejected,
                Limit.IN_FLIGHT: registry.requests_overloaded,
                Limit.RESULT_STREAMS: results["result_streams_rejected"],
            }
        )
        families = {family.name: family for family in _families()}
        for transport, count in sorted(open_by_transport.items()):
            families["emcp_sessions"].add_metric([transport], count)
        families["emcp_sessions_opened"].add_metric([], registry.sessions_opened)
        families["emcp_requests_in_flight"].add_metric([], registry.requests_in_flight)
        families["emcp_cancellations"].add_metric([], registry.cancellations)
        for limit in Limit:
            families["emcp_rejections"].add_metric([limit.value], rejections[limit])
        families["emcp_block_streams_open"].add_metric([], results["result_streams_open"])
        families["emcp_block_streams_opened"].add_metric([], results["result_streams_opened"])
        families["emcp_block_bytes"].add_metric([], results["result_bytes_streamed"])
        families["emcp_source_queries_running"].add_metric([], queries.running)
        for outcome in ("completed", "failed", "interrupted"):
            families["emcp_source_queries"].add_metric([outcome], getattr(queries, outcome))
        return families.values()


def _families() -> Iterator[Metric]:
    """The scrape-time metrics, empty: `_ServerState` fills them from the statistics."""
    yield GaugeMetricFamily("emcp_sessions", "Open MCP sessions, by transport.", labels=["transport"])
    yield CounterMetricFamily("emcp_sessions_opened", "MCP sessions opened since the server started.")
    yield GaugeMetricFamily(
        "emcp_requests_in_flight", "Requests admitted whose response has not yet been written to the client."
    )
    yield CounterMetricFamily(
        "emcp_cancellations", "Requests that settled without a response: cancelled by the client or by a disconnect."
    )
    yield CounterMetricFamily(
        "emcp_rejections",
        "Requests, sessions and results refused by a limit: in_flight, sessions, body_size, request_timeout, "
        "result_streams, rate.",
        labels=["limit"],
    )
    yield GaugeMetricFamily("emcp_block_streams_open", "Large results streaming as blocks now.")
    yield CounterMetricFamily("emcp_block_streams_opened", "Large results that have streamed as blocks.")
    yield CounterMetricFamily("emcp_block_bytes", "Bytes of encoded blocks produced by result streams.")
    yield GaugeMetricFamily("emcp_source_queries_running", "Statements the data source is running now.")
    yield CounterMetricFamily(
        "emcp_source_queries",
        "Statements the data source ran, by how they ended: completed, failed, interrupted (by a cancel).",
        labels=["outcome"],
    )
