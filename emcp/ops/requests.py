"""Every MCP request observed once, where the SDK dispatches it: its metrics and its log line.

`RequestObserver` is a `Server.middleware` of the SDK: the chain wraps the
handshake, params validation, the handler and the shaping of its result, so
one place sees every request's method, tool, duration and outcome, and no
handler has to remember to count itself. Outcomes:

- `ok`;
- `error`: a JSON-RPC error, `code` its code (unknown tool, bad params, a block that is gone...);
- `tool_error`: an `isError` tool result, `code` the error code emcp puts in its text
  (`Error (code): ...`: `sql_rejected`, `timeout`, `node_unreachable`...);
- `cancelled`: the client cancelled it, disconnected, or the session ended first.

Labels stay bounded whatever a client sends: a method the server does not
serve counts as `other`, and so does a tool name it does not know. The log
line carries the tool's name, never its arguments: SQL text only with
`logging.sql`, because values in a WHERE clause are data.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR, INVALID_PARAMS
from pydantic import ValidationError

from emcp.dispatch import RATE_LIMITED, call_timeout
from emcp.nursery import Session
from emcp.ops.logs import FIELDS
from emcp.ops.metrics import Limit, Metrics
from emcp.settings import Settings
from emcp.sources.base import is_cancellation

logger = logging.getLogger("emcp.requests")

# How emcp's tool errors begin (emcp/tools/toolset.py): the code a program can match.
_TOOL_ERROR = re.compile(r"Error \(([a-z0-9_]{1,40})\):")


class Outcome(StrEnum):
    """How a request ended: the `outcome` label and log field (see the module docstring)."""

    OK = "ok"
    ERROR = "error"
    TOOL_ERROR = "tool_error"
    CANCELLED = "cancelled"


class RequestObserver:
    """The SDK middleware: counts, times and logs each request once it has settled, however it did."""

    def __init__(self, server: Server[Any], metrics: Metrics, settings: Settings, tools: Iterable[str]) -> None:
        self._server = server
        self._metrics = metrics
        self._tools = frozenset(tools)
        self._query = settings.query
        self._log_sql = settings.logging.sql

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.request_id is None:  # a notification: nothing answers it, nothing to time
            return await call_next(ctx)
        started = time.perf_counter()
        outcome, code, result = Outcome.ERROR, str(INTERNAL_ERROR), None
        try:
            result = await call_next(ctx)
            outcome, code = _outcome_of(ctx.method, result)
            return result
        except MCPError as exc:
            code = str(exc.error.code)
            raise
        except ValidationError:  # the SDK answers it as invalid params
            code = str(INVALID_PARAMS)
            raise
        except BaseException as exc:
            if is_cancellation(exc):
                outcome, code = Outcome.CANCELLED, ""
            raise
        finally:
            self._settled(ctx, outcome, code, time.perf_counter() - started, result)

    def _settled(
        self, ctx: ServerRequestContext[Any, Any], outcome: Outcome, code: str, seconds: float, result: HandlerResult
    ) -> None:
        served = ctx.method == "initialize" or self._server.get_request_handler(ctx.method) is not None
        method = ctx.method if served else "other"
        params = ctx.params or {}
        tool = ""
        if method == "tools/call":
            name = params.get("name")
            tool = name if isinstance(name, str) and name in self._tools else "other"
        self._metrics.requests.labels(method, tool, outcome, code).inc()
        self._metrics.request_duration.labels(method, tool).observe(seconds)
        if outcome is Outcome.ERROR and code == str(RATE_LIMITED):
            self._metrics.rejected(Limit.RATE)
        elif outcome is Outcome.TOOL_ERROR and code == "timeout" and 0 < call_timeout(ctx.meta, self._query) <= seconds:
            # The call's own deadline fired. A source's `timeout` (an EdgeLake node past
            # edgelake.timeout) comes before it; its `_meta` timeout was valid, or the call would not have run.
            self._metrics.rejected(Limit.REQUEST_TIMEOUT)
        if not logger.isEnabledFor(logging.INFO):
            return
        session = ctx.request if isinstance(ctx.request, Session) else None
        fields: dict[str, Any] = {
            "session": session.log_id if session else None,
            "transport": session.transport if session else None,
            "caller": session.caller.name if session else None,
            "method": method,
            "tool": tool or None,
            "request_id": ctx.request_id,
            "duration_ms": round(seconds * 1000, 3),
            "outcome": outcome.value,
            "code": code or None,
        }
        if self._log_sql and method == "tools/call":
            fields["sql"] = _sql_of(params, result)
        logger.info("%s%s: %s", method, f" {tool}" if tool else "", outcome.value, extra={FIELDS: fields})


def _outcome_of(method: str, result: HandlerResult) -> tuple[Outcome, str]:
    """A tool result flagged `isError` is a tool error, whose code leads its text; anything else is ok.

    The chain's inner end returns the result already in its wire form (a dict).
    """
    if method != "tools/call" or not isinstance(result, Mapping) or result.get("isError") is not True:
        return Outcome.OK, ""
    texts = [block.get("text", "") for block in result.get("content", ()) if isinstance(block, Mapping)]
    match = _TOOL_ERROR.match(texts[0]) if texts and isinstance(texts[0], str) else None
    return Outcome.TOOL_ERROR, match[1] if match else ""


def _sql_of(params: Mapping[str, Any], result: HandlerResult) -> str | None:
    """The SQL a call ran (a result states it), else the SQL it was given."""
    structured = result.get("structuredContent") if isinstance(result, Mapping) else None
    if isinstance(structured, Mapping) and isinstance(structured.get("sql"), str):
        return structured["sql"]
    arguments = params.get("arguments")
    sql = arguments.get("sql") if isinstance(arguments, Mapping) else None
    return sql if isinstance(sql, str) else None
