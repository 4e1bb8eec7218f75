"""JSON text of what emcp sends: orjson, and the standard library for the integers orjson cannot write.

orjson writes integers within 64 bits only, and raises on larger ones.
EdgeLake's JSON replies can hold them (a SUM over big counters, as the rows
are parsed with exact integers), and they must come out exact, not take a
result or a session's reply down.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    """Compact JSON as UTF-8; TypeError for what JSON cannot hold, as orjson."""
    try:
        return orjson.dumps(value)
    except TypeError:
        # Slower, and only for an integer past 64 bits (anything else fails here too).
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
