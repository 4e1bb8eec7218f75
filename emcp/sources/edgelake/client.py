"""The Trio client of EdgeLake's REST API: one request per connection, failover, deadlines, streamed SQL.

EdgeLake closes every connection after one reply, so each call opens its own
TCP connection and reads to EOF with the sans-IO `ResponseReader`. Leaving a
call, by return, error or cancel, closes that connection at once: that is how
EdgeLake learns the client is gone, and nothing is left running here (the
client starts no tasks).

Nodes are tried in order. A node that refuses, cannot be reached, or sends no
response head within the deadline is marked down for a while and the next one
is tried; once a node has sent a head the request may have run, so there is no
second attempt. Every call runs under a deadline, because a dead peer stalls
EdgeLake ~12 s whatever its own `timeout` header says (README quirk 8).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import trio

from emcp.observe import Watch
from emcp.sources.edgelake.errors import (
    EdgeLakeError,
    classify_reply,
    cut_short,
    empty_reply,
    error_for_status,
    error_from_payload,
)
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

RECEIVE_SIZE = 64 * 1024

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")
# A line break would end the header (and could start a forged one); the other
# control characters have no business in a command either.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Headers the client writes itself, in this order, before the caller's.
_OWN_HEADERS = frozenset({"host", "user-agent", "command", "content-length", "transfer-encoding", "connection"})


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete reply that is not an error."""

    node: str
    status: int
    reason: str
    content_type: str
    body: bytes
    #: Bytes EdgeLake sent after the reply's end (quirk 11), as received, bounded.
    extra: bytes = b""

    def json(self) -> Any:
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise EdgeLakeError(
                "bad_reply",
                f"EdgeLake node {self.node} answered {self.content_type or 'untyped'} data, not JSON: {exc}",
                "ask for JSON output (`... where format=json`)",
                node=self.node,
            ) from None

    @property
    def trailing(self) -> str:
        """The text EdgeLake appended after the reply (a "Reply errors" table), or ""."""
        return dechunk(self.extra).decode("latin-1")


@dataclass(slots=True)
class _Node:
    url: str
    host: str
    port: int
    authority: str  # the Host header
    requests: int = 0
    failures: int = 0
    marked_down_until: float | None = None


@dataclass(slots=True)
class _Exchange:
    """A request sent and its response head read: the rest of the response is still on the wire."""

    node: _Node
    stream: trio.SocketStream
    reader: ResponseReader
    head: Head
    deadline: float


class _NodeFailure(Exception):
    def __init__(self, reason: str, *, timed_out: bool) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class EdgeLakeClient:
    """Calls to an EdgeLake network through any of its nodes' REST ports (`http://HOST:PORT`)."""

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        user_agent: str = "AnyLog/1.23",
        timeout: float = 20.0,
        retry_down_after: float = 30.0,
        max_reply_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if isinstance(nodes, str) or not nodes:
            raise ValueError("EdgeLake nodes: give a non-empty list of URLs such as http://127.0.0.1:32049")
        self._nodes = [_parse_node(url) for url in nodes]
        if len({node.url for node in self._nodes}) != len(self._nodes):
            raise ValueError(f"EdgeLake nodes: the same node is listed twice in {list(nodes)}")
        if _CONTROL.search(user_agent) or not user_agent.isascii():
            raise ValueError(f"EdgeLake user agent {user_agent!r}: printable ASCII only, such as AnyLog/1.23")
        if timeout <= 0 or retry_down_after < 0 or max_reply_bytes <= 0:
            raise ValueError("EdgeLake client: timeout and max_reply_bytes must be positive, retry_down_after >= 0")
        self._user_agent = user_agent
        self._timeout = timeout
        self._retry_down_after = retry_down_after
        self._max_reply_bytes = max_reply_bytes
        #: Bumped whenever `statistics()` changes.
        self.watch = Watch()

    @property
    def nodes(self) -> list[str]:
        return [node.url for node in self._nodes]

    def statistics(self) -> dict[str, Any]:
        """Per node: attempts, attempts that got no response head, and the trio time its down mark ends."""
        nodes = {
            node.url: {
                "requests": node.requests,
                "failures": node.failures,
                "marked_down_until": node.marked_down_until,
            }
            for node in self._nodes
        }
        return {
            "nodes": nodes,
            "requests": sum(node.requests for node in self._nodes),
            "failures": sum(node.failures for node in self._nodes),
        }

    async def get(self, command: str, *, headers: Mapping[str, str] | None = None) -> Reply:
        """`get ...` and `blockchain get ...` commands (EdgeLake takes them by GET only), and `sql`."""
        return await self._call("GET", command, headers or {})

    async def post(self, command: str, *, headers: Mapping[str, str] | None = None) -> Reply:
        """Every other command (EdgeLake takes them by POST only)."""
        return await self._call("POST", command, headers or {})

    @asynccontextmanager
    async def open_sql(
        self, database: str, sql: str, *, destination: str | None = "network", batch_rows: int = 1000
    ) -> AsyncIterator[SqlRows]:
        """Run one SELECT; iterate the result for row batches as they arrive.

        `destination="network"` runs it on every operator holding the table;
        None runs it on the receiving node. Leaving the block closes the
        connection at once, which stops EdgeLake's work for it.
        """
        if batch_rows < 1:
            raise ValueError("batch_rows must be at least 1")
        if not _IDENTIFIER.match(database):
            raise EdgeLakeError(
                "bad_request",
                f"database {database!r} is not a plain identifier",
                "use a database name as list_databases returns it (letters, digits, underscores)",
            )
        _check_text("the SQL", sql, in_quotes=True)
        headers = {} if destination is None else {"destination": destination}
        exchange = await self._open_exchange("GET", f'sql {database} format=json "{sql}"', headers)
        try:
            if exchange.head.status != 200:
                body, _ = await self._read_all(exchange)
                raise error_for_status(exchange.node.url, exchange.head.status, exchange.head.reason, body)
            yield SqlRows(exchange, self._timeout, batch_rows)
        finally:
            # A socket close is immediate; aclose_forcefully only skips waiting for anything after it.
            await trio.aclose_forcefully(exchange.stream)

    # -- one call --------------------------------------------------------------------------------

    async def _call(self, method: str, command: str, headers: Mapping[str, str]) -> Reply:
        exchange = await self._open_exchange(method, command, headers)
        try:
            body, end = await self._read_all(exchange)
        finally:
            await trio.aclose_forcefully(exchange.stream)
        head, url = exchange.head, exchange.node.url
        error = classify_reply(url, head.status, head.reason, head.content_type, body, end.framing)
        if error is not None:
            raise error
        return Reply(url, head.status, head.reason, head.content_type, body, end.extra)

    async def _read_all(self, exchange: _Exchange) -> tuple[bytes, End]:
        """The rest of the reply, under the call's deadline and within `max_reply_bytes`."""
        url = exchange.node.url
        parts: list[bytes] = []
        size = 0
        with trio.CancelScope(deadline=exchange.deadline) as scope:
            while True:
                try:
                    event = await _next_event(exchange.stream, exchange.reader)
                except trio.BrokenResourceError:
                    raise cut_short(url, size, how="reset the connection") from None
                if isinstance(event, End):
                    return b"".join(parts), event
                assert isinstance(event, Body)
                size += len(event.data)
                if size > self._max_reply_bytes:
                    raise EdgeLakeError(
                        "bad_reply",
                        f"EdgeLake node {url} sent a reply larger than {self._max_reply_bytes} bytes",
                        "narrow the request (a WHERE clause, a LIMIT), or stream SQL results in batches",
                        node=url,
                    )
                parts.append(event.data)
        assert scope.cancelled_caught
        raise EdgeLakeError(
            "timeout",
            f"EdgeLake node {url} did not finish its reply within {self._timeout:g} s",
            _TIMEOUT_HINT,
            node=url,
        )

    # -- failover --------------------------------------------------------------------------------

    async def _open_exchange(self, method: str, command: str, headers: Mapping[str, str]) -> _Exchange:
        _check_text("the command", command, in_quotes=False)
        for name, value in headers.items():
            if not _TOKEN.match(name) or name.lower() in _OWN_HEADERS:
                raise EdgeLakeError(
                    "bad_request",
                    f"{name!r} cannot be sent as a header",
                    "use header names made of letters, digits and dashes, other than "
                    + ", ".join(sorted(_OWN_HEADERS)),
                )
            _check_text(f"the {name} header", value, in_quotes=False)
        now = trio.current_time()
        # Nodes marked down are skipped; if all are, all are tried: the mark is advice, not a ban.
        candidates = [n for n in self._nodes if n.marked_down_until is None or n.marked_down_until <= now]
        failures: list[str] = []
        timed_out = True
        for node in candidates or self._nodes:
            try:
                return await self._attempt(node, method, command, headers)
            except _NodeFailure as failure:
                node.failures += 1
                node.marked_down_until = trio.current_time() + self._retry_down_after
                self.watch.changed()
                failures.append(f"{node.url}: {failure.reason}")
                timed_out = timed_out and failure.timed_out
        tried = "; ".join(failures)
        only = self._nodes[0].url if len(self._nodes) == 1 else None
        if timed_out:
            raise EdgeLakeError(
                "timeout", f"no EdgeLake node answered within {self._timeout:g} s: {tried}", _TIMEOUT_HINT, node=only
            )
        raise EdgeLakeError(
            "node_unreachable",
            f"no EdgeLake node could be reached: {tried}",
            "check that the nodes are running and that their URLs name their REST ports; retry later",
            node=only,
        )

    async def _attempt(self, node: _Node, method: str, command: str, headers: Mapping[str, str]) -> _Exchange:
        node.requests += 1
        self.watch.changed()
        request = _encode_request(method, node.authority, self._user_agent, command, headers)
        deadline = trio.current_time() + self._timeout
        stream: trio.SocketStream | None = None
        answered = False
        try:
            with trio.CancelScope(deadline=deadline):
                stream = await trio.open_tcp_stream(node.host, node.port)
                await stream.send_all(request)
                reader = ResponseReader()
                head = await _next_event(stream, reader)
                assert isinstance(head, Head)
                answered = True
                if node.marked_down_until is not None:
                    node.marked_down_until = None
                    self.watch.changed()
                return _Exchange(node, stream, reader, head, deadline)
            failure = _NodeFailure(f"no response head within {self._timeout:g} s", timed_out=True)
        except OSError as exc:
            failure = _NodeFailure(_describe(exc), timed_out=False)
        except trio.BrokenResourceError:
            failure = _NodeFailure("the connection was reset before a response head", timed_out=False)
        except ProtocolError as exc:
            failure = _NodeFailure(str(exc), timed_out=False)
        finally:
            if stream is not None and not answered:
                await trio.aclose_forcefully(stream)
        raise failure


class SqlRows:
    """The rows of one SQL reply: async-iterate for batches (lists of row dicts) as they arrive.

    After iteration, `statistics` holds EdgeLake's `Statistics` object (None
    with `stat=false`) and `trailing` any text EdgeLake appended (quirk 11's
    "Reply errors" table, which marks a partial result). An error reply raises
    `EdgeLakeError` from the iteration, before any batch.
    """

    def __init__(self, exchange: _Exchange, timeout: float, batch_rows: int) -> None:
        self._exchange = exchange
        self._timeout = timeout
        self._batch_rows = batch_rows
        self._parser = SqlReplyParser()
        self._ready: list[dict[str, Any]] = []
        self._received = 0
        self._end: End | None = None
        self.node = exchange.node.url
        self.statistics: dict[str, Any] | None = None

    @property
    def trailing(self) -> str:
        return "" if self._end is None else dechunk(self._end.extra).decode("latin-1")

    def __aiter__(self) -> SqlRows:
        return self

    async def __anext__(self) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()  # also when the batch is already parsed
        reader = self._exchange.reader
        while len(self._ready) < self._batch_rows and self._end is None:
            event = reader.next_event()
            if isinstance(event, NeedData):
                reader.receive_data(await self._receive())
            elif isinstance(event, Body):
                self._received += len(event.data)
                self._ready.extend(self._rows(event.data))
            else:
                assert isinstance(event, End)
                try:
                    self._finish(event)
                except EdgeLakeError:
                    self._ready.clear()  # rows of a failed reply are not handed out
                    raise
        if not self._ready:
            raise StopAsyncIteration
        batch = self._ready[: self._batch_rows]
        del self._ready[: self._batch_rows]
        return batch

    async def _receive(self) -> bytes:
        """One network read, which must come within the timeout: a stalled stream is an error,
        a long one that keeps moving is not."""
        with trio.move_on_after(self._timeout):
            try:
                return await self._exchange.stream.receive_some(RECEIVE_SIZE)
            except trio.BrokenResourceError:
                raise cut_short(self.node, self._received, how="reset the connection") from None
        raise EdgeLakeError(
            "timeout",
            f"EdgeLake node {self.node} sent nothing for {self._timeout:g} s in the middle of its reply",
            _TIMEOUT_HINT,
            node=self.node,
        )

    def _finish(self, end: End) -> None:
        self._end = end
        if end.framing is Framing.TRUNCATED:
            raise cut_short(self.node, self._received)
        self._ready.extend(self._rows(None))
        if self._parser.error is not None:
            raise error_from_payload(self.node, self._parser.error)
        if self._parser.empty:
            raise empty_reply(self.node)
        self.statistics = self._parser.statistics

    def _rows(self, data: bytes | None) -> list[dict[str, Any]]:
        """The rows completed by `data`, or by the end of the body (None)."""
        try:
            return self._parser.finish() if data is None else self._parser.feed(data)
        except ReplyFormatError as exc:
            raise EdgeLakeError(
                "bad_reply",
                f"EdgeLake node {self.node} sent a SQL reply emcp cannot read: {exc}",
                "retry the query; if it fails again, report it with the query",
                node=self.node,
            ) from None


_TIMEOUT_HINT = (
    "the node or a peer it waits for is slow or down: retry later, narrow the query (WHERE, LIMIT), "
    "or raise the EdgeLake timeout setting"
)


async def _next_event(stream: trio.SocketStream, reader: ResponseReader) -> Head | Body | End:
    while True:
        event = reader.next_event()
        if not isinstance(event, NeedData):
            return event
        reader.receive_data(await stream.receive_some(RECEIVE_SIZE))


def _parse_node(url: str) -> _Node:
    example = "such as http://127.0.0.1:32049 (the node's REST port)"
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "http" or not parts.hostname or port is None:
        raise ValueError(f"EdgeLake node {url!r}: give http://HOST:PORT, {example}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError(f"EdgeLake node {url!r}: give only http://HOST:PORT, {example}")
    host = parts.hostname
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return _Node(url=f"http://{authority}", host=host, port=port, authority=authority)


def _check_text(what: str, text: str, *, in_quotes: bool) -> None:
    """Refuse what cannot travel in an HTTP header, or inside the `"..."` around the SQL."""
    control = _CONTROL.search(text)
    if control:
        raise EdgeLakeError(
            "bad_request",
            f"{what} contains the control character {control.group()!r}",
            "put it on one line without control characters: EdgeLake receives it in an HTTP header",
        )
    if in_quotes and '"' in text:
        raise EdgeLakeError(
            "bad_request",
            f'{what} contains a double quote (")',
            "use single quotes for string literals ('dev-a'); EdgeLake takes identifiers unquoted",
        )
    try:
        text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise EdgeLakeError(
            "bad_request",
            f"{what} contains {text[exc.start]!r}, which is not a latin-1 character",
            "EdgeLake receives it in an HTTP header, which carries latin-1 only: "
            "leave the character out (match around it with LIKE and _ if needed)",
        ) from None


def _encode_request(method: str, authority: str, user_agent: str, command: str, headers: Mapping[str, str]) -> bytes:
    lines = [
        f"{method} / HTTP/1.1",
        f"Host: {authority}",
        f"User-Agent: {user_agent}",
        f"command: {command}",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _describe(exc: OSError) -> str:
    """The OS's reason (Connection refused) rather than trio's "all attempts to connect to ... failed"."""
    causes = exc.__cause__.exceptions if isinstance(exc.__cause__, BaseExceptionGroup) else (exc,)
    reasons = sorted({_reason(cause) for cause in causes if isinstance(cause, OSError)} - {""})
    return ", ".join(reasons) or str(exc)


def _reason(exc: OSError) -> str:
    # trio's connect errors carry the address in strerror; the errno says it plainly.
    if isinstance(exc.errno, int) and exc.errno > 0:
        return os.strerror(exc.errno)
    return exc.strerror or ""
