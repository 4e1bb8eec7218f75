"""Integers past 64 bits (EdgeLake's JSON rows can hold them) come out exact in everything emcp sends."""

from __future__ import annotations

import json

import pytest
from mcp_types import JSONRPCResponse

from emcp.json_text import dumps
from emcp.transport.outbound import message_json

BIG = [2**64, -(2**63) - 1, 10**30]


def test_dumps_writes_big_integers_exactly_and_the_rest_as_orjson() -> None:
    assert json.loads(dumps({"rows": [[1, *BIG, "é"]]})) == {"rows": [[1, *BIG, "é"]]}
    assert dumps({"a": [1, 2.5, None]}) == b'{"a":[1,2.5,null]}'
    with pytest.raises(TypeError):
        dumps({"a": object()})


def test_a_reply_holding_a_big_integer_is_sent_exactly() -> None:
    reply = JSONRPCResponse(jsonrpc="2.0", id=7, result={"structuredContent": {"rows": [BIG]}})
    assert json.loads(message_json(reply)) == {
        "jsonrpc": "2.0",
        "id": 7,
        "result": {"structuredContent": {"rows": [BIG]}},
    }
