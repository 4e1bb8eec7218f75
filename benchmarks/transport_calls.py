"""Calls/s per transport: the same `query` tool call over every transport emcp serves.

    .venv/bin/python benchmarks/transport_calls.py [--calls 500] [--concurrency 8]

Each transport is driven by its official client: the SDK's `sse_client`,
`streamable_http_client` (2025-11-25, one session) and `mcp.Client` (2026-07-28,
one exchange per call), emcp's `websocket_client`, and the SDK's
`stdio_client` (which starts `emcp stdio` itself). The HTTP transports share one
`emcp serve` process. For each: `--calls` calls one after the other (latency),
then `--calls` calls from `--concurrency` tasks at once (throughput).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from mcp import Client, ClientSession, StdioServerParameters
from mcp.client.sse import sse_client
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from emcp.client import websocket_client
from emcp.sources.demo import ensure_demo_data

QUERY = {"database": "new_company", "table": "sensor", "where": "device = 'dev-007'", "limit": 10}

Call = Callable[[], Awaitable[Any]]


@asynccontextmanager
async def over_session(streams: Any) -> AsyncIterator[Call]:
    async with streams as (read, write), ClientSession(read, write) as session:
        await session.initialize()

        async def call() -> Any:
            result = await session.call_tool("query", QUERY)
            assert not result.is_error, result.content
            return result

        yield call


@asynccontextmanager
async def over_modern(url: str, mode: str = "auto") -> AsyncIterator[Call]:
    """`mcp.Client`, one exchange per call; `mode` a version ("2026-07-28") pins the era, no probe, no fallback."""
    async with Client(url, mode=mode) as client:

        async def call() -> Any:
            result = await client.call_tool("query", QUERY)
            assert not result.is_error, result.content
            return result

        yield call


async def measure(label: str, connect: Callable[[], Any], calls: int, concurrency: int) -> None:
    async with connect() as call:
        await call()  # warm up: caches, first-call imports
        latencies: list[float] = []
        started = time.perf_counter()
        for _ in range(calls):
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)
        sequential = calls / (time.perf_counter() - started)
        remaining = calls

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await call()

        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        concurrent = calls / (time.perf_counter() - started)
    p50 = statistics.median(latencies) * 1000
    p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
    print(
        f"{label:<34} sequential {sequential:7.1f} calls/s (p50 {p50:5.2f} ms, p99 {p99:5.2f} ms)   "
        f"{concurrency} at once {concurrent:7.1f} calls/s"
    )


async def start_server(data_dir: Path, *extra: str) -> tuple[trio.Process, str]:
    """`emcp serve` on a free port, in a process of its own; returns it and its base URL.

    `extra` are more `emcp serve` arguments (a `--config` raising a limit, say).
    """
    process = await trio.lowlevel.open_process(
        [
            *(sys.executable, "-m", "emcp", "serve", "--port", "0", "--data-dir", str(data_dir)),
            *("--log-level", "WARNING", *extra),
        ],
        stdout=-1,
    )
    seen = b""
    assert process.stdout is not None
    while b"/mcp/sse\n" not in seen:
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError(f"server exited: {seen.decode()}")
        seen += chunk
    line = next(line for line in seen.decode().splitlines() if "/mcp/sse" in line)
    return process, line.split()[-1].removesuffix("/mcp/sse")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "emcp-bench-data")
    args = parser.parse_args()
    ensure_demo_data(args.data_dir)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; tool: query {QUERY}")
    server, base = await start_server(args.data_dir)
    stdio = StdioServerParameters(
        command=sys.executable, args=["-m", "emcp", "stdio", "--data-dir", str(args.data_dir), "--log-level", "WARNING"]
    )
    transports: list[tuple[str, Callable[[], Any]]] = [
        ("legacy HTTP+SSE (2024-11-05)", lambda: over_session(sse_client(base + "/mcp/sse"))),
        ("Streamable HTTP (2025-11-25)", lambda: over_session(streamable_http_client(base + "/mcp"))),
        ("Streamable HTTP (2026-07-28)", lambda: over_modern(base + "/mcp")),
        ("WebSocket /mcp/ws", lambda: over_session(websocket_client("ws" + base.removeprefix("http") + "/mcp/ws"))),
        ("stdio (emcp stdio)", lambda: over_session(stdio_client(stdio))),
    ]
    try:
        for label, connect in transports:
            await measure(label, connect, args.calls, args.concurrency)
    finally:
        server.terminate()
        await server.wait()


if __name__ == "__main__":
    trio.run(main)
