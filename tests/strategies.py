"""Hypothesis strategies for what a client may send: message bodies from raw bytes to plausible MCP.

Random bytes alone almost never get past JSON parsing, so the bodies mix three
kinds: arbitrary bytes, arbitrary JSON, and JSON-RPC-shaped objects whose
fields are sometimes right (real MCP methods, tool names, ids) and sometimes
not. That way the properties reach every later stage: validation, dispatch,
the tools themselves.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

__all__ = ["json_rpc_objects", "json_values", "message_bodies"]

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)

_METHODS = [
    "initialize",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/read",
    "resources/templates/list",
    "prompts/list",
    "logging/setLevel",
    "completion/complete",
    "server/discover",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
]
_TOOLS = ["list_databases", "list_tables", "get_schema", "query", "sql", "node_status", "fetch_block", "close_result"]
_ARGUMENTS = st.dictionaries(
    st.sampled_from(["database", "table", "sql", "select", "where", "limit", "handle", "block"]),
    json_values | st.sampled_from(["new_company", "sensor", "SELECT 1", "SELECT * FROM devices LIMIT 2"]),
    max_size=4,
)
_TOOL_CALL = st.fixed_dictionaries({"name": st.sampled_from(_TOOLS) | st.text(max_size=10), "arguments": _ARGUMENTS})
_PARAMS = (
    json_values
    | _TOOL_CALL
    | st.fixed_dictionaries(
        {
            "protocolVersion": st.sampled_from(["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"])
            | st.text(max_size=12),
            "capabilities": st.just({}) | json_values,
            "clientInfo": st.just({"name": "fuzz", "version": "1"}) | json_values,
        }
    )
    | st.fixed_dictionaries({"requestId": st.integers() | st.text(max_size=8)}, optional={"reason": json_values})
)

_IDS = st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(max_size=12)

json_rpc_objects: st.SearchStrategy[dict[str, Any]] = st.one_of(
    # Plausible: a tool call, request, notification, response or error that may well be valid.
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": _IDS, "method": st.just("tools/call"), "params": _TOOL_CALL}
    ),
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "method": st.sampled_from(_METHODS)},
        optional={"id": _IDS, "params": _PARAMS},
    ),
    st.fixed_dictionaries(
        {"jsonrpc": st.just("2.0"), "id": _IDS},
        optional={
            "result": st.dictionaries(st.text(max_size=10), json_values, max_size=3),
            "error": st.fixed_dictionaries({"code": st.integers(), "message": st.text(max_size=20)}),
        },
    ),
    # Anything shaped like one: each field present or not, right or wrong.
    st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.just("2.0") | json_values,
            "id": _IDS | json_values,
            "method": st.sampled_from(_METHODS) | json_values,
            "params": _PARAMS,
            "result": json_values,
            "error": json_values,
            "_meta": json_values,
        },
    ),
)
"""JSON-RPC objects, from plausible MCP messages to objects that only look like one."""


def _dumps(value: Any) -> bytes:
    # The standard library, not orjson: it writes integers of any size, which a client may send.
    return json.dumps(value).encode()


message_bodies: st.SearchStrategy[bytes] = st.one_of(
    json_rpc_objects.map(_dumps),
    st.one_of(
        st.binary(max_size=512),
        json_values.map(_dumps),
        st.lists(json_rpc_objects, max_size=3).map(_dumps),  # batches
        json_rpc_objects.map(_dumps).map(lambda body: body[: len(body) // 2]),  # cut short
    ),
)
"""What a client may POST or frame as one message: half JSON-RPC-shaped objects, half anything else."""
