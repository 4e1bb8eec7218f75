"""Figures for the SSE transport: calls/s, RSS per idle session, cancel-to-interrupt latency.

    .venv/bin/python benchmarks/sse_calls.py [--calls 500] [--idle 1000]

Throughput and memory are measured against a server in its own process
(`emcp serve`), so the client's work and memory are not counted; the
cancel-to-interrupt latency is measured in-process, where the source's own
statistics say the instant the SQLite statement was interrupted.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from procstat import rss_kib

from emcp import load_settings, open_server
from emcp.sources.demo import ensure_demo_data

QUERY = {"database": "new_company", "table": "sensor", "where": "device = 'dev-007'", "limit": 10}
SLOW_SQL = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n"


async def start_server(data_dir: Path, nursery: trio.Nursery) -> tuple[trio.Process, str]:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "emcp", "serve", "--port", "0", "--data-dir", str(data_dir), "--log-level", "WARNING"],
        stdout=subprocess.PIPE,
    )
    seen = b""
    while b"/mcp/sse\n" not in seen:
        assert process.stdout is not None
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError(f"server exited: {seen.decode()}")
        seen += chunk
    found = re.search(rb"(http://\S+/mcp/sse)", seen)
    assert found is not None
    url = found.group(1).decode()
    return process, url


async def calls_per_second(url: str, sessions: int, concurrency: int, calls: int) -> tuple[float, list[float]]:
    """`calls` tools/call of `query` in total, spread over `sessions` x `concurrency` workers."""
    latencies: list[float] = []
    remaining = calls

    async def worker(session: ClientSession) -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            started = trio.current_time()
            result = await session.call_tool("query", QUERY)
            assert not result.is_error, result.content
            latencies.append(trio.current_time() - started)

    async def one_session(ready: trio.Event, go: trio.Event) -> None:
        async with sse_client(url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            ready.set()
            await go.wait()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker, session)

    go = trio.Event()
    async with trio.open_nursery() as nursery:
        readies = []
        for _ in range(sessions):
            ready = trio.Event()
            readies.append(ready)
            nursery.start_soon(one_session, ready, go)
        for ready in readies:
            await ready.wait()
        started = trio.current_time()
        go.set()
    elapsed = trio.current_time() - started
    return len(latencies) / elapsed, latencies


async def idle_sessions(url: str, pid: int, count: int) -> tuple[int, int]:
    """Open `count` SSE streams that then sit idle; return server RSS before and after (KiB)."""
    found = re.match(r"http://([^:/]+):(\d+)", url)
    assert found is not None
    host, port = found.groups()
    before = rss_kib(pid)
    streams: list[trio.SocketStream] = []
    request = f"GET /mcp/sse HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
    for _ in range(count):
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(request)
        seen = b""
        while b"event: endpoint" not in seen:
            seen += await stream.receive_some()
        streams.append(stream)
    after = rss_kib(pid)
    for stream in streams:
        await stream.aclose()
    return before, after


async def cancel_latency(data_dir: Path, rounds: int) -> list[float]:
    """Seconds from the client cancelling a running call to the SQLite statement being interrupted."""
    settings = load_settings(http__port=0, data_dir=data_dir)
    latencies = []
    async with open_server(settings) as server:
        stats = server.source.statistics()
        async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            for i in range(rounds):
                with trio.CancelScope() as scope:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(session.call_tool, "sql", {"database": "new_company", "sql": SLOW_SQL})
                        await stats.watch.wait_until(lambda: stats.running == 1)
                        cancelled_at = trio.current_time()
                        scope.cancel()
                await stats.watch.wait_until(lambda i=i: stats.interrupted == i + 1)
                latencies.append(trio.current_time() - cancelled_at)
    return latencies


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--cancel-rounds", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data_dir = args.data_dir or Path(tempfile.gettempdir()) / "emcp-bench-data"
    ensure_demo_data(data_dir)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")

    async with trio.open_nursery() as nursery:
        process, url = await start_server(data_dir, nursery)
        try:
            await calls_per_second(url, 1, 1, 50)  # warm-up
            rate, lat = await calls_per_second(url, 1, 1, args.calls)
            print(
                f"query tool, 1 session sequential: {rate:8.1f} calls/s  p50 {pct(lat, 50) * 1e3:.2f} ms"
                f"  p99 {pct(lat, 99) * 1e3:.2f} ms"
            )
            rate, lat = await calls_per_second(url, 50, 4, args.calls * 4)
            print(
                f"query tool, 50 sessions x 4 concurrent: {rate:8.1f} calls/s  p50 {pct(lat, 50) * 1e3:.2f} ms"
                f"  p99 {pct(lat, 99) * 1e3:.2f} ms"
            )
            before, after = await idle_sessions(url, process.pid, args.idle)
            print(
                f"idle SSE sessions: {args.idle}, server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB, "
                f"{(after - before) / args.idle:.1f} KiB per session"
            )
        finally:
            process.terminate()
            code = await process.wait()
            print(f"server exit code after SIGTERM: {code}")

    lat = await cancel_latency(data_dir, args.cancel_rounds)
    print(
        f"cancel-to-interrupt latency over {len(lat)} cancels: p50 {pct(lat, 50) * 1e3:.2f} ms"
        f"  p99 {pct(lat, 99) * 1e3:.2f} ms  max {max(lat) * 1e3:.2f} ms  mean {statistics.mean(lat) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    trio.run(main)
