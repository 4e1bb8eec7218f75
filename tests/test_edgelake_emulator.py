"""The EdgeLake emulator is only useful if it is faithful: these tests hold it to the recorded bytes.

Every recorded exchange is replayed over a real socket and compared byte for
byte; every recorded reply the generator can build is rebuilt from the dataset
and compared byte for byte (only `Date` may differ); the fault modes are checked
from both ends of the socket.
"""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import pytest
import trio

from tests.edgelake_emulator import (
    LARGE_TABLE,
    SHARED,
    Connection,
    EdgeLakeEmulator,
    EdgeLakeNode,
    Fault,
    Request,
    load_exchanges,
    open_emulator,
    raw_request,
)

EXCHANGES = load_exchanges()

# Recorded replies only replay can give (the generator counts these requests as
# unemulated); the generator rebuilds every other one (fixed node state such as
# `get status` is resent verbatim for its command, whatever optional headers say).
REPLAY_ONLY = {
    "get_status_explicit_peer": "explicit peer destinations are not emulated",
    "err_dead_peer_sql": "explicit peer destinations are not emulated",
    "dead_peer_subset": "explicit peer destinations are not emulated",
    "sql_increments_day_network": "EdgeLake's increments() is not emulated",
    "sql_format_table_network": "format=table is not emulated",
}
GENERATED = sorted(set(EXCHANGES) - set(REPLAY_ONLY))

ANYLOG = "AnyLog/1.23"
# Every row the node held, as `select *` returns it.
DATASET = [json.loads(line) for line in (SHARED / "dataset.jsonl").read_text().splitlines()]
SENSOR = [row["stored"] for row in DATASET if row["table"] == "sensor"]


def _without_date(response: bytes) -> bytes:
    return re.sub(rb"\r\nDate: [^\r\n]*\r\n", b"\r\nDate: -\r\n", response, count=1)


def _request(
    command: str | None,
    *,
    method: str = "GET",
    destination: str | None = None,
    user_agent: str | None = ANYLOG,
    body: bytes = b"",
    extra: dict[str, str] | None = None,
) -> bytes:
    lines = [f"{method} / HTTP/1.1", "Host: 127.0.0.1"]
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    if command is not None:
        lines.append(f"command: {command}")
    if destination is not None:
        lines.append(f"destination: {destination}")
    lines += [f"{name}: {value}" for name, value in (extra or {}).items()]
    if body:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _sql(select: str, *, options: str = "format=json") -> str:
    return f'sql new_company {options} "{select}"'


async def _connect(url: str, *, receive_buffer: int | None = None) -> trio.SocketStream:
    """A client socket; a small receive buffer (set before connecting) caps what the kernel absorbs."""
    parts = urlsplit(url)
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        if receive_buffer is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        await sock.connect((parts.hostname, parts.port))
    except BaseException:
        sock.close()
        raise
    return trio.SocketStream(sock)


async def _read_to_eof(stream: trio.SocketStream, received: bytes = b"") -> bytes:
    data = bytearray(received)
    while chunk := await stream.receive_some():
        data += chunk
    return bytes(data)


async def _ask(url: str, raw: bytes) -> bytes:
    async with await _connect(url) as stream:
        await stream.send_all(raw)
        return await _read_to_eof(stream)


def _split(response: bytes) -> tuple[bytes, bytes]:
    head, _, payload = response.partition(b"\r\n\r\n")
    return head, payload


def _dechunk(payload: bytes) -> list[bytes]:
    """The chunks of a complete chunked body; fails on anything else (cut, trailing bytes)."""
    chunks: list[bytes] = []
    position = 0
    while True:
        end = payload.index(b"\r\n", position)
        size = int(payload[position:end], 16)
        data = payload[end + 2 : end + 2 + size]
        assert len(data) == size and payload[end + 2 + size : end + 4 + size] == b"\r\n"
        position = end + 4 + size
        if size == 0:
            assert position == len(payload), "bytes after the last chunk"
            return chunks
        chunks.append(data)


def _query_rows(response: bytes) -> tuple[list[dict[str, object]], dict[str, object]]:
    head, payload = _split(response)
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nTransfer-Encoding: chunked\r\n" in head
    document = json.loads(b"".join(_dechunk(payload)))
    return document.get("Query", []), document["Statistics"][0]


def _last(emulator: EdgeLakeEmulator) -> Connection:
    return emulator.connections[-1]


# ---------------------------------------------------------------- replay and generator fidelity


@pytest.mark.parametrize("name", sorted(EXCHANGES))
async def test_replays_every_recorded_exchange_byte_for_byte(name: str) -> None:
    exchange = EXCHANGES[name]
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            received = await _ask(emulator.url, raw_request(exchange))
            await _last(emulator).closed.wait()
    assert received == exchange.response
    connection = _last(emulator)
    assert (connection.replayed, connection.generated) == (name, None)
    assert connection.method == exchange.method
    assert emulator.statistics()["replays"] == {name: 1}


@pytest.mark.parametrize("name", GENERATED)
def test_generator_rebuilds_the_recorded_reply(name: str) -> None:
    """Bypassing replay, the reply built from the dataset and recorded formats is the recorded one."""
    exchange = EXCHANGES[name]
    reply = EdgeLakeNode().respond(Request.from_exchange(exchange), replay=False)
    assert reply.generated not in (None, "unemulated")
    assert _without_date(reply.to_bytes()) == _without_date(exchange.response)


@pytest.mark.parametrize("name", sorted(REPLAY_ONLY))
def test_what_only_replay_answers_is_counted_as_unemulated(name: str) -> None:
    reply = EdgeLakeNode().respond(Request.from_exchange(EXCHANGES[name]), replay=False)
    assert reply.generated == "unemulated"
    assert reply.replayed == "err_unknown_command_get"


# ---------------------------------------------------------------- generated replies over the wire


async def test_unrecorded_group_by_is_answered_from_the_dataset_in_the_consolidated_framing() -> None:
    select = (
        "select device, max(value) as top, count(*) as n from sensor where value > 25 group by device order by device"
    )
    expected: dict[str, dict[str, object]] = {}
    for row in SENSOR:
        if row["value"] > 25:
            entry = expected.setdefault(row["device"], {"device": row["device"], "top": row["value"], "n": 0})
            entry["top"] = max(entry["top"], row["value"])
            entry["n"] += 1
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            response = await _ask(emulator.url, _request(_sql(select), destination="network"))
    rows, statistics = _query_rows(response)
    assert rows == [expected[device] for device in sorted(expected)]
    assert statistics == {"Count": len(expected), "Time": "00:00:00", "Nodes": 1}
    chunks = _dechunk(_split(response)[1])
    assert chunks[0].startswith(b'{"Query":[{"device":"dev-a","top":')  # compact, one row per chunk
    assert all(chunk.startswith(b',{"device":') for chunk in chunks[1:-1])
    assert _last(emulator).generated == "sql"


async def test_rows_with_timestamps_come_back_spaced_and_now_is_the_recorded_instant() -> None:
    select = "select timestamp, device from sensor where timestamp >= NOW() - 12 hours order by timestamp"
    # NOW() is the instant in the Date header of the recorded NOW() query.
    head = EXCHANGES["sql_count_now_days_network"].head.decode("latin-1")
    now = parsedate_to_datetime(re.search(r"\r\nDate: ([^\r]+)", head).group(1)).replace(tzinfo=None)
    since = f"{now - timedelta(hours=12):%Y-%m-%d %H:%M:%S}"
    expected = sorted(
        ({"timestamp": row["timestamp"], "device": row["device"]} for row in SENSOR if row["timestamp"] >= since),
        key=lambda row: row["timestamp"],
    )
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            response = await _ask(emulator.url, _request(_sql(select), destination="network"))
    rows, statistics = _query_rows(response)
    assert expected and rows == expected and statistics["Count"] == len(expected)
    assert _dechunk(_split(response)[1])[0].startswith(b'{"Query": [{"timestamp": "')


async def test_sql_errors_substitute_the_query_into_the_recorded_wording() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            column = await _ask(emulator.url, _request(_sql("select device, speed from sensor"), destination="network"))
            table = await _ask(emulator.url, _request(_sql("select * from nowhere"), destination="network"))
            local = await _ask(emulator.url, _request(_sql("select speed from events")))
    assert json.loads(b"".join(_dechunk(_split(column)[1]))) == {
        "method": "get",
        "node": "127.0.0.1",
        "err_code": 46,
        "err_text": "Failed to parse SQL statement",
        "local_msg": "Non supported SQL: Column 'speed' is not recognized in table: new_company.sensor",
    }
    assert _without_date(table) == _without_date(EXCHANGES["err_unknown_table_network"].response)
    status_line = local.split(b"\r\n", 1)[0]
    assert status_line.startswith(b"HTTP/1.1 400 {") and b"new_company.events" in status_line


async def test_post_json_body_runs_the_command_as_if_sent_by_get() -> None:
    body = json.dumps({"command": _sql("select count(*) from events"), "destination": "network"}).encode()
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            response = await _ask(emulator.url, _request(None, method="POST", body=body))
    rows, statistics = _query_rows(response)
    assert rows == [{"count(*)": 300}] and statistics["Nodes"] == 1
    assert _last(emulator).command == _sql("select count(*) from events")


async def test_blockchain_get_filters_the_recorded_policies() -> None:
    clusters = json.loads(EXCHANGES["blockchain_get_cluster"].payload)
    sensor_cluster = [policy for policy in clusters if policy["cluster"].get("source")][1]
    commands = {
        "blockchain get cluster where status = active": clusters,
        f"blockchain get cluster where id = {sensor_cluster['cluster']['id']} and status = active": [sensor_cluster],
        "blockchain get operator where port = 32048 and company = 'Test Company'": json.loads(
            EXCHANGES["blockchain_get_operator"].payload
        ),
        "blockchain get operator where port = 1": [],
        "blockchain get query": [],
        "blockchain get table where format=mcp": [],  # README quirk 5: the word is a policy filter
    }
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            for command, expected in commands.items():
                response = await _ask(emulator.url, _request(command))
                head, payload = _split(response)
                assert b"\r\nContent-Type: text/json\r\n" in head
                assert f"\r\nContent-Length: {len(payload)}\r\n".encode() in head
                assert json.loads(payload) == expected, command
                assert payload == json.dumps(expected).encode()  # the recorded list spacing
            names = await _ask(
                emulator.url, _request("blockchain get (table) where dbms = new_company bring.json.unique [*][dbms]")
            )
    assert _split(names)[1] == b'[{"dbms": "new_company"}]'
    assert emulator.statistics()["generated"] == {"blockchain": len(commands) + 1}


async def test_data_nodes_and_columns_are_filtered_from_the_recordings() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            nodes = await _ask(
                emulator.url, _request("get data nodes where dbms=new_company and table=sensor and format=json")
            )
            columns = await _ask(
                emulator.url,
                _request("get columns where dbms=new_company and table=events and format=mcp and sys_col=false"),
            )
            unknown = await _ask(
                emulator.url, _request("get columns where dbms=new_company and table=x and format=json")
            )
    assert [row["Table"] for row in json.loads(_split(nodes)[1])] == ["sensor"]
    assert json.loads(_split(columns)[1]) == [
        {"name": "timestamp", "type": "timestamp without time zone"},
        {"name": "device", "type": "char(5)"},
        {"name": "level", "type": "char(5)"},
        {"name": "message", "type": "character varying"},
    ]
    assert unknown == EXCHANGES["err_get_columns_unknown_table"].response


async def test_foreign_user_agent_unknown_and_unemulated_commands_get_recorded_replies() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            foreign = await _ask(emulator.url, _request("get status", user_agent="python-httpx/0.28.1"))
            missing = await _ask(emulator.url, _request(_sql("select 1 from sensor"), user_agent=None))
            unknown = await _ask(emulator.url, _request("reset everything", method="POST"))
            unemulated = await _ask(emulator.url, _request(_sql("select lower(device) from sensor")))
            timeout = await _ask(emulator.url, _request("get version", extra={"timeout": "20"}))
    assert foreign == EXCHANGES["other_user_agent"].response
    assert missing == EXCHANGES["no_user_agent"].response
    assert unknown == EXCHANGES["err_unknown_command_post"].response
    assert unemulated == EXCHANGES["err_unknown_command_get"].response
    assert timeout == EXCHANGES["get_version"].response
    assert emulator.statistics()["generated"] == {"user_agent": 2, "unknown_command": 1, "unemulated": 1, "fixed": 1}
    assert emulator.statistics()["replays"] == {}


# ---------------------------------------------------------------- faults


async def test_slow_reply_notices_the_client_hanging_up_at_once() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            emulator.fault = Fault.SLOW
            stream = await _connect(emulator.url)
            await stream.send_all(_request("get status"))
            await emulator.watch.wait_until(lambda: bool(emulator.connections) and _last(emulator).method is not None)
            connection = _last(emulator)
            hung_up = trio.current_time()
            await stream.aclose()
            await connection.closed.wait()
    assert connection.client_closed_at is not None
    assert connection.client_closed_at - hung_up < 0.05
    assert connection.bytes_sent == 0 and connection.fault is Fault.SLOW
    assert emulator.statistics()["client_closes"] == 1


async def test_slow_reply_arrives_after_slow_seconds() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            emulator.fault = Fault.SLOW
            emulator.slow_seconds = 0.2
            started = trio.current_time()
            response = await _ask(emulator.url, _request("get status"))
    assert trio.current_time() - started >= 0.2
    assert response == EXCHANGES["get_status"].response
    assert _last(emulator).client_closed_at is None


def _parse(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    request_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return request_line.split()[0], headers, body


async def test_dead_mid_body_cuts_the_reply_after_the_first_rows() -> None:
    request = _request(_sql("select * from sensor limit 6"), destination="network")
    full = EdgeLakeNode().respond(Request(*_parse(request)), replay=False).to_bytes()
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            emulator.fault = Fault.DEAD_MID_BODY
            cut = await _ask(emulator.url, request)
            blockchain = await _ask(emulator.url, raw_request(EXCHANGES["blockchain_get_table"]))
    assert full.startswith(cut) and len(cut) < len(full)
    head, payload = _split(cut)
    assert head == _split(full)[0]
    assert payload.count(b"\r\n,{") == 3 and not payload.endswith(b"0\r\n\r\n")  # rows 1-4 of 6, then nothing
    with pytest.raises(ValueError):
        _dechunk(payload)
    recorded = EXCHANGES["blockchain_get_table"].response
    assert recorded.startswith(blockchain) and len(_split(blockchain)[1]) == len(_split(recorded)[1]) // 2


async def test_refused_connections_then_listening_again_on_the_same_port() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            url = emulator.url
            await emulator.refuse_connections()
            with pytest.raises(OSError):
                await _connect(url)
            assert emulator.statistics()["listening"] is False
            await emulator.accept_connections()
            assert emulator.url == url
            assert await _ask(url, _request("get status")) == EXCHANGES["get_status"].response
            emulator.fault = Fault.REFUSE
            with pytest.raises(OSError):
                await _connect(url)


async def test_large_result_stalls_while_the_client_does_not_read_and_then_delivers_every_row() -> None:
    with trio.fail_after(30):
        async with open_emulator() as emulator:
            emulator.large_rows = 100_000
            stream = await _connect(emulator.url, receive_buffer=64 * 1024)
            await stream.send_all(_request(_sql(f"select * from {LARGE_TABLE}"), destination="network"))
            await emulator.watch.wait_until(lambda: emulator.connections and _last(emulator).bytes_sent > 0)
            connection = _last(emulator)
            # Not reading: the emulator must come to a stop once the socket buffers are full. A stop
            # is a quarter second without progress on the watch (progress wakes it at once).
            while True:
                seen = connection.bytes_sent
                with trio.move_on_after(0.25) as idle:
                    await emulator.watch.wait_until(lambda: connection.bytes_sent > seen)  # noqa: B023
                if idle.cancelled_caught:
                    break
            stalled_at = connection.bytes_sent
            response = await _read_to_eof(stream)
            await stream.aclose()
    assert stalled_at < len(response) // 3
    assert connection.bytes_sent == len(response) and connection.client_closed_at is None
    chunks = _dechunk(_split(response)[1])
    assert len(chunks) == 100_000 + 1
    assert chunks[-1] == b'],\n"Statistics":[{"Count": 100000,"Time":"00:00:00","Nodes": 1}]}'
    first = json.loads(chunks[0].removeprefix(b'{"Query":['))
    last = json.loads(chunks[-2].removeprefix(b","))
    assert first == SENSOR[0]
    assert last == {**SENSOR[(100_000 - 1) % len(SENSOR)], "row_id": 100_000}


async def test_client_hanging_up_mid_stream_stops_the_reply() -> None:
    with trio.fail_after(30):
        async with open_emulator() as emulator:
            emulator.large_rows = 1_000_000
            stream = await _connect(emulator.url, receive_buffer=64 * 1024)
            await stream.send_all(_request(_sql(f"select * from {LARGE_TABLE} limit 500000"), destination="network"))
            await stream.receive_some()  # the head and the first rows are flowing
            connection = _last(emulator)
            hung_up = trio.current_time()
            await stream.aclose()
            await connection.closed.wait()
            sent = connection.bytes_sent
    assert connection.client_closed_at is not None and connection.client_closed_at - hung_up < 0.05
    assert sent < 10 * 1024 * 1024  # nowhere near the ~80 MB the whole reply would take


async def test_statistics_count_connections_replays_and_generated_replies() -> None:
    with trio.fail_after(10):
        async with open_emulator() as emulator:
            await _ask(emulator.url, raw_request(EXCHANGES["get_status"]))
            await _ask(emulator.url, raw_request(EXCHANGES["get_status"]))
            await _ask(
                emulator.url,
                _request(_sql("select count(*) from sensor where device = 'dev-a'"), destination="network"),
            )
            await emulator.watch.wait_until(lambda: emulator.statistics()["open"] == 0)
            statistics = emulator.statistics()
    assert statistics == {
        "accepted": 3,
        "open": 0,
        "replays": {"get_status": 2},
        "generated": {"sql": 1},
        "client_closes": 0,
        "listening": True,
    }
