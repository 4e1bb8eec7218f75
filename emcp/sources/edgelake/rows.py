"""Rows out of the body of `sql <dbms> format=json "<select>"`, parsed as the bytes arrive.

EdgeLake streams a SQL reply as `{"Query": [row, row, ...], "Statistics": [{...}]}`,
one chunk per row. The parser is ijson's push interface, so a reply of any
size costs memory for one network read and the rows completed in it, never the
whole result. It parses, never string-matches: whitespace differs between the
local, pass-through and consolidated paths (README quirk 14).

Shapes it reads: no `Query` key means zero rows (quirk 4: an empty result is
`{"Statistics": ...}` alone); `stat=false` drops `Statistics`; `format=json:list`
is a bare list of rows; and a top-level object with `err_code` and no `Query`
is EdgeLake's error JSON, which network errors send with status 200.
"""

from __future__ import annotations

from typing import Any

import ijson

_ROWS_IN_OBJECT = "Query.item"
_ROWS_IN_LIST = "item"
_SCALARS = frozenset({"null", "boolean", "integer", "double", "number", "string"})


class ReplyFormatError(Exception):
    """The body is not JSON, or not shaped like a SQL reply."""


class SqlReplyParser:
    """Feed body bytes, get rows (dicts in EdgeLake's column order) as soon as each one is complete."""

    def __init__(self) -> None:
        self._events = ijson.sendable_list()
        self._coro = ijson.parse_coro(self._events, use_float=True)
        self._rows_prefix: str | None = None
        self._row: ijson.ObjectBuilder | None = None
        self._key: str | None = None  # the top-level key whose value comes next
        self._value: ijson.ObjectBuilder | None = None  # building that value
        self._fields: dict[str, Any] = {}  # top-level scalars: the error JSON's fields
        self._has_query = False
        self._content = False
        self._finished = False
        #: The reply's `Statistics` object (Count, Time, Nodes; or Target and
        #: Participating Nodes for a subset reply); None until seen, or with `stat=false`.
        self.statistics: dict[str, Any] | None = None

    @property
    def error(self) -> dict[str, Any] | None:
        """The top-level fields of an error reply: an object with `err_code` and no `Query`."""
        if self._finished and not self._has_query and "err_code" in self._fields:
            return dict(self._fields)
        return None

    @property
    def empty(self) -> bool:
        """True when the body held nothing but whitespace (EdgeLake's empty replies)."""
        return self._finished and not self._content

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        if not data:  # ijson takes b"" for the end of the input
            return []
        if not self._content and data.strip():
            self._content = True
        try:
            self._coro.send(data)
        except ijson.JSONError as exc:
            raise ReplyFormatError(f"the SQL reply is not valid JSON: {_one_line(exc)}") from None
        return self._take_rows()

    def finish(self) -> list[dict[str, Any]]:
        """Call at the end of the body; returns the last rows, raises if the JSON is cut short."""
        self._finished = True
        if not self._content:
            return []
        try:
            self._coro.close()
        except ijson.JSONError as exc:
            raise ReplyFormatError(f"the SQL reply ends before its JSON does: {_one_line(exc)}") from None
        return self._take_rows()

    def _take_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for prefix, event, value in self._events:
            if self._row is not None:
                if event == "end_map" and prefix == self._rows_prefix:
                    rows.append(self._row.value)
                    self._row = None
                else:
                    self._row.event(event, value)
            elif prefix == self._rows_prefix:
                if event != "start_map":
                    raise ReplyFormatError(f"a row of the SQL reply is not an object ({event})")
                self._row = ijson.ObjectBuilder()
                self._row.event(event, value)
            else:
                self._top_level(prefix, event, value)
        del self._events[:]
        return rows

    def _top_level(self, prefix: str, event: str, value: Any) -> None:
        if prefix == "":
            if event == "start_array":
                self._rows_prefix = _ROWS_IN_LIST
            elif event == "map_key":
                self._key = value
            elif event not in ("start_map", "end_map", "end_array"):
                raise ReplyFormatError(f"the SQL reply is a bare {event}, not an object or a list")
            return
        # Every other event belongs to the value of the current top-level key.
        if self._key == "Query":
            if event == "start_array":
                self._has_query = True
                self._rows_prefix = _ROWS_IN_OBJECT
            elif event != "end_array":
                raise ReplyFormatError(f"the SQL reply's Query is a {event}, not a list")
        elif self._key == "Statistics":
            self._build_statistics(prefix, event, value)
        elif prefix == self._key and event in _SCALARS:
            self._fields[prefix] = value
        # Containers under other keys are not kept: nothing EdgeLake sends has them.

    def _build_statistics(self, prefix: str, event: str, value: Any) -> None:
        if event in _SCALARS and prefix == "Statistics":
            return
        if self._value is None:
            self._value = ijson.ObjectBuilder()
        self._value.event(event, value)
        if prefix == "Statistics" and event in ("end_map", "end_array"):
            built = self._value.value
            self._value = None
            if isinstance(built, list):  # EdgeLake sends [{...}]
                built = next((item for item in built if isinstance(item, dict)), None)
            if isinstance(built, dict):
                self.statistics = built


def _one_line(exc: Exception) -> str:
    """yajl's messages draw a caret under the bad byte over several lines."""
    return " ".join(str(exc).split())
