"""Operations: Prometheus metrics, health and readiness probes, structured request logs."""

from emcp.ops.metrics import Limit, Metrics
from emcp.ops.observability import Observability
from emcp.ops.routes import add_ops_routes

__all__ = ["Limit", "Metrics", "Observability", "add_ops_routes"]
