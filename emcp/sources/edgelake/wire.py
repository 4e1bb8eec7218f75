"""Reading one EdgeLake HTTP response from bytes, with no sockets (sans-IO).

EdgeLake speaks HTTP/1.1 through Python's BaseHTTP server, and some of its
replies are not valid HTTP (README "Errors" and "Quirks"):

* framing A: `400 {error json}` declared `Transfer-Encoding: chunked`, with the
  same JSON sent raw, not chunk-encoded;
* framing D: `200` declared chunked with a raw JSON body up to EOF;
* `200` declared chunked with no body at all, not even the `0` terminator
  (unknown User-Agent; local SQL failing after the headers went out);
* quirk 11: a second chunked stream ("Reply errors") after the first one's
  `0\\r\\n\\r\\n`.

h11 parses the head and every well-framed body exactly, so it does that work.
It rejects the body framings above (that is correct HTTP behaviour: strict
clients lose those bodies), so when it rejects a body before delivering any of
it, the reader falls back to "the body is every byte after the head, up to
EOF", which is what EdgeLake meant. Bytes after a well-framed end are kept,
bounded, as `End.extra` so the client can report them. Bodies are handed out
as they arrive, a network read at a time; the reader never holds a whole body.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import h11

# EdgeLake echoes the failing SQL in an error's reason phrase, and a command
# header may be as long as BaseHTTP accepts (64 KiB): h11's 16 KiB default
# would refuse such a head.
MAX_HEAD_BYTES = 256 * 1024
MAX_EXTRA_BYTES = 8 * 1024


class ProtocolError(Exception):
    """The peer did not send an HTTP response head; no reply can be read from this connection."""


class Framing(enum.Enum):
    """How a response body was delimited."""

    #: h11 read the body to its declared end (Content-Length, chunked terminator, or EOF for neither).
    FRAMED = "framed"
    #: h11 rejected the declared framing before any body byte; the body is every byte after the
    #: head, up to EOF (EdgeLake's framings A and D, and its empty "chunked" bodies).
    RAW = "raw"
    #: The body broke off after h11 had delivered part of it: the reply is incomplete.
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class Head:
    status: int
    #: The reason phrase, decoded as latin-1; EdgeLake puts its error JSON here (framing A).
    reason: str
    #: (lower-case name, value) pairs in the order received, decoded as latin-1.
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def content_type(self) -> str:
        return self.header("content-type") or ""


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes


@dataclass(frozen=True, slots=True)
class End:
    """The connection closed; nothing follows."""

    framing: Framing
    #: Bytes that followed the body's end (quirk 11), or that could not be framed after a
    #: truncation: at most the reader's `max_extra_bytes` of them.
    extra: bytes
    #: How many such bytes arrived in all.
    extra_size: int

    @property
    def well_framed(self) -> bool:
        return self.framing is Framing.FRAMED


class NeedData:
    """Returned by `next_event` when no event can be produced until more bytes (or EOF) arrive."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = NeedData()

Event = Head | Body | End | NeedData


class _State(enum.Enum):
    HEAD = enum.auto()
    BODY = enum.auto()  # h11 is reading the body
    RAW = enum.auto()  # h11 gave up before any body byte: raw body until EOF
    AFTER = enum.auto()  # the body ended; waiting for EOF, keeping what arrives
    DONE = enum.auto()


class ResponseReader:
    """One response, read from the bytes of a connection the server closes after it.

    Feed bytes with `receive_data` (`b""` for EOF) and pull events with
    `next_event`: one `Head`, then `Body` events, then one `End` once EOF has
    been seen. `next_event` raises `ProtocolError` only while reading the head.
    """

    def __init__(self, *, max_head_bytes: int = MAX_HEAD_BYTES, max_extra_bytes: int = MAX_EXTRA_BYTES) -> None:
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=max_head_bytes)
        # h11 tracks both peers and reads a response only after the request it
        # answers. The request really sent is built by the client; this one only
        # moves the state machine (its method matters to h11 only for HEAD).
        self._h11.send(h11.Request(method="GET", target="/", headers=[("Host", "edgelake")]))
        self._h11.send(h11.EndOfMessage())
        self._state = _State.HEAD
        # Body bytes kept while h11 has delivered none, so that if it rejects the
        # framing the raw body can still be handed out whole. Bounded: h11 fails
        # once it holds more than max_head_bytes without finding a chunk header.
        self._unframed: bytearray | None = None
        self._raw = bytearray()
        self._max_extra = max_extra_bytes
        self._extra = bytearray()
        self._extra_size = 0
        self._framing = Framing.FRAMED
        self._eof = False
        self._got_bytes = False
        self._end: End | None = None

    def receive_data(self, data: bytes) -> None:
        if self._eof:
            if data:
                raise RuntimeError("received data after EOF")
            return
        if not data:
            self._eof = True
        self._got_bytes = self._got_bytes or bool(data)
        if self._state in (_State.HEAD, _State.BODY):
            self._h11.receive_data(data)
            if self._unframed is not None:
                self._unframed += data
        elif self._state is _State.RAW:
            self._raw += data
        else:
            self._keep_extra(data)

    def next_event(self) -> Event:
        if self._state is _State.HEAD:
            return self._next_head()
        if self._state is _State.BODY:
            body = self._next_body()
            if body is not None:
                return body
            if self._state is _State.BODY:
                return NEED_DATA
        if self._state is _State.RAW and self._raw:
            data, self._raw = bytes(self._raw), bytearray()
            return Body(data)
        if not self._eof:
            return NEED_DATA
        if self._end is None:
            self._state = _State.DONE
            self._end = End(self._framing, bytes(self._extra), self._extra_size)
        return self._end

    def _next_head(self) -> Event:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                if self._eof and not self._got_bytes:
                    raise ProtocolError("the connection closed before a response head") from None
                raise ProtocolError(f"not an HTTP response: {exc}") from None
            if event is h11.NEED_DATA:
                return NEED_DATA
            if isinstance(event, h11.Response):
                self._state = _State.BODY
                self._unframed = bytearray(self._h11.trailing_data[0])
                return Head(
                    status=event.status_code,
                    reason=event.reason.decode("latin-1"),
                    headers=tuple((name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers),
                )
            if not isinstance(event, h11.InformationalResponse):  # 1xx: the response follows
                raise ProtocolError(f"not an HTTP response: {event!r}")

    def _next_body(self) -> Body | None:
        """Everything h11 can deliver now, as one event: per-chunk events would mean one per row."""
        parts: list[bytes] = []
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:
                self._fall_back()
                break
            if isinstance(event, h11.Data):
                parts.append(event.data)
                self._unframed = None
            elif isinstance(event, h11.EndOfMessage):
                self._finish(Framing.FRAMED)
                break
            else:  # NEED_DATA: the body state yields nothing else
                break
        return Body(b"".join(parts)) if parts else None

    def _fall_back(self) -> None:
        if self._unframed is not None:
            self._framing = Framing.RAW
            self._state = _State.RAW
            self._raw, self._unframed = self._unframed, None
        else:
            self._finish(Framing.TRUNCATED)

    def _finish(self, framing: Framing) -> None:
        self._framing = framing
        self._state = _State.AFTER
        self._keep_extra(self._h11.trailing_data[0])

    def _keep_extra(self, data: bytes) -> None:
        self._extra_size += len(data)
        room = self._max_extra - len(self._extra)
        if room > 0:
            self._extra += data[:room]


_CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def dechunk(data: bytes) -> bytes:
    """The payload of bytes that followed a reply (quirk 11 sends them as a second chunked stream).

    Read by the same reader behind a stand-in head, so that h11 does the
    de-chunking; bytes that are not chunk-encoded come back as they are.
    """
    reader = ResponseReader()
    reader.receive_data(_CHUNKED_HEAD + data)
    reader.receive_data(b"")
    parts = []
    while not isinstance(event := reader.next_event(), End):
        if isinstance(event, Body):
            parts.append(event.data)
    return b"".join(parts)
