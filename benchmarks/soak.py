"""Soak: many concurrent sessions making tool calls for minutes; errors, server RSS over time, latency.

    .venv/bin/python benchmarks/soak.py [--sessions 1000] [--minutes 10] [--think 5]

The server runs in its own process (`emcp serve`, demo data). Each session is
its own WebSocket connection and MCP session (the light client of
`rawws.py`, so a thousand of them fit on the client's share of the cores),
calling a mix of tools in a loop with a random pause of about `--think`
seconds between calls. Printed: calls and errors, latency p50/p95/p99, and
the server's RSS every `--every` seconds, from all sessions open to the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2
import orjson
import trio
import trio.lowlevel
from procstat import rss_kib
from rawws import RawWebSocket
from transport_calls import start_server

from emcp.sources.demo import ensure_demo_data

CALLS = [
    ("list_databases", {}),
    ("list_tables", {"database": "new_company"}),
    ("query", {"database": "new_company", "table": "sensor", "limit": 20}),
    (
        "sql",
        {
            "database": "new_company",
            "sql": "SELECT row_id, device, value FROM sensor WHERE row_id BETWEEN 5000 AND 5020",
        },
    ),
]


def rss_mib(pid: int) -> float:
    return rss_kib(pid) / 1024


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    sessions_up: int = 0
    sessions_failed: int = 0
    expected: int = 0
    #: Set once every session is open or has failed to open.
    settled: trio.Event = field(default_factory=trio.Event)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def opened(self, ok: bool) -> None:
        if ok:
            self.sessions_up += 1
        else:
            self.sessions_failed += 1
        if self.sessions_up + self.sessions_failed == self.expected:
            self.settled.set()


async def session(host: str, port: int, deadline: float, think: float, tally: Tally) -> None:
    try:
        ws = await RawWebSocket.connect(host, port)
        await ws.initialize()
    except (OSError, AssertionError, trio.BrokenResourceError) as exc:
        tally.error(f"connect: {type(exc).__name__}")
        tally.opened(ok=False)
        return
    tally.opened(ok=True)
    await tally.settled.wait()
    try:
        n = 1
        while trio.current_time() < deadline:
            await trio.sleep(random.uniform(0.5, 1.5) * think)  # pacing, not waiting for a condition
            name, arguments = random.choice(CALLS)
            started = time.perf_counter()
            await ws.send({"id": n, "method": "tools/call", "params": {"name": name, "arguments": arguments}})
            _, reply = await ws.receive()
            tally.latencies.append(time.perf_counter() - started)
            message = orjson.loads(reply)
            if "error" in message:
                tally.error(f"JSON-RPC {message['error']['code']}")
            elif message["result"].get("isError"):
                tally.error(f"tool error: {message['result']['content'][0]['text'][:80]}")
            n += 1
    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        tally.error(f"connection: {type(exc).__name__}")
    finally:
        await ws.aclose()


async def server_quantiles(host: str, port: int) -> str:
    """p50/p95/p99 of tools/call from the server's own histogram: bucket upper bounds, so 'at most'."""
    async with httpx2.AsyncClient(timeout=10) as http:
        text = (await http.get(f"http://{host}:{port}/metrics")).text
    buckets: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("emcp_request_duration_seconds_bucket{") and 'method="tools/call"' in line:
            bound = line.split('le="')[1].split('"')[0]
            buckets[float(bound)] = buckets.get(float(bound), 0.0) + float(line.rsplit(" ", 1)[1])
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if not total:
        return "no calls seen"

    def at_most(q: float) -> str:
        bound = next(b for b in bounds if buckets[b] >= q * total)
        return f"<= {bound * 1e3:g} ms"

    return f"p50 {at_most(0.5)}, p95 {at_most(0.95)}, p99 {at_most(0.99)}"


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--think", type=float, default=5.0, help="mean seconds between a session's calls")
    parser.add_argument("--every", type=float, default=60.0, help="seconds between RSS samples")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "emcp-bench-data")
    args = parser.parse_args()
    ensure_demo_data(args.data_dir)
    server, base = await start_server(args.data_dir)
    host, port = base.removeprefix("http://").rsplit(":", 1)
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; server pid {server.pid}")
    print(f"{args.sessions} sessions, {args.minutes:g} min, a call every ~{args.think:g} s per session")
    rss_idle = rss_mib(server.pid)
    tally = Tally(expected=args.sessions)
    try:
        async with trio.open_nursery() as nursery:
            deadline = trio.current_time() + 60 * args.minutes
            for _ in range(args.sessions):
                nursery.start_soon(session, host, int(port), deadline, args.think, tally)
                await trio.lowlevel.checkpoint()
            await tally.settled.wait()
            samples = [(0.0, rss_mib(server.pid))]
            print(f"server RSS idle {rss_idle:.1f} MiB; {tally.sessions_up} sessions open: {samples[0][1]:.1f} MiB")
            started = trio.current_time()
            while trio.current_time() < deadline:
                await trio.sleep(min(args.every, max(0.0, deadline - trio.current_time())))
                elapsed = trio.current_time() - started
                samples.append((elapsed, rss_mib(server.pid)))
                calls, errors = len(tally.latencies), sum(tally.errors.values())
                print(f"  {elapsed:6.0f} s: RSS {samples[-1][1]:7.1f} MiB, {calls} calls, {errors} errors")
        server_side = await server_quantiles(host, int(port))
    finally:
        server.terminate()
        await server.wait()
    lat = sorted(tally.latencies)
    quantile = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    elapsed = samples[-1][0] or 1.0
    print(f"calls: {len(lat)} ({len(lat) / elapsed:.1f}/s); errors: {sum(tally.errors.values())} {tally.errors or ''}")
    print(f"latency ms: p50 {quantile[49] * 1e3:.1f}, p95 {quantile[94] * 1e3:.1f}, p99 {quantile[98] * 1e3:.1f}")
    print(f"as the server timed tools/call (dispatch to result, from /metrics buckets): {server_side}")
    first, last = samples[0][1], samples[-1][1]
    print(f"server RSS with all sessions open: start {first:.1f} MiB, end {last:.1f} MiB ({last - first:+.1f} MiB)")


if __name__ == "__main__":
    trio.run(main)
