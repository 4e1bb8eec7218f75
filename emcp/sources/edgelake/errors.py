"""EdgeLake's error replies, turned into errors an AI agent can act on.

EdgeLake reports an error as `{"method", "node", "err_code", "err_text"[, "local_msg"]}`
in four framings (README "Errors"): in the reason phrase of a 400 (A), as the
body of a 400 (B), or as the body of a 200 (C, D: network errors). The rule
applied here is the README's: a reply is an error when its status is 400, or
its body is a JSON object with `err_code` and no `Query`, or its body is empty
where output was expected (emcp only sends commands that have output).

The agent cannot read EdgeLake's source, so every error carries a hint that
says what to change in the call, keyed by `err_code`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import orjson

from emcp.sources.base import SourceError
from emcp.sources.edgelake.wire import Framing

#: What to do about each `err_code` the recorded exchanges show.
HINTS: Mapping[int, str] = MappingProxyType(
    {
        2: (
            "EdgeLake could not parse the command: database and table names must be plain identifiers "
            "(letters, digits, underscores); call list_databases and list_tables for valid names."
        ),
        5: (
            "This database is not connected on the node that ran the query: call list_databases and use one "
            "of its names, and query the network (destination network) rather than one node."
        ),
        16: (
            "SQLite rejected the statement (its message says why): fix the SQL. Relative time such as "
            "NOW() - 3 days works only on network queries, where EdgeLake rewrites it for SQLite."
        ),
        29: "The table does not exist in this database: call list_tables and use one of the names it returns.",
        45: (
            "The network's metadata has no such table or database: call list_databases and list_tables "
            "and use the names they return."
        ),
        46: "A column of the statement does not exist: call get_schema for the table and use its column names.",
        132: "The table is not declared in the network's metadata: call list_tables and use one of its names.",
        134: (
            "EdgeLake does not support JOINs (nor subqueries across tables): query one table at a time, "
            "with WHERE, GROUP BY, ORDER BY and LIMIT, and combine the results yourself."
        ),
        141: "EdgeLake does not know this command: check its spelling (e.g. `get status`, `get version`).",
        155: (
            "EdgeLake found no node to run this on. For SQL that means a syntax error (EdgeLake parses the "
            "statement before routing it) or a table no operator holds: check the SQL and call list_tables. "
            "Commands other than sql cannot be sent to the network."
        ),
        156: (
            "EdgeLake does not know this command, or it needs the other HTTP method: `get ...` and "
            "`blockchain get ...` are GET-only, every other command is POST-only."
        ),
        175: "An option has a value EdgeLake does not accept (format=mcp is not valid for sql): use format=json.",
        208: (
            "A peer node that holds the data did not answer (down or unreachable): retry later, or accept a "
            "partial result from the nodes that answer (subset)."
        ),
    }
)
GENERIC_HINT = "EdgeLake rejected the call; its error text says why. Change the call accordingly."
EMPTY_REPLY_HINT = (
    "EdgeLake sends no body when the User-Agent is not AnyLog/... (or Grafana/...), and when SQLite fails a "
    "statement after the reply has started (e.g. NOW() - 3 days on a local query): query the network, "
    "or simplify the statement."
)
_MAX_TEXT = 2000


class EdgeLakeError(SourceError):
    """An EdgeLake failure, with EdgeLake's own code and texts when it sent them.

    `code` is one of `edgelake_error` (EdgeLake answered with an error),
    `node_unreachable`, `timeout`, `empty_reply`, `bad_reply` (not a reply
    emcp can read) and `bad_request` (refused before anything was sent).
    """

    def __init__(
        self,
        code: str,
        message: str,
        hint: str = "",
        *,
        node: str | None = None,
        err_code: int | None = None,
        err_text: str | None = None,
        local_msg: str | None = None,
    ) -> None:
        super().__init__(code, message, hint)
        self.node = node
        self.err_code = err_code
        self.err_text = err_text
        self.local_msg = local_msg


def error_from_payload(node: str, payload: Mapping[str, Any]) -> EdgeLakeError:
    """The error of an EdgeLake error JSON object."""
    raw_code = payload.get("err_code")
    err_code = raw_code if isinstance(raw_code, int) and not isinstance(raw_code, bool) else None
    err_text = _text(payload.get("err_text"))
    local_msg = _text(payload.get("local_msg"))
    message = f"EdgeLake node {node} returned error {raw_code}"
    if err_text:
        message += f" ({_one_line(err_text)})"
    if local_msg:
        message += f": {_one_line(local_msg)}"
    hint = HINTS.get(err_code, GENERIC_HINT) if err_code is not None else GENERIC_HINT
    return EdgeLakeError(
        "edgelake_error", message, hint, node=node, err_code=err_code, err_text=err_text, local_msg=local_msg
    )


def error_for_status(node: str, status: int, reason: str, body: bytes) -> EdgeLakeError:
    """The error of a reply whose status is not 200: from its error JSON, body first, then reason phrase."""
    for source in (body, reason):
        payload = _error_payload(source)
        if payload is not None:
            return error_from_payload(node, payload)
    if status >= 400:
        detail = _one_line(body.decode("latin-1")) or reason
        return EdgeLakeError(
            "edgelake_error",
            f"EdgeLake node {node} answered HTTP {status}: {detail}"[:_MAX_TEXT],
            GENERIC_HINT,
            node=node,
            err_text=reason,
        )
    return EdgeLakeError(
        "bad_reply",
        f"EdgeLake node {node} answered HTTP {status} {reason}, which is not an EdgeLake reply"[:_MAX_TEXT],
        "check that the node URL points at an EdgeLake node's REST port",
        node=node,
    )


def classify_reply(
    node: str, status: int, reason: str, content_type: str, body: bytes, framing: Framing
) -> EdgeLakeError | None:
    """None for a reply with output; otherwise the error it means."""
    if status != 200:
        return error_for_status(node, status, reason, body)
    if framing is Framing.TRUNCATED:
        return cut_short(node, len(body))
    if not body.strip():
        return empty_reply(node)
    # EdgeLake picks the content type from the body's first character, so an
    # error object is always labelled JSON; the substring test only spares
    # parsing large replies twice, the parse decides.
    if "json" in content_type.lower() and b"err_code" in body:
        payload = _error_payload(body)
        if payload is not None:
            return error_from_payload(node, payload)
    return None


def empty_reply(node: str) -> EdgeLakeError:
    return EdgeLakeError("empty_reply", f"EdgeLake node {node} sent an empty reply", EMPTY_REPLY_HINT, node=node)


def cut_short(node: str, received: int, *, how: str = "broke off its reply") -> EdgeLakeError:
    return EdgeLakeError(
        "bad_reply",
        f"EdgeLake node {node} {how} after {received} bytes of body",
        "retry the call; if it keeps failing, the node is overloaded or failing",
        node=node,
    )


def _error_payload(source: bytes | str) -> dict[str, Any] | None:
    """The object, if `source` is a JSON object with `err_code` and no `Query`."""
    try:
        payload = orjson.loads(source)
    except orjson.JSONDecodeError:
        return None
    if isinstance(payload, dict) and "err_code" in payload and "Query" not in payload:
        return payload
    return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _one_line(text: str) -> str:
    """EdgeLake's messages carry CRLFs (SQLite's, the echoed SQL); a message is read as one line."""
    return " ".join(text.split())[:_MAX_TEXT]
