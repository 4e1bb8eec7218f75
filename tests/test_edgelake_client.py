"""The EdgeLake client over real sockets, against small servers that replay recorded EdgeLake bytes.

Servers listen on 127.0.0.1 port 0 and record what they saw (request heads,
when the client closed), so the tests assert on what happened on the wire:
the connection closed at once on cancel, a down node skipped, nothing sent for
a rejected request. Every test runs under `trio.fail_after`; nothing sleeps to
wait for something to happen.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import trio
import trio.testing

from emcp.sources.edgelake.client import EdgeLakeClient
from emcp.sources.edgelake.errors import HINTS, EdgeLakeError
from tests.edgelake_emulator import SHARED

EXCHANGES = {
    record["name"]: base64.b64decode(record["response_b64"])
    for record in map(json.loads, (SHARED / "exchanges.jsonl").read_text().splitlines())
}
SENSOR = [
    record["stored"]
    for record in map(json.loads, (SHARED / "dataset.jsonl").read_text().splitlines())
    if record["table"] == "sensor"
]
LIMIT = 5.0  # hard deadline of every test

Handler = Callable[[trio.SocketStream, "Server"], Awaitable[None]]


@dataclass
class Server:
    """A test server: what it received, and when its peer's close reached it."""

    url: str = ""
    heads: list[bytes] = field(default_factory=list)
    peer_closed: trio.Event = field(default_factory=trio.Event)
    peer_closed_at: float | None = None

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    async def read_head(self, stream: trio.SocketStream) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
        self.heads.append(data)
        return data

    async def wait_for_close(self, stream: trio.SocketStream) -> None:
        """Park until the client closes the connection (EOF or reset), and note when."""
        try:
            while await stream.receive_some(4096):
                pass
        except trio.BrokenResourceError:
            pass
        self.peer_closed_at = trio.current_time()
        self.peer_closed.set()

    def request_headers(self, index: int = -1) -> list[tuple[str, str]]:
        lines = self.heads[index].decode("latin-1").split("\r\n")[1:]
        return [tuple(line.split(": ", 1)) for line in lines if line]  # type: ignore[misc]


@asynccontextmanager
async def serving(*handlers: Handler) -> AsyncIterator[list[Server]]:
    """Start one server per handler; cancel them all when the test is done with them."""
    async with trio.open_nursery() as nursery:
        servers = []
        for handler in handlers:
            server = Server()

            async def handle(stream: trio.SocketStream, handler: Handler = handler, server: Server = server) -> None:
                await handler(stream, server)

            listeners = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
            server.url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
            servers.append(server)
        yield servers
        nursery.cancel_scope.cancel()


def replay(name: str) -> Handler:
    """EdgeLake's recorded reply, whatever was asked; then close, as EdgeLake does."""

    async def handler(stream: trio.SocketStream, server: Server) -> None:
        await server.read_head(stream)
        await stream.send_all(EXCHANGES[name])

    return handler


async def hang(stream: trio.SocketStream, server: Server) -> None:
    """Read the request, never answer."""
    await server.read_head(stream)
    await server.wait_for_close(stream)


async def close_at_once(stream: trio.SocketStream, server: Server) -> None:
    await server.read_head(stream)


async def not_http(stream: trio.SocketStream, server: Server) -> None:
    await server.read_head(stream)
    await stream.send_all(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")


def stall_after(name: str, size: int) -> Handler:
    """The first `size` bytes of a recorded reply, then nothing until the client goes away."""

    async def handler(stream: trio.SocketStream, server: Server) -> None:
        await server.read_head(stream)
        await stream.send_all(EXCHANGES[name][:size])
        await server.wait_for_close(stream)

    return handler


def closed_port_url() -> str:
    """A loopback port nobody listens on: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def header_end(name: str) -> int:
    return EXCHANGES[name].index(b"\r\n\r\n") + 4


# -- get / post ----------------------------------------------------------------------------------


async def test_get_sends_one_head_and_reads_the_reply() -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay("get_status_json")) as [server]:
            client = EdgeLakeClient([server.url])
            reply = await client.get("get status where format=json", headers={"destination": "local"})
    assert (reply.status, reply.reason, reply.content_type, reply.node) == (200, "OK", "text/json", server.url)
    assert reply.json() == {"assigned_name": "el-single@127.0.0.1:32048", "status": "running", "profiling": False}
    assert server.heads == [
        f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUser-Agent: AnyLog/1.23\r\n"
        "command: get status where format=json\r\ndestination: local\r\n\r\n".encode()
    ]
    assert client.statistics() == {
        "nodes": {server.url: {"requests": 1, "failures": 0, "marked_down_until": None}},
        "requests": 1,
        "failures": 0,
    }


async def test_post_and_a_text_reply() -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay("get_version")) as [server]:
            reply = await EdgeLakeClient([server.url], user_agent="Grafana/10").post("get version")
    assert reply.body == b"EdgeLake Version: 1.4.2604"
    assert server.heads[0].startswith(b"POST / HTTP/1.1\r\n")
    assert b"\r\nUser-Agent: Grafana/10\r\n" in server.heads[0]
    with pytest.raises(EdgeLakeError) as caught:
        reply.json()
    assert caught.value.code == "bad_reply"


@pytest.mark.parametrize(
    ("name", "code", "err_code"),
    [
        ("err_get_columns_unknown_table", "edgelake_error", 132),  # A: JSON in the reason phrase
        ("err_unknown_command_get", "edgelake_error", 156),  # B
        ("err_dead_peer_sql", "edgelake_error", 208),  # C: 200 with a chunked error
        ("nonsql_destination_network", "edgelake_error", 155),  # D: 200 with a raw error
        ("err_unknown_command_post", "edgelake_error", 141),
        ("no_user_agent", "empty_reply", None),  # 200 declared chunked, no bytes
    ],
)
async def test_error_replies(name: str, code: str, err_code: int | None) -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay(name)) as [server]:
            client = EdgeLakeClient([server.url])
            with pytest.raises(EdgeLakeError) as caught:
                await client.get("get something")
    error = caught.value
    assert (error.code, error.err_code, error.node) == (code, err_code, server.url)
    assert server.url in error.message
    assert error.hint == HINTS[err_code] if err_code else "User-Agent" in error.hint
    # An answer, even an error, is not a node failure.
    assert client.statistics()["failures"] == 0


async def test_max_reply_bytes() -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay("get_databases_json"), replay("get_status")) as [big, small]:
            with pytest.raises(EdgeLakeError) as caught:
                await EdgeLakeClient([big.url], max_reply_bytes=100).get("get databases where format=json")
            reply = await EdgeLakeClient([small.url], max_reply_bytes=100).get("get status")
    assert caught.value.code == "bad_reply"
    assert "larger than 100 bytes" in caught.value.message
    assert reply.body == b"el-single@127.0.0.1:32048 running"


async def test_trailing_stream_after_the_reply_is_kept() -> None:
    """Quirk 11: a second chunked stream ("Reply errors") after the first one's terminator."""
    with trio.fail_after(LIMIT):
        async with serving(replay("dead_peer_subset")) as [server]:
            reply = await EdgeLakeClient([server.url]).get('sql new_company format=json "select count(*) from t"')
    assert reply.json()["Query"] == [{"count(*)": ""}]
    assert reply.extra.startswith(b"d9\r\n")
    assert "Reply errors:" in reply.trailing
    assert "127.0.0.1|32058|  0|     208|Network connection to peer refused|" in reply.trailing


# -- open_sql ------------------------------------------------------------------------------------


async def test_open_sql_streams_batches() -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay("sql_select_all_network")) as [server]:
            client = EdgeLakeClient([server.url])
            async with client.open_sql("new_company", "select * from sensor", batch_rows=700) as rows:
                batches = [batch async for batch in rows]
    assert [len(b) for b in batches] == [700, 700, 700, 700, 200]
    assert [row for batch in batches for row in batch] == SENSOR
    assert rows.statistics == {"Count": 3000, "Time": "00:00:00", "Nodes": 1}
    assert (rows.node, rows.trailing) == (server.url, "")
    assert server.request_headers() == [
        ("Host", f"127.0.0.1:{server.port}"),
        ("User-Agent", "AnyLog/1.23"),
        ("command", 'sql new_company format=json "select * from sensor"'),
        ("destination", "network"),
    ]


async def test_open_sql_local_and_empty_result() -> None:
    with trio.fail_after(LIMIT):
        async with (
            serving(replay("sql_empty_result_local")) as [server],
            EdgeLakeClient([server.url]).open_sql(
                "new_company", "select * from sensor where value > 1000", destination=None
            ) as rows,
        ):
            batches = [batch async for batch in rows]
    assert batches == []
    assert rows.statistics == {"Count": 0, "Time": "00:00:00", "Nodes": 0}
    assert [name for name, _ in server.request_headers()] == ["Host", "User-Agent", "command"]


async def test_open_sql_partial_result_keeps_the_reply_errors() -> None:
    with trio.fail_after(LIMIT):
        async with (
            serving(replay("dead_peer_subset")) as [server],
            EdgeLakeClient([server.url]).open_sql("new_company", "select count(*) from sensor") as rows,
        ):
            batches = [batch async for batch in rows]
    assert batches == [[{"count(*)": ""}]]
    assert rows.statistics == {"Count": 1, "Time": "00:00:12", "Target Nodes": 1, "Participating Nodes": 0}
    assert "Network connection to peer refused" in rows.trailing


async def test_open_sql_error_in_the_head_raises_on_entry() -> None:
    """Framing A: the 400 head says it all; the block is never entered."""
    entered = False
    with trio.fail_after(LIMIT):
        async with serving(replay("err_unknown_table_local")) as [server]:
            with pytest.raises(EdgeLakeError) as caught:
                async with EdgeLakeClient([server.url]).open_sql("new_company", "select * from nosuch"):
                    entered = True
    assert not entered
    assert (caught.value.code, caught.value.err_code) == ("edgelake_error", 29)
    assert "call list_tables" in caught.value.hint
    assert "Table 'nosuch' in DBMS 'new_company' not defined" in caught.value.message


@pytest.mark.parametrize(
    ("name", "code", "err_code"),
    [
        ("err_unknown_table_network", "edgelake_error", 45),  # C
        ("err_sql_syntax_network", "edgelake_error", 155),  # D
        ("err_join_network", "edgelake_error", 134),
        ("sql_count_now_days_local", "empty_reply", None),
        ("sql_format_table_network", "bad_reply", None),  # not JSON
    ],
)
async def test_open_sql_error_in_the_body_raises_before_any_batch(name: str, code: str, err_code: int | None) -> None:
    batches = []
    with trio.fail_after(LIMIT):
        async with (
            serving(replay(name)) as [server],
            EdgeLakeClient([server.url]).open_sql("new_company", "select 1 from sensor") as rows,
        ):
            with pytest.raises(EdgeLakeError) as caught:
                async for batch in rows:
                    batches.append(batch)
    assert batches == []
    assert (caught.value.code, caught.value.err_code, caught.value.node) == (code, err_code, server.url)


async def test_open_sql_cut_short_is_an_error_after_the_rows_it_had() -> None:
    data = EXCHANGES["sql_select_limit5_network"]

    async def cut(stream: trio.SocketStream, server: Server) -> None:
        await server.read_head(stream)
        await stream.send_all(data[:-80])

    batches = []
    with trio.fail_after(LIMIT):
        async with (
            serving(cut) as [server],
            EdgeLakeClient([server.url]).open_sql("new_company", "select * from sensor", batch_rows=2) as rows,
        ):
            with pytest.raises(EdgeLakeError) as caught:
                async for batch in rows:
                    batches.append(batch)
    assert caught.value.code == "bad_reply"
    assert batches == [SENSOR[:2], SENSOR[2:4]]


async def test_open_sql_connection_reset_mid_stream() -> None:
    data = EXCHANGES["sql_select_limit5_network"]
    first_rows = header_end("sql_select_limit5_network") + 300
    reset = trio.Event()

    async def reset_after_first_rows(stream: trio.SocketStream, server: Server) -> None:
        await server.read_head(stream)
        await stream.send_all(data[:first_rows])
        await reset.wait()
        # Linger 0: the close that follows sends a reset, not a FIN.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    with trio.fail_after(LIMIT):
        async with (
            serving(reset_after_first_rows) as [server],
            EdgeLakeClient([server.url]).open_sql("new_company", "select * from sensor", batch_rows=1) as rows,
        ):
            assert await rows.__anext__() == [SENSOR[0]]
            reset.set()
            with pytest.raises(EdgeLakeError) as caught:
                async for _ in rows:
                    pass
    assert caught.value.code == "bad_reply"
    assert "reset the connection" in caught.value.message


async def test_a_stalled_stream_times_out_a_slow_one_does_not() -> None:
    data = EXCHANGES["sql_select_limit5_network"]
    pieces = [data[i : i + 150] for i in range(0, len(data), 150)]

    async def slow(stream: trio.SocketStream, server: Server) -> None:
        await server.read_head(stream)
        for piece in pieces:  # pacing, not waiting: the whole reply takes longer than the timeout
            await stream.send_all(piece)
            await trio.sleep(0.05)

    timeout = 0.25
    with trio.fail_after(LIMIT):
        stall = stall_after("sql_select_limit5_network", header_end("sql_select_limit5_network") + 400)
        async with serving(stall, slow) as [stalled, paced]:
            client = EdgeLakeClient([stalled.url], timeout=timeout)
            got = []
            async with client.open_sql("new_company", "select * from sensor", batch_rows=1) as rows:
                with pytest.raises(EdgeLakeError) as caught:
                    async for batch in rows:
                        got.extend(batch)
                        started = trio.current_time()
            waited = trio.current_time() - started
            await stalled.peer_closed.wait()

            start = trio.current_time()
            async with EdgeLakeClient([paced.url], timeout=timeout).open_sql("new_company", "select *") as rows:
                slow_rows = [row async for batch in rows for row in batch]
            took = trio.current_time() - start
    assert got == SENSOR[:2]
    assert (caught.value.code, caught.value.node) == ("timeout", stalled.url)
    assert f"{timeout:g} s" in caught.value.message
    assert timeout <= waited < timeout + 1.0
    assert slow_rows == SENSOR[:5]
    assert took > timeout


async def test_cancel_mid_stream_closes_the_connection_at_once() -> None:
    data = EXCHANGES["sql_select_all_network"]
    first_rows = data.index(b"\r\n,{", header_end("sql_select_all_network") + 2000)
    with trio.fail_after(LIMIT):
        async with serving(stall_after("sql_select_all_network", first_rows)) as [server]:
            client = EdgeLakeClient([server.url])
            with trio.CancelScope() as scope:
                async with client.open_sql("new_company", "select * from sensor", batch_rows=1) as rows:
                    async for _ in rows:
                        cancelled_at = trio.current_time()
                        scope.cancel()
            await server.peer_closed.wait()
    assert scope.cancelled_caught
    assert server.peer_closed_at is not None
    assert server.peer_closed_at - cancelled_at < 0.05
    assert not [task for task in all_tasks() if "emcp/sources/edgelake" in task.coro.cr_code.co_filename]


async def test_cancel_while_blocked_in_a_read() -> None:
    """The cancel arrives while the iteration waits on the socket, from outside the task."""
    with trio.fail_after(LIMIT):
        async with serving(stall_after("sql_select_all_network", 1000)) as [server]:
            client = EdgeLakeClient([server.url])
            first = trio.Event()

            async def consume(task_status: trio.TaskStatus[trio.CancelScope]) -> None:
                with trio.CancelScope() as scope:
                    task_status.started(scope)
                    async with client.open_sql("new_company", "select * from sensor", batch_rows=1) as rows:
                        async for _ in rows:
                            first.set()

            async with trio.open_nursery() as nursery:
                scope = await nursery.start(consume)
                await first.wait()
                await trio.testing.wait_all_tasks_blocked()
                cancelled_at = trio.current_time()
                scope.cancel()
                await server.peer_closed.wait()
    assert server.peer_closed_at is not None
    assert server.peer_closed_at - cancelled_at < 0.05


def all_tasks() -> list[trio.lowlevel.Task]:
    found = []
    pending = [trio.lowlevel.current_root_task()]
    while pending:
        task = pending.pop()
        found.append(task)
        pending.extend(child for nursery in task.child_nurseries for child in nursery.child_tasks)
    return found


# -- failover and deadlines ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "reason"),
    [
        (None, "Connection refused"),
        (hang, "no response head within 0.3 s"),
        (close_at_once, "closed before a response head"),
        (not_http, "not an HTTP response"),
    ],
)
async def test_failover_to_the_next_node(first: Handler | None, reason: str) -> None:
    with trio.fail_after(LIMIT):
        async with serving(replay("get_status"), *([first] if first else [])) as servers:
            good = servers[0]
            bad_url = servers[1].url if first else closed_port_url()
            client = EdgeLakeClient([bad_url, good.url], timeout=0.3, retry_down_after=60)
            start = trio.current_time()
            reply = await client.get("get status")
            stats = client.statistics()
            # The down node is skipped while its mark lasts.
            await client.get("get status")
            if first is hang:
                await servers[1].peer_closed.wait()  # the abandoned attempt was closed
            # Alone, the bad node's failure is reported with its reason.
            with pytest.raises(EdgeLakeError) as caught:
                await EdgeLakeClient([bad_url], timeout=0.3).get("get status")
    assert caught.value.code == ("timeout" if first is hang else "node_unreachable")
    assert f"{bad_url}: " in caught.value.message
    assert reason in caught.value.message
    assert reply.node == good.url
    assert stats["nodes"][bad_url]["failures"] == 1
    assert stats["nodes"][bad_url]["marked_down_until"] >= start + 60
    final = client.statistics()
    assert final["nodes"][bad_url]["requests"] == 1
    assert final["nodes"][good.url] == {"requests": 2, "failures": 0, "marked_down_until": None}
    assert (final["requests"], final["failures"]) == (3, 1)
    assert len(good.heads) == 2


async def test_every_node_down() -> None:
    first, second = closed_port_url(), closed_port_url()
    client = EdgeLakeClient([first, second], retry_down_after=60)
    with trio.fail_after(LIMIT):
        for _ in range(2):  # all marked down after the first call: all tried again anyway
            with pytest.raises(EdgeLakeError) as caught:
                await client.get("get status")
            error = caught.value
            assert error.code == "node_unreachable"
            assert f"{first}: Connection refused" in error.message
            assert f"{second}: Connection refused" in error.message
    assert client.statistics()["nodes"][first]["requests"] == 2
    assert client.statistics()["nodes"][second]["requests"] == 2


async def test_a_node_back_up_is_cleared() -> None:
    calls = 0

    async def down_then_up(stream: trio.SocketStream, server: Server) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await close_at_once(stream, server)
        else:
            await replay("get_status")(stream, server)

    with trio.fail_after(LIMIT):
        async with serving(down_then_up) as [server]:
            client = EdgeLakeClient([server.url], retry_down_after=100)
            with pytest.raises(EdgeLakeError):
                await client.get("get status")
            marked = client.statistics()["nodes"][server.url]["marked_down_until"]
            await client.get("get status")  # the only node, still marked down: tried anyway
    assert marked is not None
    assert client.statistics()["nodes"][server.url] == {"requests": 2, "failures": 1, "marked_down_until": None}


async def test_deadline_against_a_node_that_never_answers() -> None:
    with trio.fail_after(LIMIT):
        async with serving(hang) as [server]:
            client = EdgeLakeClient([server.url], timeout=0.2)
            start = trio.current_time()
            with pytest.raises(EdgeLakeError) as caught:
                await client.get("get status")
            took = trio.current_time() - start
            await server.peer_closed.wait()
    assert (caught.value.code, caught.value.node) == ("timeout", server.url)
    assert f"{server.url}: no response head within 0.2 s" in caught.value.message
    assert 0.2 <= took < 1.0


async def test_no_failover_once_a_head_came() -> None:
    """The request may have run: a stall after the head is a timeout, not a reason to ask another node."""
    with trio.fail_after(LIMIT):
        async with serving(stall_after("get_databases", header_end("get_databases") + 10), replay("get_status")) as [
            stalled,
            other,
        ]:
            client = EdgeLakeClient([stalled.url, other.url], timeout=0.2)
            with pytest.raises(EdgeLakeError) as caught:
                await client.get("get databases")
    assert caught.value.code == "timeout"
    assert "did not finish its reply within 0.2 s" in caught.value.message
    assert other.heads == []
    assert client.statistics()["failures"] == 0


# -- refused before sending ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("database", "sql", "destination", "hint"),
    [
        ("new_company", 'select * from sensor where device = "dev-a"', "network", "single quotes"),
        ("new_company", "select *\nfrom sensor", "network", "one line"),
        ("new_company", "select * from sensor\r\nX-Injected: 1", "network", "one line"),
        ("new_company", "select * from sensor\x00", "network", "one line"),
        ("new_company", "select * from sensor where device = '\u20ac'", "network", "latin-1"),
        ("new-company", "select * from sensor", "network", "list_databases"),
        ("new_company; drop", "select * from sensor", "network", "list_databases"),
        ('db" and x', "select * from sensor", "network", "list_databases"),
        ("new_company", "select * from sensor", "network\r\nX: 1", "one line"),
    ],
)
async def test_unsafe_sql_is_refused_before_connecting(database: str, sql: str, destination: str, hint: str) -> None:
    client = EdgeLakeClient([closed_port_url()])
    with trio.fail_after(LIMIT), pytest.raises(EdgeLakeError) as caught:
        async with client.open_sql(database, sql, destination=destination):
            pass
    assert caught.value.code == "bad_request"
    assert hint in caught.value.hint
    assert client.statistics()["requests"] == 0


@pytest.mark.parametrize(
    ("command", "headers"),
    [
        ("get status\r\nX: 1", {}),
        ("get status", {"timeout": "5\n"}),
        ("get status", {"bad name": "x"}),
        ("get status", {"command": "get version"}),
        ("get status", {"Host": "elsewhere"}),
        ("get status \u4e2d", {}),
    ],
)
async def test_unsafe_headers_are_refused_before_connecting(command: str, headers: dict[str, str]) -> None:
    client = EdgeLakeClient([closed_port_url()])
    with trio.fail_after(LIMIT), pytest.raises(EdgeLakeError) as caught:
        await client.get(command, headers=headers)
    assert caught.value.code == "bad_request"
    assert client.statistics()["requests"] == 0


async def test_latin1_text_travels_as_latin1() -> None:
    with trio.fail_after(LIMIT):
        async with (
            serving(replay("sql_empty_result_network")) as [server],
            EdgeLakeClient([server.url]).open_sql("d", "select * from t where name = 'café'") as rows,
        ):
            assert [batch async for batch in rows] == []
    assert "command: sql d format=json \"select * from t where name = 'café'\"\r\n".encode("latin-1") in server.heads[0]


@pytest.mark.parametrize(
    "nodes",
    [
        [],
        ["127.0.0.1:32049"],
        ["https://127.0.0.1:32049"],
        ["http://127.0.0.1"],
        ["http://127.0.0.1:99999"],
        ["http://127.0.0.1:32049/api"],
        ["http://user@127.0.0.1:32049"],
        ["http://:32049"],
        ["http://127.0.0.1:32049", "http://127.0.0.1:32049/"],
    ],
)
def test_node_urls_are_validated(nodes: list[str]) -> None:
    with pytest.raises(ValueError, match="EdgeLake node"):
        EdgeLakeClient(nodes)


@pytest.mark.parametrize(
    "options",
    [{"user_agent": "AnyLog/1.23\r\nX: 1"}, {"user_agent": "Änylog"}, {"timeout": 0}, {"max_reply_bytes": 0}],
)
def test_client_options_are_validated(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="EdgeLake"):
        EdgeLakeClient(["http://127.0.0.1:32049"], **options)


async def test_batch_rows_is_validated() -> None:
    with pytest.raises(ValueError, match="batch_rows"):
        async with EdgeLakeClient(["http://127.0.0.1:32049"]).open_sql("d", "select 1", batch_rows=0):
            pass


def test_node_urls_are_normalised() -> None:
    client = EdgeLakeClient(["http://LOCALHOST:32049/", "http://[::1]:32049"])
    assert client.nodes == ["http://localhost:32049", "http://[::1]:32049"]


def test_statistics_is_json_able() -> None:
    client = EdgeLakeClient(["http://127.0.0.1:32049"])
    stats: dict[str, Any] = client.statistics()
    assert json.loads(json.dumps(stats)) == stats
