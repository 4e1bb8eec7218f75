"""Figures for the block stream: a 1 GiB result via the HTTP download and via resources/read.

    .venv/bin/python benchmarks/blocks.py [--copies 23] [--rounds 2] [--data-dir DIR]

For each path: MB/s end to end and the server's peak RSS growth (sampled every
50 ms from /proc), against a baseline that streams the same rows from the same
SQLite source straight to a socket with no blocks (one send_all per batch, the
same row encoder, batch size, malloc and GC tuning as emcp) in a process of
its own. The client side reads and discards, on a raw socket where it can, so
the figures are the server's. The baseline, the download and the raw
resources/read take turns `--rounds` times: each is set against its own
round's baseline as well as best against best, as a shared machine drifts by
more than the differences measured.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError
from procstat import cpu_seconds, peak_rss_kib, reset_peak_rss, rss_kib
from rawws import RawWebSocket

from emcp.allocator import tune_for_blocks
from emcp.blocks.encoding import header_line, json_lines
from emcp.client import websocket_client
from emcp.collector import tune_collector
from emcp.settings import Settings
from emcp.sources.demo import ensure_demo_data
from emcp.sources.sqlite import SqliteSource


def big_sql(copies: int, limit: int | None = None) -> str:
    """The sensor table `copies` times over (a cross join), cut to `limit` rows when given."""
    return (
        f"WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {copies}) "
        "SELECT s.row_id, s.timestamp, s.device, s.value, s.unit, k.n FROM sensor AS s CROSS JOIN k"
        + ("" if limit is None else f" LIMIT {limit}")
    )


class RssSampler:
    """A process's peak RSS from now on: its VmHWM reset here when the kernel allows, and RSS as sampled."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.exact = reset_peak_rss(pid)
        self.baseline = rss_kib(pid)
        self.peak = self.baseline

    def sample(self) -> None:
        """Take one reading now (also the last one, before the process may be gone)."""
        self.peak = max(self.peak, rss_kib(self.pid), peak_rss_kib(self.pid) if self.exact else 0)

    @property
    def growth_mib(self) -> float:
        return (self.peak - self.baseline) / 1024


@dataclass
class Transfer:
    """One large result moved: bytes, wall time, and what it cost the server; `failure` says why it stopped short."""

    size: int
    elapsed: float
    server_cpu_s: float
    rss_growth_mib: float
    failure: str = ""


async def spawn(argv: list[str], ready: bytes) -> tuple[trio.Process, bytes]:
    process = await trio.lowlevel.open_process(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    seen = b""
    while ready not in seen:
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError(f"{argv[:3]} exited: {seen.decode()}")
        seen += chunk
    return process, seen


async def drain(host: str, port: int, request: bytes, end: bytes | None = None) -> int:
    """Send `request`, read to EOF (or until the bytes end with `end`), return the bytes received.

    `end` is for HTTP on a kept-alive connection: the end of the chunked body is the end of the download.
    """
    stream = await trio.open_tcp_stream(host, port)
    await stream.send_all(request)
    total = 0
    tail = b""
    while chunk := await stream.receive_some(1 << 20):
        total += len(chunk)
        tail = (tail + chunk)[-8:]
        if end is not None and tail.endswith(end):
            break
    await stream.aclose()
    return total


async def measure(
    label: str,
    pid: int,
    job: Callable[[], Awaitable[int]],
    time_cap_s: float = math.inf,
    rss_cap_mib: float = math.inf,
) -> Transfer:
    """Run `job` (which returns the bytes it received) and print and return what it took.

    A job that outlasts `time_cap_s` seconds, or whose server grows by more than
    `rss_cap_mib`, is stopped there, and the figures at that moment are
    returned with the reason in `failure` (the caller decides what becomes of the server).
    """
    sampler = RssSampler(pid)
    cpu_before = cpu_seconds(pid)
    size, failure = 0, f"no reply within {time_cap_s:.0f} s"
    job_scope = trio.CancelScope()

    async def watch() -> None:
        nonlocal failure
        while sampler.growth_mib <= rss_cap_mib:
            sampler.sample()
            await trio.sleep(0.05)
        failure = f"server RSS grew past {rss_cap_mib:.0f} MiB"
        job_scope.cancel()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(watch)
        started = time.perf_counter()
        with job_scope, trio.move_on_after(time_cap_s):
            size = await job()
            failure = ""
        elapsed = time.perf_counter() - started
        sampler.sample()
        nursery.cancel_scope.cancel()
    cpu = cpu_seconds(pid) - cpu_before
    rate = size / elapsed / 1e6
    print(
        f"{label:<30} {size / 2**30:5.2f} GiB in {elapsed:5.1f} s = {rate:6.1f} MB/s   "
        f"server CPU {cpu:5.1f} s   server RSS growth {sampler.growth_mib:5.1f} MiB"
        + (f"   FAILED: {failure}" if failure else "")
    )
    return Transfer(size, elapsed, cpu, sampler.growth_mib, failure)


# -- the baseline: the same rows, straight from the source to a socket -------------


async def serve_baseline(data_dir: Path, copies: int) -> None:
    # As `emcp serve` does: the same process set-up (malloc, garbage collector) on both sides.
    tune_for_blocks(Settings().blocks.size)
    tune_collector(Settings().runtime.gc_threshold)
    source = SqliteSource(data_dir)

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some()  # any request starts the stream
            batch_rows = Settings().query.batch_rows  # the batch size emcp streams with
            async with source.open_query("new_company", big_sql(copies), batch_rows=batch_rows) as rows:
                first = True
                async for batch in rows:
                    data = json_lines(batch)
                    if first:
                        data = header_line(rows.columns) + data
                        first = False
                    await stream.send_all(data)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    print(f"baseline listening on {listeners[0].socket.getsockname()[1]}", flush=True)
    await trio.serve_listeners(handle, listeners)


async def start_on(session: ClientSession, sql: str) -> dict:
    """Run the big query on `session`; return its `result` handle."""
    result = await session.call_tool("sql", {"database": "new_company", "sql": sql})
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content["result"]


def download_job(session: ClientSession, sql: str, host: str, port: int) -> Callable[[], Awaitable[int]]:
    """A job: the tool call on `session`, then the whole result by its HTTP download on a raw socket."""

    async def job() -> int:
        result = await start_on(session, sql)
        request = f"GET {result['download_url']} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        return await drain(host, port, request, end=b"\r\n0\r\n\r\n")  # the end of the chunked body

    return job


def read_blocks_on(session: ClientSession, result: dict) -> Callable[[], Awaitable[int]]:
    """A job reading every block of `result` with resources/read; returns the characters read."""

    async def read_blocks() -> int:
        total, n = 0, 0
        while True:
            try:
                read = await session.read_resource(f"emcp://results/{result['handle']}/{n}")
            except MCPError:  # past the last block
                return total
            total += len(read.contents[0].text)
            n += 1

    return read_blocks


async def read_blocks_raw(host: str, port: int, sql: str, pid: int) -> Transfer:
    """The tool call, then resources/read of every block, on a WebSocket without the SDK: two requests ahead.

    What the server can serve apart from the client's own cost (the SDK's
    parsing runs on the same cores in this benchmark).
    """
    ws = await RawWebSocket.connect(host, port)
    await ws.initialize()
    handle = ""

    async def ask(n: int) -> None:
        await ws.send({"id": 10 + n, "method": "resources/read", "params": {"uri": f"emcp://results/{handle}/{n}"}})

    async def job() -> int:
        nonlocal handle
        arguments = {"database": "new_company", "sql": sql}
        await ws.send({"id": 1, "method": "tools/call", "params": {"name": "sql", "arguments": arguments}})
        size, first = await ws.receive()
        handle = orjson.loads(first)["result"]["structuredContent"]["result"]["handle"]
        total, n = size, 0
        await ask(0)
        await ask(1)
        while True:
            size, head = await ws.receive(keep=80)
            if b'"error":' in head:  # past the last block
                return total
            total += size
            n += 1
            await ask(n + 1)

    transfer = await measure("emcp resources/read, raw client", pid, job)
    await ws.aclose()
    return transfer


def overhead_line(label: str, times: list[float], base_times: list[float], note: str = "") -> str:
    """`label`'s time against the baseline's: best against best, and each round against its own baseline."""
    pairs = sorted(t / b - 1 for t, b in zip(times, base_times, strict=True))
    median = statistics.median(pairs)
    return (
        f"{label}: {(min(times) / min(base_times) - 1) * 100:+.1f} % time best of {len(times)} against best; "
        f"round by round {', '.join(f'{p * 100:+.1f}' for p in pairs)} % (median {median * 100:+.1f} %)" + note
    )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=23, help="copies of the sensor table (23 = about 1.1 GB)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "emcp-bench-data")
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds of the baseline, the download and the raw resources/read"
    )
    parser.add_argument("--serve-baseline", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    ensure_demo_data(args.data_dir)
    if args.serve_baseline:
        await serve_baseline(args.data_dir, args.copies)
        return
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; result: sensor x {args.copies}")

    baseline, seen = await spawn(
        [sys.executable, __file__, "--serve-baseline", "--copies", str(args.copies), "--data-dir", str(args.data_dir)],
        b"\n",
    )
    serve = ["serve", "--port", "0", "--data-dir", str(args.data_dir), "--log-level", "ERROR"]
    server, seen_server = await spawn([sys.executable, "-m", "emcp", *serve], b"/mcp/sse\n")
    base_port = int(re.search(rb"listening on (\d+)", seen).group(1))  # type: ignore[union-attr]
    url = re.search(rb"(http://\S+/mcp/sse)", seen_server).group(1).decode()  # type: ignore[union-attr]
    host, port_text = re.match(r"http://([^:/]+):(\d+)", url).groups()  # type: ignore[union-attr]
    base_times, http_times, raw_times = [], [], []
    sql = big_sql(args.copies)
    try:
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()

            # The server's own paths take turns with the baseline, so a busy moment of the machine
            # lands on one round, not on one path; each is set against its own round's baseline.
            for _ in range(args.rounds):
                base = await measure(
                    "baseline (source -> socket)", baseline.pid, lambda: drain("127.0.0.1", base_port, b"go")
                )
                base_times.append(base.elapsed)
                http = await measure(
                    "emcp HTTP download (blocks)", server.pid, download_job(session, sql, host, int(port_text))
                )
                http_times.append(http.elapsed)
                raw_times.append((await read_blocks_raw(host, int(port_text), sql, server.pid)).elapsed)

            result = await start_on(session, sql)
            over_sse = await measure("emcp resources/read over SSE", server.pid, read_blocks_on(session, result))

        ws_url = "ws" + url.removeprefix("http").removesuffix("/mcp/sse") + "/mcp/ws"
        async with websocket_client(ws_url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            result = await start_on(session, sql)
            over_ws = await measure("emcp resources/read over WebSocket", server.pid, read_blocks_on(session, result))
    finally:
        for process in (baseline, server):
            process.terminate()
            await process.wait()

    print(
        overhead_line(
            "HTTP download against the baseline",
            http_times,
            base_times,
            f" ({http.size / base.size:.3f} x the baseline's bytes, HTTP chunk framing included)",
        )
    )
    print(
        overhead_line(
            "resources/read over WebSocket, raw client, against the baseline",
            raw_times,
            base_times,
            " (the server's share: JSON-RPC framing and escaping, one request per block, two in flight)",
        )
    )
    for label, transfer in (("SSE", over_sse), ("WebSocket", over_ws)):
        print(
            f"resources/read over {label}, SDK client, against the best baseline: "
            f"{(transfer.elapsed / min(base_times) - 1) * 100:+.1f} % time (the client parses every block on the "
            "same cores)"
        )


if __name__ == "__main__":
    trio.run(main)
