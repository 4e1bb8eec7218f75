"""emcp against the official SDK's server, in one run on one machine: tools/call throughput and latency.

    .venv/bin/python benchmarks/versus_sdk.py [--concurrency 1 10 100] [--calls 20] [--rounds 2] [--json FILE]

Two servers, each in a process of its own: `emcp serve` and the SDK's
`MCPServer` on uvicorn (`benchmarks/sdk_baseline.py`), serving the same `query`
call over the same SQLite demo data. For each transport both speak (legacy
SSE, Streamable HTTP 2025-11-25) and each concurrency c, c sessions of the
SDK's own client call `query` back to back (`--calls` calls each); the two
servers take turns, `--rounds` times, and the best round of each is kept.
Printed: calls/s, latency p50/p95/p99, server CPU per call, and emcp's ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import trio
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from procstat import cpu_seconds
from transport_calls import over_session, start_server

from emcp.sources.demo import ensure_demo_data


@dataclass
class Figures:
    server: str
    transport: str
    concurrency: int
    calls: int
    calls_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_ms_per_call: float


async def run_load(
    url: str, transport: str, concurrency: int, calls: int, pid: int
) -> tuple[float, list[float], float]:
    """`concurrency` sessions calling back to back; (seconds, latencies, server CPU seconds)."""
    latencies: list[float] = []
    ready = trio.Event()
    opened = 0

    async def client(task_status: trio.TaskStatus[None]) -> None:
        nonlocal opened
        streams = sse_client(url) if transport == "sse" else streamable_http_client(url)
        async with over_session(streams) as call:
            await call()  # warm up: the session's first call
            opened += 1
            task_status.started()
            await ready.wait()
            for _ in range(calls):
                started = time.perf_counter()
                await call()
                latencies.append(time.perf_counter() - started)

    async with trio.open_nursery() as nursery:
        for _ in range(concurrency):
            await nursery.start(client)
        cpu_before, started = cpu_seconds(pid), time.perf_counter()
        ready.set()
    return time.perf_counter() - started, latencies, cpu_seconds(pid) - cpu_before


def figures(
    server: str, transport: str, concurrency: int, elapsed: float, latencies: list[float], cpu: float
) -> Figures:
    cuts = statistics.quantiles(latencies, n=100)
    return Figures(
        server=server,
        transport=transport,
        concurrency=concurrency,
        calls=len(latencies),
        calls_per_s=len(latencies) / elapsed,
        p50_ms=cuts[49] * 1e3,
        p95_ms=cuts[94] * 1e3,
        p99_ms=cuts[98] * 1e3,
        cpu_ms_per_call=cpu / len(latencies) * 1e3,
    )


async def start_baseline(data_dir: Path) -> tuple[trio.Process, str]:
    script = Path(__file__).with_name("sdk_baseline.py")
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), "--data-dir", str(data_dir)], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    seen = b""
    while not (match := re.search(rb"listening on (\d+)", seen)):
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError(f"the baseline exited: {seen.decode()}")
        seen += chunk
    return process, f"http://127.0.0.1:{int(match.group(1))}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--calls", type=int, default=20, help="calls per session per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "emcp-bench-data")
    args = parser.parse_args()
    ensure_demo_data(args.data_dir)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    emcp, emcp_url = await start_server(args.data_dir)
    sdk, sdk_url = await start_baseline(args.data_dir)
    servers = {
        "emcp": (emcp.pid, {"sse": emcp_url + "/mcp/sse", "streamable-http": emcp_url + "/mcp"}),
        "sdk": (sdk.pid, {"sse": sdk_url + "/sse", "streamable-http": sdk_url + "/mcp"}),
    }
    rounds: list[Figures] = []
    try:
        for transport in ("sse", "streamable-http"):
            for concurrency in args.concurrency:
                for _ in range(args.rounds):
                    for name, (pid, urls) in servers.items():  # taking turns: a busy moment favours neither
                        elapsed, latencies, cpu = await run_load(
                            urls[transport], transport, concurrency, args.calls, pid
                        )
                        rounds.append(figures(name, transport, concurrency, elapsed, latencies, cpu))
                best = {
                    name: max(
                        (f for f in rounds if (f.server, f.transport, f.concurrency) == (name, transport, concurrency)),
                        key=lambda f: f.calls_per_s,
                    )
                    for name in servers
                }
                for name, f in best.items():
                    print(
                        f"{transport:<16} c={concurrency:<4} {name:<5} {f.calls_per_s:8.1f} calls/s  "
                        f"p50 {f.p50_ms:7.2f}  p95 {f.p95_ms:7.2f}  p99 {f.p99_ms:7.2f} ms  "
                        f"CPU {f.cpu_ms_per_call:5.2f} ms/call"
                    )
                e, s = best["emcp"], best["sdk"]
                print(
                    f"{'':<16} {'':<6} emcp/sdk: {e.calls_per_s / s.calls_per_s:4.2f}x calls/s, "
                    f"p99 {e.p99_ms / s.p99_ms:4.2f}x, CPU per call {e.cpu_ms_per_call / s.cpu_ms_per_call:4.2f}x"
                )
    finally:
        for process in (emcp, sdk):
            process.terminate()
            await process.wait()
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in rounds], indent=1))


if __name__ == "__main__":
    trio.run(main)
