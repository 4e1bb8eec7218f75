"""Every recorded EdgeLake exchange through the sans-IO layers: wire reader, classifier, row parser.

Each recording in ../shared/edgelake/exchanges.jsonl is fed whole, byte by
byte and in random pieces, and must yield the outcome written next to its name
in EXPECTED. SQL rows are checked against dataset.jsonl (the rows the node
held), not against the recording itself.
"""

from __future__ import annotations

import base64
import json
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

import pytest

from emcp.sources.edgelake.errors import HINTS, EdgeLakeError, classify_reply, error_for_status
from emcp.sources.edgelake.rows import ReplyFormatError, SqlReplyParser
from emcp.sources.edgelake.wire import (
    Body,
    End,
    Framing,
    Head,
    NeedData,
    ProtocolError,
    ResponseReader,
    dechunk,
)
from tests.edgelake_emulator import SHARED

EXCHANGES = {
    record["name"]: record for record in map(json.loads, (SHARED / "exchanges.jsonl").read_text().splitlines())
}
NODE = "http://127.0.0.1:32049"

_stored: dict[str, list[dict[str, Any]]] = defaultdict(list)
for _line in (SHARED / "dataset.jsonl").read_text().splitlines():
    _record = json.loads(_line)
    _stored[_record["table"]].append(_record["stored"])
SENSOR = _stored["sensor"]
EVENTS = _stored["events"]


def raw(name: str) -> bytes:
    return base64.b64decode(EXCHANGES[name]["response_b64"])


# -- what each recording must yield ---------------------------------------------------------------


@dataclass(frozen=True)
class Ok:
    """A reply with output, not SQL rows."""

    json: bool = True


@dataclass(frozen=True)
class Rows:
    """A SQL reply: these rows (from the dataset), then this Statistics object."""

    rows: Callable[[], list[dict[str, Any]]]
    statistics: dict[str, Any] | None
    trailing: str = ""


@dataclass(frozen=True)
class Fails:
    """An error in framing A (400, JSON reason, raw body), B (400, Content-Length), C (200, chunked
    error JSON), D (200 declared chunked, raw error JSON) or "empty" (200 declared chunked, no bytes)."""

    framing: str
    err_code: int | None
    code: str = field(default="edgelake_error")


def stats(count: int, nodes: int) -> dict[str, Any]:
    return {"Count": count, "Time": "00:00:00", "Nodes": nodes}


# Relative time was evaluated at the Date of those replies (README).
NOW = "2026-11-24 09:02:12"


def sensor_top(n: int, *, key: str, columns: tuple[str, ...], where: Callable[[dict], bool] = bool) -> list[dict]:
    rows = sorted((r for r in SENSOR if where(r)), key=lambda r: r[key], reverse=True)[:n]
    return [{c: r[c] for c in columns} for r in rows]


def by_device(*aggregates: str) -> list[dict[str, Any]]:
    out = []
    for device in sorted({r["device"] for r in SENSOR}):
        values = [r["value"] for r in SENSOR if r["device"] == device]
        row: dict[str, Any] = {"device": device, "n": len(values)}
        if aggregates:
            row |= {"min_value": min(values), "max_value": max(values), "avg_value": pytest.approx(fmean(values))}
        out.append(row)
    return out


def increments_by_day() -> list[dict[str, Any]]:
    days: dict[str, list[dict]] = defaultdict(list)
    for r in SENSOR:
        if "2026-11-20 00:00:00" <= r["timestamp"] < "2026-11-24 00:00:00":
            days[r["timestamp"][:10]].append(r)
    return [
        {
            "day_start": min(r["timestamp"] for r in rows),
            "n": len(rows),
            "avg_value": pytest.approx(fmean(r["value"] for r in rows)),
        }
        for _, rows in sorted(days.items())
    ]


def first_errors() -> list[dict[str, Any]]:
    rows = sorted((r for r in EVENTS if r["level"] == "error"), key=lambda r: r["timestamp"])[:5]
    return [{c: r[c] for c in ("timestamp", "device", "level", "message")} for r in rows]


def count_since(cutoff: str) -> list[dict[str, Any]]:
    return [{"n": sum(r["timestamp"] >= cutoff for r in SENSOR)}]


SUMMARY = [
    {
        "count(*)": len(SENSOR),
        "min(value)": min(r["value"] for r in SENSOR),
        "max(value)": max(r["value"] for r in SENSOR),
        "avg(value)": pytest.approx(fmean(r["value"] for r in SENSOR)),
    }
]
TOP_VALUES = [
    {"device": "dev-a", "value": 60.0},
    {"device": "dev-b", "value": 50.5},
    {"device": "dev-c", "value": 40.75},
]

EXPECTED: dict[str, Ok | Rows | Fails] = {
    "get_status": Ok(json=False),
    "get_status_json": Ok(),
    "get_version": Ok(json=False),
    "get_version_json": Ok(),
    "get_databases": Ok(json=False),
    "get_databases_json": Ok(),
    "get_tables_all": Ok(json=False),
    "get_tables_all_json": Ok(),
    "get_tables_new_company_json": Ok(),
    "get_columns_sensor_json": Ok(),
    "get_columns_sensor_mcp": Ok(),
    "get_columns_sensor_mcp_nosys": Ok(),
    "get_columns_events_json": Ok(),
    "blockchain_get_table": Ok(),
    "blockchain_get_table_bring_dbms_name": Ok(),
    "blockchain_get_table_unique_dbms": Ok(),
    "blockchain_get_table_unique_names": Ok(),
    "get_data_nodes_json": Ok(),
    "blockchain_get_operator": Ok(),
    "blockchain_get_cluster": Ok(),
    "blockchain_get_master": Ok(),
    "get_processes": Ok(json=False),
    "get_connections": Ok(json=False),
    "get_status_explicit_peer": Ok(),  # chunked, keyed by peer
    "sql_select_limit5_local": Rows(lambda: SENSOR[:5], stats(5, 0)),  # spaced JSON
    "sql_select_limit5_network": Rows(lambda: SENSOR[:5], stats(5, 1)),  # compact JSON
    "sql_count_local": Rows(lambda: [{"count(*)": len(SENSOR)}], stats(1, 0)),
    "sql_count_network": Rows(lambda: [{"count(*)": len(SENSOR)}], stats(1, 1)),
    "sql_min_max_avg_network": Rows(lambda: SUMMARY, stats(1, 1)),  # unaliased keys
    "sql_group_by_device_network": Rows(lambda: by_device("min", "max", "avg"), stats(5, 1)),
    "sql_order_by_ts_desc_limit10_network": Rows(
        lambda: sensor_top(10, key="timestamp", columns=("timestamp", "device", "value")), stats(10, 1)
    ),
    "sql_where_string_now_days_network": Rows(
        lambda: sensor_top(
            5,
            key="timestamp",
            columns=("timestamp", "device", "value"),
            where=lambda r: r["device"] == "dev-b" and r["timestamp"] >= "2026-11-22 09:02:12",
        ),
        stats(5, 1),
    ),
    "sql_count_now_days_network": Rows(lambda: count_since("2026-11-21 09:02:12"), stats(1, 1)),
    "sql_count_now_days_local": Fails("empty", None, "empty_reply"),  # quirk 10: SQLite fails after the head
    "sql_increments_day_network": Rows(increments_by_day, stats(4, 1)),
    "sql_events_errors_network": Rows(first_errors, stats(5, 1)),
    "sql_empty_result_network": Rows(list, stats(0, 1)),  # no Query key
    "sql_empty_result_local": Rows(list, stats(0, 0)),
    "sql_stat_false_network": Rows(lambda: TOP_VALUES, None),
    "sql_json_list_network": Rows(lambda: TOP_VALUES, None),  # a bare list
    "sql_format_table_network": Ok(json=False),  # text table: a reply, but no rows to parse
    "sql_select_all_local": Rows(lambda: SENSOR, stats(3000, 0)),
    "sql_select_all_network": Rows(lambda: SENSOR, stats(3000, 1)),
    "err_unknown_table_local": Fails("A", 29),
    "err_unknown_table_network": Fails("C", 45),
    "err_unknown_column_local": Fails("A", 46),
    "err_unknown_column_network": Fails("C", 46),
    "err_unknown_dbms_local": Fails("A", 5),
    "err_unknown_dbms_network": Fails("C", 45),
    "err_sql_syntax_local": Fails("A", 16),
    "err_sql_syntax_network": Fails("D", 155),
    "err_join_local": Fails("A", 134),
    "err_join_network": Fails("C", 134),
    "err_sql_format_mcp": Fails("A", 175),
    "err_get_columns_unknown_table": Fails("A", 132),
    "err_malformed_get_nonsense": Fails("A", 2),
    "err_unknown_command_get": Fails("B", 156),
    "err_unknown_command_post": Fails("A", 141),
    "err_wrong_method_post_get_status": Fails("B", 156),
    "no_user_agent": Fails("empty", None, "empty_reply"),
    "other_user_agent": Fails("empty", None, "empty_reply"),
    "nonsql_destination_network": Fails("D", 155),
    "err_dead_peer_sql": Fails("C", 208),
    "dead_peer_subset": Rows(  # partial result, then a second chunked stream (quirk 11)
        lambda: [{"count(*)": ""}],
        {"Count": 1, "Time": "00:00:12", "Target Nodes": 1, "Participating Nodes": 0},
        trailing="127.0.0.1|32058|  0|     208|Network connection to peer refused|",
    ),
    "post_json_body_command": Ok(),
    "post_json_body_sql_network": Rows(lambda: by_device(), stats(5, 1)),
}

#: How each error framing looks on the wire: status, reason phrase, body framing.
FRAMINGS = {
    "A": (400, "json", Framing.RAW),
    "B": (400, "Bad Request", Framing.FRAMED),
    "C": (200, "OK", Framing.FRAMED),
    "D": (200, "OK", Framing.RAW),
    "empty": (200, "OK", Framing.RAW),
}


def test_every_recording_has_an_expectation() -> None:
    assert set(EXPECTED) == set(EXCHANGES)


def test_every_recorded_err_code_has_a_hint() -> None:
    recorded = {e.err_code for e in EXPECTED.values() if isinstance(e, Fails) and e.err_code is not None}
    assert recorded == {2, 5, 16, 29, 45, 46, 132, 134, 141, 155, 156, 175, 208}
    assert recorded <= set(HINTS)


# -- feeding -------------------------------------------------------------------------------------


def whole(data: bytes) -> Iterator[bytes]:
    yield data


def byte_by_byte(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def random_pieces(data: bytes, seed: str) -> Iterator[bytes]:
    rng = random.Random(seed)
    at = 0
    while at < len(data):
        size = rng.choice((1, 2, 3, 7, rng.randint(1, 300), rng.randint(1, 5000)))
        yield data[at : at + size]
        at += size


@dataclass
class Outcome:
    head: Head
    body: bytes
    end: End
    largest_body_event: int
    parser: SqlReplyParser | None
    rows: list[dict[str, Any]]
    #: Rows parsed once half the bytes were fed: rows come as the body arrives.
    rows_at_half: int


def read(pieces: Iterator[bytes], *, sql: bool, total: int = 0) -> Outcome:
    """What the client does: read events; for a 200 SQL reply, parse rows as the body arrives."""
    reader = ResponseReader()
    head: Head | None = None
    end: End | None = None
    parts: list[bytes] = []
    parser: SqlReplyParser | None = None
    rows: list[dict[str, Any]] = []
    fed = 0
    rows_at_half = -1
    for piece in [*pieces, b""]:
        fed += len(piece)
        if rows_at_half < 0 and fed > total / 2:
            rows_at_half = len(rows)
        reader.receive_data(piece)
        while not isinstance(event := reader.next_event(), NeedData | End):
            if isinstance(event, Head):
                head = event
                if sql and head.status == 200 and "json" in head.content_type:
                    parser = SqlReplyParser()
            else:
                assert event.data
                parts.append(event.data)
                if parser is not None:
                    rows.extend(parser.feed(event.data))
        if isinstance(event, End):
            end = event
    assert head is not None
    assert end is not None
    assert reader.next_event() is end  # End is final
    if parser is not None:
        rows.extend(parser.finish())
    return Outcome(head, b"".join(parts), end, max(map(len, parts), default=0), parser, rows, rows_at_half)


FEEDS = {
    "whole": lambda name, data: whole(data),
    "byte_by_byte": lambda name, data: byte_by_byte(data),
    "random": lambda name, data: random_pieces(data, name),
}


@pytest.mark.parametrize("feed", FEEDS)
@pytest.mark.parametrize("name", EXPECTED)
def test_recording(name: str, feed: str) -> None:
    data = raw(name)
    expected = EXPECTED[name]
    is_sql = EXCHANGES[name]["headers"].get("command", "").startswith("sql ") or name.startswith("post_json_body_sql")
    parse_rows = is_sql and "format=table" not in EXCHANGES[name]["headers"].get("command", "")
    out = read(FEEDS[feed](name, data), sql=parse_rows, total=len(data))
    error = classify_reply(NODE, out.head.status, out.head.reason, out.head.content_type, out.body, out.end.framing)

    if feed == "byte_by_byte" and out.end.well_framed:  # handed out as it arrives, never held whole
        assert out.largest_body_event <= 1
    if isinstance(expected, Ok | Rows):
        assert (out.head.status, out.head.reason, out.end.framing) == (200, "OK", Framing.FRAMED)
        assert error is None
    if isinstance(expected, Ok):
        assert out.parser is None or not is_sql
        if expected.json:
            json.loads(out.body)
        assert out.end.extra == b""
    elif isinstance(expected, Rows):
        assert out.parser is not None
        assert out.parser.error is None
        want = expected.rows()
        assert out.rows == want
        assert [list(row) for row in out.rows] == [list(row) for row in want]  # column order
        assert out.parser.statistics == expected.statistics
        if expected.statistics is not None:
            assert list(out.parser.statistics or {}) == list(expected.statistics)
        if len(want) > 100 and feed != "whole":
            assert 0 < out.rows_at_half < len(want)
        assert expected.trailing in dechunk(out.end.extra).decode("latin-1")
        assert bool(out.end.extra) == bool(expected.trailing)
    else:
        status, reason, framing = FRAMINGS[expected.framing]
        assert (out.head.status, out.end.framing) == (status, framing)
        if reason == "json":
            assert json.loads(out.head.reason)["err_code"] == expected.err_code
            assert json.loads(out.body) == json.loads(out.head.reason)  # same JSON, sent raw
        else:
            assert out.head.reason == reason
        assert isinstance(error, EdgeLakeError)
        assert (error.code, error.err_code, error.node) == (expected.code, expected.err_code, NODE)
        assert NODE in error.message
        assert error.hint
        if expected.err_code is not None:
            assert str(expected.err_code) in error.message
            assert error.err_text and error.err_text in error.message
            assert error.hint == HINTS[expected.err_code]
        else:
            assert out.body == b""
        if out.parser is not None:  # a 200 SQL reply: the streaming path must reach the same verdict
            assert out.rows == []
            if expected.err_code is None:
                assert out.parser.empty
            else:
                assert (out.parser.error or {}).get("err_code") == expected.err_code


def test_local_msg_keeps_sqlite_text_on_one_line() -> None:
    out = read(whole(raw("err_sql_syntax_local")), sql=True)
    error = classify_reply(NODE, out.head.status, out.head.reason, out.head.content_type, out.body, out.end.framing)
    assert error is not None
    assert error.local_msg == 'Error executing SQL:\r\nselec * fro sensor\r\nnear "selec": syntax error'
    assert error.message == (
        f'EdgeLake node {NODE} returned error 16 (SQL Failure): Error executing SQL: selec * fro sensor near "selec": '
        "syntax error"
    )


# -- the reader's own edges ----------------------------------------------------------------------

HEAD_CHUNKED = b"HTTP/1.1 200 OK\r\nContent-Type: text/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"


def test_chunked_body_cut_short_is_truncated_not_raw() -> None:
    data = raw("sql_select_limit5_network")
    out = read(whole(data[: len(data) - 200]), sql=False)
    assert out.end.framing is Framing.TRUNCATED
    parser = SqlReplyParser()
    assert len(parser.feed(out.body)) == 4
    with pytest.raises(ReplyFormatError):
        parser.finish()
    error = classify_reply(NODE, 200, "OK", "text/json", out.body, out.end.framing)
    assert error is not None
    assert error.code == "bad_reply"


def test_content_length_body_cut_short() -> None:
    data = raw("get_status_json")
    out = read(whole(data[:-10]), sql=False)
    assert out.end.framing is Framing.TRUNCATED
    assert out.body == data[-87:-10]


def test_extra_bytes_are_bounded_but_counted() -> None:
    reader = ResponseReader(max_extra_bytes=16)
    reader.receive_data(HEAD_CHUNKED + b"2\r\n[]\r\n0\r\n\r\n" + b"x" * 100)
    reader.receive_data(b"y" * 50)
    reader.receive_data(b"")
    events = []
    while not isinstance(event := reader.next_event(), End):
        events.append(event)
    assert [type(e) for e in events] == [Head, Body]
    assert (event.framing, event.extra, event.extra_size) == (Framing.FRAMED, b"x" * 16, 150)


def test_raw_body_longer_than_the_head_limit_is_still_whole() -> None:
    body = b'{"err_code": 1, "err_text": "' + b"z" * 5000 + b'"}'
    reader = ResponseReader(max_head_bytes=1024)
    got = b""
    for piece in [HEAD_CHUNKED, body[:3000], body[3000:], b""]:
        reader.receive_data(piece)
        while isinstance(event := reader.next_event(), Head | Body):
            got += event.data if isinstance(event, Body) else b""
    assert isinstance(event, End)
    assert (got, event.framing) == (body, Framing.RAW)


@pytest.mark.parametrize(
    "data",
    [b"", b"HTTP/1.1 200 OK\r\nContent-", b"SSH-2.0-OpenSSH_9.6\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\x00"],
)
def test_no_response_head_is_a_protocol_error(data: bytes) -> None:
    reader = ResponseReader()
    reader.receive_data(data)
    reader.receive_data(b"")
    with pytest.raises(ProtocolError):
        reader.next_event()


def test_data_after_eof_is_a_bug() -> None:
    reader = ResponseReader()
    reader.receive_data(b"")
    with pytest.raises(RuntimeError):
        reader.receive_data(b"x")


def test_dechunk_passes_raw_bytes_through() -> None:
    assert dechunk(b"5\r\nhello\r\n0\r\n\r\n") == b"hello"
    assert dechunk(b"not chunked at all") == b"not chunked at all"
    assert dechunk(b"") == b""


# -- the row parser's own edges ------------------------------------------------------------------


def parse(*pieces: bytes) -> tuple[list[dict[str, Any]], SqlReplyParser]:
    parser = SqlReplyParser()
    rows = [row for piece in pieces for row in parser.feed(piece)]
    return rows + parser.finish(), parser


def test_rows_keep_nested_values_and_key_order() -> None:
    rows, parser = parse(b'{"Query": [{"b": {"x": [1, 2]}, "a": null, "c": true}], "Statistics": [{"Count": 1}]}')
    assert rows == [{"b": {"x": [1, 2]}, "a": None, "c": True}]
    assert list(rows[0]) == ["b", "a", "c"]
    assert parser.statistics == {"Count": 1}


def test_numbers_are_floats_not_decimals() -> None:
    rows, _ = parse(b'{"Query":[{"v":21.217260000000007,"n":3000}]}')
    assert rows == [{"v": 21.217260000000007, "n": 3000}]
    assert isinstance(rows[0]["v"], float)


def test_error_with_query_is_not_an_error() -> None:
    _, parser = parse(b'{"Query": [], "err_code": 1}')
    assert parser.error is None


def test_whitespace_only_body_is_empty() -> None:
    rows, parser = parse(b"  \r\n ")
    assert (rows, parser.empty, parser.error) == ([], True, None)


@pytest.mark.parametrize(
    "body",
    [b'{"Query": {"a": 1}}', b'{"Query": [1, 2]}', b"[[1]]", b'"text"', b"device value\n", b'{"Query": [{"a": 1}'],
)
def test_not_a_sql_reply(body: bytes) -> None:
    with pytest.raises(ReplyFormatError):
        parse(body)


def test_non_200_without_error_json() -> None:
    error = error_for_status(NODE, 502, "Bad Gateway", b"<html>proxy</html>")
    assert (error.code, error.err_code) == ("edgelake_error", None)
    assert "502" in error.message
    assert error_for_status(NODE, 302, "Found", b"").code == "bad_reply"
