"""An EdgeLake node for the test suite, made of recorded bytes.

emcp's EdgeLake client must cope with a server that frames errors in the reason
phrase, declares chunked bodies it never chunks and closes after every reply
(see shared/edgelake/README.md). A hand-written fake would encode what we think
EdgeLake does; this emulator only sends what a real node sent. A request that
matches a recorded one gets the recorded response replayed byte for byte.
Anything else is built from a recorded response of the same kind: the same
status line, headers (the recorded `Date` included), chunking and JSON spacing,
filled with rows from dataset.jsonl (run in SQLite, as the node stores them) or
with the recorded policy lists. What no recording shows how to answer is
answered with the recorded unknown-command reply and counted as "unemulated", so
a test that strays off the recorded map sees it in `statistics()`.

The protocol side (`EdgeLakeNode`) is sans-IO so tests can compare what it
builds with the recordings without sockets; `EdgeLakeEmulator` is the thin Trio
server around it, with fault modes for the failures a client must survive.

SQL runs on both paths (`destination: network` and local) with the recorded
validation order and error framings, NOW() - N days|hours|minutes|seconds taken
at the recorded Date (2026-11-24 09:02:12 UTC). Not emulated (replay only):
explicit peer destinations, increments()/period(), functions other than
count/min/max/sum/avg in the select list, format=table, HAVING/OFFSET.

Synthetic large result: `select * from sensor_large [limit N]` on `new_company`
streams `large_rows` rows (the recorded sensor rows cycled, `row_id` counting on)
in the recorded framing, written as the client reads, so a client that stops
reading stalls the emulator instead of making it buffer.

A client that half-closes (shuts down writing) after its request is taken for
one that hung up: EdgeLake clients do not, and it keeps hang-up detection exact.
"""

from __future__ import annotations

import base64
import enum
import functools
import itertools
import json
import re
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import h11
import sqlglot
import trio
from sqlglot import exp
from sqlglot.errors import SqlglotError

from emcp.observe import Watch

__all__ = [
    "LARGE_TABLE",
    "SHARED",
    "Connection",
    "EdgeLakeEmulator",
    "EdgeLakeNode",
    "Exchange",
    "Fault",
    "Reply",
    "Request",
    "load_exchanges",
    "open_emulator",
    "raw_request",
    "serve_emulator",
]


def _shared_dir() -> Path:
    path = Path(__file__).resolve().parents[2] / "shared" / "edgelake"
    if not (path / "exchanges.jsonl").is_file() or not (path / "dataset.jsonl").is_file():
        raise FileNotFoundError(
            f"EdgeLake recordings not found: looked for exchanges.jsonl and dataset.jsonl in {path} "
            "(the repository's parent folder must hold shared/edgelake/)"
        )
    return path


SHARED: Path = _shared_dir()

LARGE_TABLE = "sensor_large"
"""The table name that streams `EdgeLakeEmulator.large_rows` synthetic rows (select * only)."""

# The recorded node's four system columns, first in every table (README: `stored`).
_SYSTEM_COLUMNS = ("row_id", "insert_timestamp", "tsd_name", "tsd_id")

# Requests are commands; a body beyond this is not one (the connection is dropped).
_MAX_BODY = 1024 * 1024

# Replies are written in blocks of about this size: few syscalls, yet the
# writer still waits on the socket, which is the backpressure tests rely on.
_WRITE_SIZE = 16 * 1024


# ---------------------------------------------------------------- recordings


@dataclass(frozen=True)
class Exchange:
    """One recorded request and the exact bytes the node answered."""

    name: str
    method: str
    headers: list[tuple[str, str]]
    body: str | None
    response: bytes
    elapsed_ms: float

    @property
    def head(self) -> bytes:
        """Status line and headers, through the blank line."""
        end = self.response.index(b"\r\n\r\n") + 4
        return self.response[:end]

    @property
    def payload(self) -> bytes:
        """Everything after the head, as sent (chunk framing included)."""
        return self.response[len(self.head) :]


@functools.cache
def _exchanges() -> dict[str, Exchange]:
    found: dict[str, Exchange] = {}
    with (SHARED / "exchanges.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            found[record["name"]] = Exchange(
                name=record["name"],
                method=record["method"],
                headers=list(record["headers"].items()),
                body=record["body"],
                response=base64.b64decode(record["response_b64"]),
                elapsed_ms=float(record["elapsed_ms"]),
            )
    return found


def load_exchanges() -> dict[str, Exchange]:
    """Every recorded exchange by name (a fresh dict; the exchanges are immutable)."""
    return dict(_exchanges())


@functools.cache
def _dataset() -> dict[str, dict[str, list[dict[str, Any]]]]:
    """`stored` rows by database and table, in row_id order."""
    tables: dict[str, dict[str, list[dict[str, Any]]]] = {}
    with (SHARED / "dataset.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            record = json.loads(line)
            tables.setdefault(record["database"], {}).setdefault(record["table"], []).append(record["stored"])
    return tables


def raw_request(exchange: Exchange) -> bytes:
    """The recorded request as bytes on the wire: headers in the recorded order."""
    lines = [f"{exchange.method} / HTTP/1.1"] + [f"{name}: {value}" for name, value in exchange.headers]
    body = (exchange.body or "").encode("latin-1")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------- requests and replies


@dataclass(frozen=True)
class Request:
    """An HTTP request as the node sees it: header names lower-cased."""

    method: str
    headers: dict[str, str]
    body: bytes = b""

    @classmethod
    def from_exchange(cls, exchange: Exchange) -> Request:
        headers = {name.lower(): value for name, value in exchange.headers}
        return cls(exchange.method, headers, (exchange.body or "").encode("latin-1"))

    def json_body(self) -> dict[str, Any] | None:
        """The body of the `POST {"command": ...}` form, or None for any other body."""
        if self.method != "POST" or not self.body:
            return None
        try:
            parsed = json.loads(self.body)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None


def _user_agent_class(value: str | None) -> str:
    """README quirk 1: the node serves `anylog/*` and `grafana/*` and sends nothing to anyone else."""
    if value is None:
        return "missing"
    product = value.split("/", 1)[0].strip().lower()
    return "anylog" if product in ("anylog", "grafana") else "foreign"


def _replay_key(request: Request) -> tuple[object, ...]:
    """What makes two requests the same for EdgeLake: the headers it reads, the UA class, the JSON body."""
    headers = request.headers
    body = request.json_body()
    canonical_body = json.dumps(body, sort_keys=True) if body is not None else request.body or None
    return (
        request.method,
        headers.get("command"),
        headers.get("destination"),
        headers.get("subset"),
        headers.get("timeout"),
        _user_agent_class(headers.get("user-agent")),
        canonical_body,
    )


@dataclass
class Reply:
    """Bytes to send: a head, then the body as segments (chunks, or one raw block).

    `segments` is known up front even when `body` is a lazy iterator, so a cut
    reply (DEAD_MID_BODY) can stop halfway without materialising the rest.
    """

    head: bytes
    body: Iterable[bytes]
    segments: int
    replayed: str | None = None
    generated: str | None = None

    @classmethod
    def recorded(cls, exchange: Exchange, *, generated: str | None = None) -> Reply:
        payload = exchange.payload
        return cls(exchange.head, [payload] if payload else [], 1 if payload else 0, exchange.name, generated)

    def to_bytes(self) -> bytes:
        """The whole reply; consumes a lazy body."""
        return self.head + b"".join(self.body)

    def cut(self) -> Iterator[bytes]:
        """The first half of the body: whole chunks when there are several, else half of the one block."""
        if self.segments >= 2:
            yield from itertools.islice(self.body, self.segments // 2)
        else:
            for block in self.body:
                yield block[: len(block) // 2]


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


_LAST_CHUNK = b"0\r\n\r\n"


def _head_like(exchange: Exchange, *, status_line: bytes | None = None, content_length: int | None = None) -> bytes:
    """A recorded head with only the status line or the Content-Length value replaced."""
    lines = exchange.head[:-4].split(b"\r\n")
    if status_line is not None:
        lines[0] = status_line
    if content_length is not None:
        (index,) = [i for i, line in enumerate(lines) if line.lower().startswith(b"content-length:")]
        lines[index] = b"Content-Length: %d" % content_length
    return b"\r\n".join(lines) + b"\r\n\r\n"


# ---------------------------------------------------------------- the node (sans-IO)

# The shapes of the recorded replies, as the recordings print them (checked
# byte for byte against every recorded SQL reply by the tests).
_STATISTICS = '],\n"Statistics":[{"Count": %d,"Time":"00:00:00","Nodes": %d}]}'
_EMPTY_RESULT = '\n{"Statistics":[{"Count": 0,\n                "Time":"00:00:00",\n                "Nodes": %d}]}'
_COLUMN_MSG = "Non supported SQL: Column '%s' is not recognized in table: %s.%s"
_TABLE_MSG = "Table '%s' in DBMS '%s' not defined (using 'sqlite')"
_DBMS_MSG = "Logical DBMS '%s' not opened on Operator Node"
_JOIN_MSG = "Parsing SQL failed: Unrecognized SELECT statement components after 'select' keyword in SQL: '%s'"
_SQLITE_MSG = "Error executing SQL:\r\n%s\r\n%s"

_SQL_COMMAND = re.compile(r'sql\s+(\S+)\s*(.*?)\s*"(.*)"\s*', re.DOTALL | re.IGNORECASE)
_NOW = re.compile(r"now\(\s*\)(?:\s*-\s*(\d+)\s*(second|minute|hour|day)s?\b)?", re.IGNORECASE)
_BLOCKCHAIN_GET = re.compile(
    r"blockchain get \(?(\w+)\)?(?: where (.+?))?(?: bring\.json(\.unique)? ((?:\[\*\]\[\w+\] ?)+))?",
    re.IGNORECASE,
)
_GET_WHERE = re.compile(r"get (data nodes|columns) where (.+)", re.IGNORECASE)
_CONDITION = re.compile(r"\s*(\w+)\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"']+)\s*(?:\band\b|$)", re.IGNORECASE)


def _conditions(text: str) -> dict[str, str] | None:
    """`k = v and k2 = v2` as a dict (values unquoted), or None if the text is anything else."""
    found: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _CONDITION.match(text, position)
        if match is None or match.end() == position:
            return None
        key, value = match.groups()
        if value[:1] in "\"'":
            value = value[1:-1]
        found[key.lower()] = value
        position = match.end()
    return found


def _scalar_text(value: object) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    return None


class _NaiveSum:
    """SQLite's sum/avg before 3.43: a plain left-to-right float sum.

    The recorded averages (e.g. 21.217260000000007) carry the rounding of that
    sum; newer SQLite compensates and would print different digits.
    """

    def __init__(self) -> None:
        self.total: int | float | None = None
        self.count = 0

    def step(self, value: object) -> None:
        if isinstance(value, int | float):
            self.total = value if self.total is None else self.total + value
            self.count += 1


class _Sum(_NaiveSum):
    def finalize(self) -> int | float | None:
        return self.total


class _Avg(_NaiveSum):
    def finalize(self) -> float | None:
        return None if self.total is None else self.total / self.count


@functools.cache
def _databases() -> dict[str, sqlite3.Connection]:
    """One in-memory SQLite database per logical database, rows exactly as stored, in row_id order.

    Shared by every node of the process: queries only read, and loading once
    keeps an emulator per test cheap.
    """
    databases: dict[str, sqlite3.Connection] = {}
    affinity = {int: "INTEGER", float: "REAL", str: "TEXT"}
    for name, tables in _dataset().items():
        database = sqlite3.connect(":memory:", check_same_thread=False)
        database.create_aggregate("sum", 1, _Sum)
        database.create_aggregate("avg", 1, _Avg)
        for table, rows in tables.items():
            sample = rows[0]
            columns = ", ".join(f'"{column}" {affinity[type(value)]}' for column, value in sample.items())
            database.execute(f'CREATE TABLE "{table}" ({columns})')
            marks = ", ".join("?" for _ in sample)
            database.executemany(f'INSERT INTO "{table}" VALUES ({marks})', [tuple(row.values()) for row in rows])
        databases[name] = database
    return databases


@dataclass(frozen=True)
class _SqlError:
    code: int
    local_msg: str | None = None


class _Unemulated(Exception):
    """No recording shows how the node answers this; the caller answers 'unknown command'."""


@dataclass(frozen=True)
class _Query:
    """A SELECT the node can answer: what runs in SQLite and how the reply must look."""

    sql: str
    table: str
    limit: int | None
    pass_through: bool
    timestamps_out: bool


class EdgeLakeNode:
    """What the recorded node answers to a request, without any I/O.

    Holds the recordings, the dataset in an in-memory SQLite database per
    logical database, and the recorded metadata (policies, data nodes, column
    types) that non-SQL commands are answered from.
    """

    def __init__(self) -> None:
        self.exchanges = _exchanges()
        self.large_rows = 100_000
        self._by_key: dict[tuple[object, ...], str] = {}
        for exchange in self.exchanges.values():
            key = _replay_key(Request.from_exchange(exchange))
            if key in self._by_key:
                raise ValueError(f"recordings {self._by_key[key]} and {exchange.name} answer the same request")
            self._by_key[key] = exchange.name
        self._rows = _dataset()
        self._databases = _databases()
        self._now = parsedate_to_datetime(self._header("sql_count_now_days_network", b"date")).replace(tzinfo=None)
        self._policies = {
            kind: json.loads(self.exchanges[f"blockchain_get_{kind}"].payload)
            for kind in ("table", "operator", "cluster", "master")
        }
        self._data_nodes: list[dict[str, Any]] = json.loads(self.exchanges["get_data_nodes_json"].payload)
        self._column_types: dict[tuple[str, str], dict[str, str]] = {}
        for exchange in self.exchanges.values():
            where = re.fullmatch(r"get columns where (.+)", dict(exchange.headers).get("command", ""))
            conditions = _conditions(where.group(1)) if where else None
            if conditions and conditions.get("format") == "json" and exchange.response.startswith(b"HTTP/1.1 200"):
                self._column_types[conditions["dbms"], conditions["table"]] = json.loads(exchange.payload)
        # Fixed replies (status, version, databases, ...) answer their command whatever optional headers say.
        self._fixed: dict[str, str] = {}
        for exchange in self.exchanges.values():
            headers = {name.lower(): value for name, value in exchange.headers}
            if (
                exchange.method == "GET"
                and exchange.response.startswith(b"HTTP/1.1 200")
                and headers.keys() == {"host", "user-agent", "command"}
                and _user_agent_class(headers["user-agent"]) == "anylog"
                and not headers["command"].startswith("sql ")
            ):
                self._fixed[" ".join(headers["command"].split())] = exchange.name
        self._error_texts: dict[int, str] = {}
        for exchange in self.exchanges.values():
            for text in re.findall(rb'\{"method": [^\r\n]*?"err_code": \d+, "err_text": "[^"]*"', exchange.response):
                error = json.loads(text + b"}")
                self._error_texts[error["err_code"]] = error["err_text"]

    def _header(self, name: str, header: bytes) -> str:
        for line in self.exchanges[name].head.split(b"\r\n"):
            key, _, value = line.partition(b":")
            if key.strip().lower() == header:
                return value.strip().decode("latin-1")
        raise KeyError(header)

    # -- entry point

    def respond(self, request: Request, *, replay: bool = True) -> Reply:
        """The reply to `request`: the recording when one matches (unless `replay` is off), else built."""
        if replay and (name := self._by_key.get(_replay_key(request))) is not None:
            return Reply.recorded(self.exchanges[name])
        method, headers = request.method, dict(request.headers)
        if (body := request.json_body()) is not None:
            # README: every key of the JSON body becomes a header and the command runs as if sent by GET.
            headers.update({key.lower(): str(value) for key, value in body.items()})
            method = "GET"
        agent = _user_agent_class(headers.get("user-agent"))
        if agent != "anylog":
            return self._reuse("no_user_agent" if agent == "missing" else "other_user_agent", "user_agent")
        command = headers.get("command", "").strip()
        destination = headers.get("destination", "local").strip().lower() or "local"
        try:
            if command.lower().startswith("sql "):
                return self._sql(method, command, destination)
            words = " ".join(command.split())
            if words.lower().startswith(("get ", "blockchain get ")):
                if method != "GET":
                    return self._reuse("err_wrong_method_post_get_status", "wrong_method")
                if destination == "network":
                    return self._reuse("nonsql_destination_network", "nonsql_network")
                if destination != "local":
                    raise _Unemulated
                return self._get(words)
        except _Unemulated:
            return self._unknown_command(method, "unemulated")
        return self._unknown_command(method, "unknown_command")

    def _reuse(self, name: str, kind: str) -> Reply:
        return Reply.recorded(self.exchanges[name], generated=kind)

    def _unknown_command(self, method: str, kind: str) -> Reply:
        return self._reuse("err_unknown_command_get" if method == "GET" else "err_unknown_command_post", kind)

    # -- built replies in recorded framings

    def _json_reply(self, value: object, kind: str) -> Reply:
        """Content-Length JSON, like `get status where format=json` (Content-Type text/json)."""
        body = json.dumps(value).encode()
        return self._text_reply(body, kind)

    def _text_reply(self, body: bytes, kind: str) -> Reply:
        head = _head_like(self.exchanges["get_status_json"], content_length=len(body))
        return Reply(head, [body], 1, generated=kind)

    def _error(self, method: str, error: _SqlError, *, framing: str) -> Reply:
        """Framing A (400, JSON as reason phrase, raw body), C (200, chunked JSON) or D (200, raw JSON)."""
        fields: dict[str, object] = {
            "method": method.lower(),
            "node": "127.0.0.1",
            "err_code": error.code,
            "err_text": self._error_texts[error.code],
        }
        if error.local_msg is not None:
            fields["local_msg"] = error.local_msg
        body = json.dumps(fields).encode()
        if framing == "A":
            head = _head_like(self.exchanges["err_unknown_column_local"], status_line=b"HTTP/1.1 400 " + body)
            return Reply(head, [body], 1, generated="sql_error")
        head = self.exchanges["err_unknown_column_network"].head
        if framing == "C":
            return Reply(head, [_chunk(body), _LAST_CHUNK], 2, generated="sql_error")
        return Reply(head, [body], 1, generated="sql_error")

    # -- non-SQL commands

    def _get(self, command: str) -> Reply:
        if (match := _BLOCKCHAIN_GET.fullmatch(command)) is not None:
            return self._blockchain_get(*match.groups())
        if (match := _GET_WHERE.fullmatch(command)) is not None:
            conditions = _conditions(match.group(2))
            if conditions is None or conditions.get("format") not in ("json", "mcp"):
                raise _Unemulated
            if match.group(1).lower() == "columns":
                return self._get_columns(conditions)
            return self._get_data_nodes(conditions)
        if (name := self._fixed.get(command)) is not None:
            return self._reuse(name, "fixed")
        if command.lower().startswith("get "):
            return self._reuse("err_malformed_get_nonsense", "malformed_get")
        raise _Unemulated

    def _blockchain_get(self, kind: str, where: str | None, unique: str | None, bring: str | None) -> Reply:
        conditions = _conditions(where) if where else {}
        if conditions is None:
            raise _Unemulated
        selected = [
            policy
            for policy in self._policies.get(kind.lower(), [])
            if all(_scalar_text(policy[kind.lower()].get(key)) == value for key, value in conditions.items())
        ]
        if bring is None:
            return self._json_reply(selected, "blockchain")
        keys = re.findall(r"\[\*\]\[(\w+)\]", bring)
        projected: list[dict[str, Any]] = []
        for policy in selected:
            body = policy[kind.lower()]
            if any(key not in body for key in keys):
                raise _Unemulated
            item = {key: body[key] for key in keys}
            if not unique or item not in projected:
                projected.append(item)
        if not projected:
            raise _Unemulated
        # The recorded bring.json replies join objects with "," and no space.
        text = "[" + ",".join(json.dumps(item) for item in projected) + "]"
        return self._text_reply(text.encode(), "blockchain")

    def _get_data_nodes(self, conditions: dict[str, str]) -> Reply:
        if conditions.get("format") != "json":
            raise _Unemulated
        dbms, table = conditions.get("dbms", "*"), conditions.get("table", "*")
        rows = [row for row in self._data_nodes if dbms in ("*", row["DBMS"]) and table in ("*", row["Table"])]
        if not rows:
            raise _Unemulated
        return self._json_reply(rows, "data_nodes")

    def _get_columns(self, conditions: dict[str, str]) -> Reply:
        types = self._column_types.get((conditions.get("dbms", ""), conditions.get("table", "")))
        if types is None:
            return self._reuse("err_get_columns_unknown_table", "columns_error")
        if conditions.get("sys_col", "true").lower() == "false":
            types = {name: kind for name, kind in types.items() if name not in _SYSTEM_COLUMNS}
        if conditions["format"] == "mcp":
            return self._json_reply([{"name": name, "type": kind} for name, kind in types.items()], "columns")
        return self._json_reply(types, "columns")

    # -- SQL

    def _sql(self, method: str, command: str, destination: str) -> Reply:
        match = _SQL_COMMAND.fullmatch(command)
        if match is None or destination not in ("local", "network"):
            raise _Unemulated
        dbms, options, sql = match.groups()
        network = destination == "network"
        words = [word.lower() for word in options.split() if word.lower() != "and"]
        if not network and words == ["format=mcp"] and method == "GET":
            return self._reuse("err_sql_format_mcp", "sql_error")
        settings = dict(word.partition("=")[::2] for word in words)
        fmt, stat = settings.pop("format", None), settings.pop("stat", "true")
        if settings or (fmt, stat) not in (("json", "true"), ("json", "false"), ("json:list", "false")):
            raise _Unemulated
        framing = "C" if network else "A"
        if dbms not in self._databases:
            error = _SqlError(45) if network else _SqlError(5, _DBMS_MSG % dbms)
            return self._error(method, error, framing=framing)
        uses_now = _NOW.search(sql) is not None
        runnable = _NOW.sub(self._now_literal, sql)
        query = self._check(dbms, sql, runnable)
        if isinstance(query, _SqlError):
            # The network path reports a syntax error as 155 (framing D) and an unknown table as 45.
            if network and query.code == 16:
                return self._error(method, _SqlError(155), framing="D")
            if network and query.code == 29:
                return self._error(method, _SqlError(45), framing="C")
            return self._error(method, query, framing=framing)
        if uses_now and not network:
            # README quirk 10: locally NOW() - N days only fails in SQLite, after the head went out.
            return Reply(self.exchanges["sql_select_limit5_local"].head, [], 0, generated="sql")
        nodes = 1 if network else 0
        # Spacing, as all 16 recorded SQL replies show it: operator rows passed straight
        # through print compact; rows the node prints itself (local, consolidated) are
        # spaced when a column is timestamp-typed, compact otherwise.
        spaced = query.timestamps_out and not (network and query.pass_through)
        if query.table == LARGE_TABLE:
            count = self.large_rows if query.limit is None else min(query.limit, self.large_rows)
            return self._rows_reply(self._large_rows(count, spaced), count, spaced, fmt, stat, nodes)
        cursor = self._databases[dbms].execute(query.sql)
        names = [column[0] for column in cursor.description]
        rows = [_encode_row(dict(zip(names, values, strict=True)), spaced) for values in cursor.fetchall()]
        return self._rows_reply(iter(rows), len(rows), spaced, fmt, stat, nodes)

    def _now_literal(self, match: re.Match[str]) -> str:
        """The network path's rewrite of NOW() [- N unit], at the instant of the recorded Date header."""
        amount, unit = match.groups()
        instant = self._now - timedelta(**{f"{unit.lower()}s": int(amount)}) if amount else self._now
        return f"'{instant:%Y-%m-%d %H:%M:%S}'"

    def _check(self, dbms: str, original: str, runnable: str) -> _Query | _SqlError:
        """Validate like the node: syntax (16/155), one table (134), table (45/29), columns (46).

        Returns the local path's error (16 carries SQLite's own message, 29 the
        table; the network path turns them into 155 and 45) or the query.
        """
        try:
            statements = [statement for statement in sqlglot.parse(runnable, read="sqlite") if statement is not None]
        except SqlglotError:
            statements = []
        if len(statements) == 1 and isinstance(statements[0], exp.SetOperation):
            return _SqlError(134, _JOIN_MSG % original)
        if len(statements) != 1 or not isinstance(statements[0], exp.Select):
            return self._sqlite_error(dbms, original, runnable)
        select = statements[0]
        source = select.args.get("from_")
        if (
            select.args.get("joins")
            or select.args.get("with_")
            or sum(1 for _ in select.find_all(exp.Select)) > 1
            or (source is not None and not isinstance(source.this, exp.Table))
        ):
            return _SqlError(134, _JOIN_MSG % original)
        if source is None:
            return self._sqlite_error(dbms, original, runnable)
        if select.find(exp.Anonymous) is not None:
            raise _Unemulated  # EdgeLake's own functions (increments, period) are not emulated
        table = source.this.name
        tables = self._rows[dbms]
        known = tables.get("sensor" if table == LARGE_TABLE else table)
        if known is None or source.this.db:
            return _SqlError(29, _TABLE_MSG % (table, dbms))
        columns = {name.lower() for name in known[0]}
        aliases = {projection.alias.lower() for projection in select.expressions if isinstance(projection, exp.Alias)}
        for column in select.find_all(exp.Column):
            if column.name.lower() not in columns | aliases:
                return _SqlError(46, _COLUMN_MSG % (column.name, dbms, table))
        return self._shape(dbms, select, table, runnable)

    def _sqlite_error(self, dbms: str, original: str, runnable: str) -> _SqlError:
        """SQLite's own complaint, as the local path reports it (compiled only, never run)."""
        try:
            self._databases[dbms].execute("EXPLAIN " + runnable)
        except sqlite3.Error as error:
            return _SqlError(16, _SQLITE_MSG % (original, error))
        raise _Unemulated

    def _shape(self, dbms: str, select: exp.Select, table: str, runnable: str) -> _Query:
        """What the reply depends on; anything beyond the recorded query shapes is unemulated."""
        if any(select.args.get(clause) for clause in ("having", "offset", "qualify", "windows", "distinct_on")):
            raise _Unemulated
        types = self._column_types.get((dbms, "sensor" if table == LARGE_TABLE else table), {})
        out_types: list[str] = []
        functions = False
        for projection in select.expressions:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            if isinstance(inner, exp.Star):
                out_types.extend(types.values())
            elif isinstance(inner, exp.Column):
                out_types.append(types.get(inner.name.lower(), ""))
            elif isinstance(inner, exp.Count):
                functions = True
                out_types.append("integer")
            elif isinstance(inner, exp.Min | exp.Max | exp.Sum | exp.Avg) and isinstance(inner.this, exp.Column):
                functions = True
                out_types.append("float" if isinstance(inner, exp.Avg) else types.get(inner.this.name.lower(), ""))
            else:
                raise _Unemulated
        for clause in ("where", "group", "order"):
            node = select.args.get(clause)
            if node is not None and any(
                isinstance(part, exp.Func) and not isinstance(part, exp.Connector) for part in node.walk()
            ):
                raise _Unemulated
        limit_node = select.args.get("limit")
        limit = None
        if limit_node is not None:
            literal = limit_node.expression
            if not (isinstance(literal, exp.Literal) and literal.is_int):
                raise _Unemulated
            limit = int(literal.this)
        # unify_results: the node passes operator rows straight through unless the
        # query has functions, GROUP BY, DISTINCT or ORDER BY.
        ordered = any(select.args.get(clause) for clause in ("group", "order", "distinct"))
        select_all = [type(projection) for projection in select.expressions] == [exp.Star]
        if table == LARGE_TABLE and not (select_all and not ordered and not select.args.get("where")):
            raise _Unemulated
        return _Query(
            sql=runnable,
            table=table,
            limit=limit,
            pass_through=not (functions or ordered),
            timestamps_out=any(kind.startswith("timestamp") for kind in out_types),
        )

    def _large_rows(self, count: int, spaced: bool) -> Iterator[bytes]:
        source = self._rows["new_company"]["sensor"]
        for index in range(count):
            row = dict(source[index % len(source)])
            row["row_id"] = index + 1
            yield _encode_row(row, spaced)

    def _rows_reply(self, rows: Iterator[bytes], count: int, spaced: bool, fmt: str, stat: str, nodes: int) -> Reply:
        """The recorded SQL framing: one chunk per row, then the closing chunk, then the last chunk."""
        head = self.exchanges["sql_select_limit5_network"].head
        if count == 0:
            if (fmt, stat) != ("json", "true"):
                raise _Unemulated
            return Reply(head, [_chunk((_EMPTY_RESULT % nodes).encode()), _LAST_CHUNK], 2, generated="sql")
        if spaced and (fmt, stat) != ("json", "true"):
            raise _Unemulated
        if fmt == "json:list":
            first, between, last = b"[", b",\n", b"]"
        else:
            first = b'{"Query": [' if spaced else b'{"Query":['
            between = b","
            last = (_STATISTICS % (count, nodes)).encode() if stat == "true" else b"]}"

        def body() -> Iterator[bytes]:
            for index, row in enumerate(rows):
                yield _chunk((first if index == 0 else between) + row)
            yield _chunk(last)
            yield _LAST_CHUNK

        return Reply(head, body(), count + 2, generated="sql")


def _encode_row(row: dict[str, Any], spaced: bool) -> bytes:
    return json.dumps(row, separators=None if spaced else (",", ":")).encode()


# ---------------------------------------------------------------- the server


class Fault(enum.Enum):
    """Failures a client of EdgeLake must survive; set `EdgeLakeEmulator.fault` before the request."""

    NONE = "none"
    SLOW = "slow"
    """Read the request, then wait `slow_seconds` before replying (like a dead peer's ~12 s stall)."""
    DEAD_MID_BODY = "dead_mid_body"
    """Send the head and the first half of the body (for SQL: the first row chunks), then close."""
    REFUSE = "refuse"
    """Stop listening: connects are refused until `fault` is set to anything else."""


@dataclass
class Connection:
    """One accepted connection, as the emulator saw it."""

    opened_at: float
    method: str | None = None
    command: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    client_closed_at: float | None = None
    closed: trio.Event = field(default_factory=trio.Event)
    replayed: str | None = None
    generated: str | None = None
    """The kind of reply built (e.g. "sql", "blockchain", "unemulated"), None for an exact replay."""
    fault: Fault = Fault.NONE
    bytes_sent: int = 0


class EdgeLakeEmulator:
    """A Trio TCP server on 127.0.0.1 answering like the recorded EdgeLake node.

    One request per connection, then close (every recorded reply says
    `Connection: close`). While a reply is pending or streaming, a reader task
    watches the socket: the moment the client closes or resets its side,
    `client_closed_at` is recorded and the reply work is cancelled. That is what
    lets tests prove emcp hangs up within a few milliseconds of a cancel.
    `watch` changes on every connection event, bytes sent included.
    """

    def __init__(self, node: EdgeLakeNode | None = None) -> None:
        self.node = node if node is not None else EdgeLakeNode()
        self.url = ""
        self.connections: list[Connection] = []
        self.watch = Watch()
        self.slow_seconds = 30.0
        self._fault = Fault.NONE
        self._port = 0
        self._listener: trio.SocketListener | None = None
        self._resume = trio.Event()
        self._accepted = 0
        self._replays: Counter[str] = Counter()
        self._generated: Counter[str] = Counter()
        self._client_closes = 0

    @property
    def large_rows(self) -> int:
        """Rows of `select * from sensor_large`."""
        return self.node.large_rows

    @large_rows.setter
    def large_rows(self, rows: int) -> None:
        self.node.large_rows = rows

    @property
    def fault(self) -> Fault:
        """The fault applied to requests read from now on; settable at any time.

        Setting REFUSE closes the listening socket at once; setting anything else
        afterwards listens again on the same port, which takes a turn of the
        serve task: await `accept_connections()` to know it is done.
        """
        return self._fault

    @fault.setter
    def fault(self, fault: Fault) -> None:
        self._fault = fault
        if fault is Fault.REFUSE:
            self._resume = trio.Event()
            if self._listener is not None:
                # Closing wakes the accept loop with ClosedResourceError; connects now get ECONNREFUSED.
                self._listener.socket.close()
                self._listener = None
                self.watch.changed()
        else:
            self._resume.set()

    async def refuse_connections(self) -> None:
        """Close the listening socket, so connects are refused (same as setting `fault = Fault.REFUSE`)."""
        self.fault = Fault.REFUSE
        await trio.lowlevel.checkpoint()

    async def accept_connections(self) -> None:
        """Listen again on the same port after REFUSE, and return once connects succeed."""
        if self._fault is Fault.REFUSE:
            self.fault = Fault.NONE
        await self.watch.wait_until(lambda: self._listener is not None)

    def statistics(self) -> dict[str, Any]:
        return {
            "accepted": self._accepted,
            "open": sum(1 for connection in self.connections if not connection.closed.is_set()),
            "replays": dict(self._replays),
            "generated": dict(self._generated),
            "client_closes": self._client_closes,
            "listening": self._listener is not None,
        }

    async def serve(self, *, task_status: trio.TaskStatus[EdgeLakeEmulator] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on 127.0.0.1 port 0 and serve until cancelled; reports itself through `task_status`."""
        async with trio.open_nursery() as nursery:
            started = False
            while True:
                (listener,) = await trio.open_tcp_listeners(self._port, host="127.0.0.1")
                self._port = listener.socket.getsockname()[1]
                self.url = f"http://127.0.0.1:{self._port}"
                self._listener = listener
                self.watch.changed()
                if not started:
                    task_status.started(self)
                    started = True
                if self._fault is Fault.REFUSE:
                    self.fault = Fault.REFUSE  # set before we listened: close now
                try:
                    await self._accept_all(listener, nursery)
                finally:
                    await trio.aclose_forcefully(listener)
                await self._resume.wait()

    async def _accept_all(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except trio.ClosedResourceError:
                return
            nursery.start_soon(self._handle, stream)

    async def _handle(self, stream: trio.SocketStream) -> None:
        connection = Connection(opened_at=trio.current_time())
        self.connections.append(connection)
        self._accepted += 1
        self.watch.changed()
        try:
            request = await self._read_request(stream, connection)
            if request is None:
                return
            connection.fault = self._fault
            reply = self.node.respond(request)
            connection.replayed, connection.generated = reply.replayed, reply.generated
            if reply.generated is not None:
                self._generated[reply.generated] += 1
            elif reply.replayed is not None:
                self._replays[reply.replayed] += 1
            self.watch.changed()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watch_client, stream, connection, nursery.cancel_scope)
                await self._send_reply(stream, connection, reply)
                nursery.cancel_scope.cancel()
        finally:
            await trio.aclose_forcefully(stream)
            connection.closed.set()
            self.watch.changed()

    async def _read_request(self, stream: trio.SocketStream, connection: Connection) -> Request | None:
        """Parse one request with h11; None if the client went away first or sent something unparsable."""
        parser = h11.Connection(h11.SERVER)
        head: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError:
                return None
            if event is h11.NEED_DATA:
                try:
                    data = await stream.receive_some()
                except trio.BrokenResourceError:
                    data = b""
                if not data:
                    self._client_closed(connection)
                    return None
                parser.receive_data(data)
            elif isinstance(event, h11.Request):
                head = event
                connection.method = event.method.decode("ascii")
                connection.headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > _MAX_BODY:
                    return None
            elif isinstance(event, h11.EndOfMessage) and head is not None:
                request = Request(connection.method or "", connection.headers, bytes(body))
                json_body = request.json_body() or {}
                command = connection.headers.get("command", json_body.get("command"))
                connection.command = command if isinstance(command, str) else None
                self.watch.changed()
                return request
            else:
                return None

    async def _watch_client(self, stream: trio.SocketStream, connection: Connection, reply: trio.CancelScope) -> None:
        """Notice the client hanging up (EOF or reset) the moment it does, and stop the reply."""
        try:
            while await stream.receive_some():
                pass
        except trio.BrokenResourceError:
            pass
        self._client_closed(connection)
        reply.cancel()

    async def _send_reply(self, stream: trio.SocketStream, connection: Connection, reply: Reply) -> None:
        if connection.fault is Fault.SLOW:
            await trio.sleep(self.slow_seconds)
        segments = reply.cut() if connection.fault is Fault.DEAD_MID_BODY else reply.body
        pending = bytearray(reply.head)
        try:
            for segment in segments:
                pending += segment
                if len(pending) >= _WRITE_SIZE:
                    await self._send(stream, connection, pending)
                    pending = bytearray()
            if pending:
                await self._send(stream, connection, pending)
        except trio.BrokenResourceError:
            self._client_closed(connection)

    async def _send(self, stream: trio.SocketStream, connection: Connection, data: bytearray) -> None:
        await stream.send_all(data)
        connection.bytes_sent += len(data)
        self.watch.changed()

    def _client_closed(self, connection: Connection) -> None:
        if connection.client_closed_at is None:
            connection.client_closed_at = trio.current_time()
            self._client_closes += 1
            self.watch.changed()


async def serve_emulator(*, task_status: trio.TaskStatus[EdgeLakeEmulator] = trio.TASK_STATUS_IGNORED) -> None:
    """Run an emulator until cancelled: `emulator = await nursery.start(serve_emulator)`."""
    await EdgeLakeEmulator().serve(task_status=task_status)


@asynccontextmanager
async def open_emulator() -> AsyncIterator[EdgeLakeEmulator]:
    """A running emulator for the body of the block, stopped (connections and all) on exit."""
    async with trio.open_nursery() as nursery:
        emulator: EdgeLakeEmulator = await nursery.start(serve_emulator)
        try:
            yield emulator
        finally:
            nursery.cancel_scope.cancel()
