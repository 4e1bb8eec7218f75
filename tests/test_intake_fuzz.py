"""Whatever a client sends, a live server answers in kind and every other session goes on.

Hypothesis draws bodies, content types and headers for `POST /mcp` (Streamable
HTTP) and `POST /mcp/messages/{id}` (legacy SSE), and text and binary frames for
`/mcp/ws`, while a second session on the same transport makes tool calls one
after another. The rules: no 5xx, every 4xx carries a JSON body; a WebSocket
connection answers a ping after every frame, with JSON text frames only; and
every one of the second session's calls returns the right rows.

One server per test, not per example: Hypothesis is synchronous, so it runs in
a worker thread and hands each example back to the test's Trio loop
(`trio.from_thread.run` runs it in the test's task, under its `fail_after`).
"""

from __future__ import annotations

import itertools
import string
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import quote

import httpx2
import orjson
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from trio_websocket import WebSocketConnection

from emcp import EmcpServer
from emcp.client import websocket_client
from emcp.client.websocket import open_websocket
from tests.conftest import rpc
from tests.rawsse import open_raw_sse
from tests.strategies import message_bodies

T = TypeVar("T")

EXAMPLES = 150
SESSION = "<the fuzzing session's id>"
"""Stands for the id of the session the fuzzer owns, known only once the server runs."""

# ---------------------------------------------------------------- what a client may send

_TOKEN = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
# Headers that frame the request or switch protocols: wrong values there are hypercorn's
# to refuse before emcp sees anything, and some would make the client itself misread.
_FRAMING = {"content-length", "transfer-encoding", "connection", "upgrade", "http2-settings", "expect", "te"}
_VALUES = {
    "content-type": ["application/json", "application/json; charset=utf-16", "text/plain", "multipart/form-data"],
    "accept": ["application/json, text/event-stream", "application/json", "text/event-stream", "*/*", ""],
    "mcp-protocol-version": ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28", "1999-01-01"],
    "mcp-session-id": [SESSION, SESSION, "0" * 32, ""],
    "mcp-method": ["tools/call", "initialize", "ping", "nope"],
    "mcp-name": ["sql", "query", ""],
    "origin": ["http://localhost", "http://evil.example", "null"],
    "host": ["localhost", "127.0.0.1", "evil.example", "[::1]:1"],
}
_printable = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=40).map(str.strip)

# What a well-behaved client sends; three drawn requests in four start from it, so that
# most get past the checks of content type and session to what comes after.
_PROPER = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]
_PROPER += [("mcp-session-id", SESSION)]


def _headers(proper: bool, drawn: list[tuple[str, str]]) -> list[tuple[str, str]]:
    names = {name.lower() for name, _ in drawn}
    return [header for header in _PROPER if proper and header[0] not in names] + drawn


headers = st.builds(
    _headers,
    st.sampled_from([True, True, True, False]),
    st.lists(
        st.one_of(
            st.sampled_from(sorted(_VALUES)).flatmap(
                lambda name: st.tuples(st.just(name), st.sampled_from(_VALUES[name]))
            ),
            st.tuples(st.sampled_from(sorted(_VALUES)), _printable),
            st.tuples(
                st.text(_TOKEN, min_size=1, max_size=16).filter(lambda name: name.lower() not in _FRAMING), _printable
            ),
        ),
        max_size=6,
    ).filter(lambda drawn: sum(name.lower() == "host" for name, _ in drawn) <= 1),  # HTTP/1.1 takes one Host
)
http_requests = st.tuples(headers, message_bodies)
frames = st.one_of(
    message_bodies.map(lambda body: body.decode("utf-8", "replace")), st.text(max_size=64), st.binary(max_size=256)
)


async def run_examples(strategy: st.SearchStrategy[T], send: Callable[[T], Awaitable[None]]) -> None:
    """Draw `EXAMPLES` examples in a worker thread and run `send` on each, back on this Trio loop."""

    @settings(max_examples=EXAMPLES)
    @given(strategy)
    def example(value: T) -> None:
        trio.from_thread.run(send, value)

    await trio.to_thread.run_sync(example)


def initialize(version: str) -> dict[str, Any]:
    """The fuzzing session's own handshake, as a raw client sends it."""
    return rpc("initialize", 0, protocolVersion=version, capabilities={}, clientInfo={"name": "fuzz", "version": "1"})


def wire_headers(drawn: list[tuple[str, str]], session_id: str) -> list[tuple[bytes, bytes]]:
    return [(name.encode(), value.replace(SESSION, session_id).encode("latin-1")) for name, value in drawn]


def assert_answered_in_kind(response: httpx2.Response) -> None:
    """No 5xx; a 4xx says why in JSON."""
    assert response.status_code < 500, (response.status_code, response.content[:300])
    if response.status_code >= 400:
        assert response.headers.get("content-type", "").startswith("application/json"), response.headers
        assert isinstance(orjson.loads(response.content), dict), response.content[:300]


# ---------------------------------------------------------------- the session that must not notice


BYSTANDER_CALL = {"database": "new_company", "sql": "SELECT count(*) AS n FROM devices"}


@asynccontextmanager
async def bystander(streams: AbstractAsyncContextManager[Any]) -> AsyncIterator[None]:
    """A second session making checked tool calls back to back for the body of the block.

    Each call must return the rows the first one did. Leaving the block waits for
    the call in progress, then asserts that calls went on while the body ran.
    """
    async with streams as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        first = await session.call_tool("sql", BYSTANDER_CALL)
        assert not first.is_error and first.structured_content is not None, first.content
        expected = first.structured_content["rows"]
        calls = 0
        stop = trio.Event()

        async def keep_calling() -> None:
            nonlocal calls
            while not stop.is_set():
                result = await session.call_tool("sql", BYSTANDER_CALL)
                assert not result.is_error and result.structured_content is not None, result.content
                assert result.structured_content["rows"] == expected
                calls += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_calling)
            try:
                yield
            finally:
                stop.set()
        assert calls > 0, "the second session made no call while the fuzzer ran"


# ---------------------------------------------------------------- the tests


async def test_streamable_http_posts_get_no_5xx_and_leave_other_sessions_alone(server: EmcpServer) -> None:
    url = server.url + "/mcp"
    with trio.fail_after(60):
        async with (
            bystander(streamable_http_client(url)),
            httpx2.AsyncClient(timeout=20) as http,
        ):
            accept = {"Accept": "application/json", "Content-Type": "application/json"}
            opened = await http.post(url, json=initialize("2025-11-25"), headers=accept)
            assert opened.status_code == 200, opened.text
            session_id = opened.headers["mcp-session-id"]
            initialized = rpc("notifications/initialized")
            done = await http.post(url, json=initialized, headers={**accept, "Mcp-Session-Id": session_id})
            assert done.status_code == 202

            async def send(request: tuple[list[tuple[str, str]], bytes]) -> None:
                drawn, body = request
                assert_answered_in_kind(await http.post(url, content=body, headers=wire_headers(drawn, session_id)))

            await run_examples(http_requests, send)


async def test_legacy_sse_posts_get_no_5xx_and_leave_other_sessions_alone(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with bystander(sse_client(server.sse_url)), httpx2.AsyncClient(timeout=20) as http:
            sse = await open_raw_sse(server.sse_url)
            endpoint = await sse.read_until(b"\n\n")
            path = endpoint.split(b"data: ")[1].split(b"\n")[0].decode()
            session_id = path.rsplit("/", 1)[1]

            async def drain() -> None:
                """Read the fuzzing session's stream, so replies never back up in the server."""
                while await sse.stream.receive_some():
                    pass

            async with sse.stream, trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                for message in (initialize("2024-11-05"), rpc("notifications/initialized")):
                    assert (await http.post(server.url + path, json=message)).status_code == 202

                async def send(request: tuple[str | None, list[tuple[str, str]], bytes]) -> None:
                    segment, drawn, body = request
                    target = f"{server.url}/mcp/messages/{quote(segment or session_id, safe='')}"
                    response = await http.post(target, content=body, headers=wire_headers(drawn, session_id))
                    assert_answered_in_kind(response)

                # Mostly the fuzzing session's own id; sometimes any path segment at all.
                segments = st.none() | st.none() | st.none() | st.text(min_size=1, max_size=40)
                await run_examples(st.tuples(segments, headers, message_bodies), send)
                nursery.cancel_scope.cancel()


async def test_websocket_frames_get_answers_and_leave_other_sessions_alone(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with bystander(websocket_client(server.ws_url)), open_websocket(server.ws_url) as ws:
            await ws.send_message(orjson.dumps(initialize("2025-11-25")).decode())
            assert (await next_json(ws))["id"] == 0
            await ws.send_message(orjson.dumps(rpc("notifications/initialized")).decode())
            probes = itertools.count()

            async def send(frame: str | bytes) -> None:
                """Send the frame, then a ping: its answer shows the connection took the frame and goes on."""
                await ws.send_message(frame)
                probe = f"probe-{next(probes)}"
                await ws.send_message(orjson.dumps(rpc("ping", probe)).decode())
                while (await next_json(ws)).get("id") != probe:
                    pass  # replies to the frame itself, if it was a request: checked by next_json

            await run_examples(frames, send)


async def next_json(ws: WebSocketConnection) -> dict[str, Any]:
    """The next frame from the server, which must be one JSON-RPC message as text."""
    frame = await ws.get_message()
    assert isinstance(frame, str), frame
    message = orjson.loads(frame)
    assert isinstance(message, dict) and message.get("jsonrpc") == "2.0", message
    return message


# Found by the fuzzer: urlsplit raises ValueError on an unbalanced bracket, which was a 500.
@pytest.mark.parametrize(("name", "value"), [("Host", "["), ("Host", "a]"), ("Origin", "http://[")])
async def test_a_malformed_host_or_origin_gets_a_4xx(server: EmcpServer, name: str, value: str) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient() as http:
            response = await http.post(server.url + "/mcp", content=b"{}", headers={name: value})
    assert_answered_in_kind(response)
