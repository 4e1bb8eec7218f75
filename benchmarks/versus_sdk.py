"""emcp against the official SDK's server, in one run on one machine; writes docs/benchmarks.md.

    make bench                                   # everything, the defaults (about 15 minutes on 2 cores)
    python benchmarks/versus_sdk.py --quick      # every section, small (about 3 minutes)
    python benchmarks/versus_sdk.py --only calls idle --idle 1000 10000 20000

Two servers, each in a process of its own: `emcp serve` and the SDK's
`MCPServer` on uvicorn (`sdk_baseline.py`), serving the same tools over the
same SQLite demo data (`servers.py`). Four sections:

- calls: for each transport and concurrency c, c sessions of the SDK's own
  client call `query` back to back; the servers take turns, `--rounds` times,
  and the best round of each is kept: calls/s, latency p50/p95/p99, server CPU
  per call. SSE, Streamable HTTP at 2025-11-25 (sessions) and 2026-07-28
  (stateless, `mcp.Client` pinned to that version), and WebSocket: the SDK
  has no WebSocket server, so emcp's WebSocket is set against the baseline's
  best transport at the same concurrency.
- idle: sessions that did the handshake and then wait, up a ladder of counts
  (`idle_sessions.py`): RSS per idle session and the most held.
- large: 10 MB, 100 MB and 1 GiB of rows, emcp's block stream against the
  baseline's single result (`large_results.py`): time and server peak RSS growth.
- cancel: seconds from a client's cancel to the server no longer working on
  the query, judged from the server's CPU time (`cancel_latency.py`).

The raw figures go to docs/benchmarks/raw.json (sections not run this time are
kept from the previous file, with the time each was run), then `report.py`
writes docs/benchmarks.md and the plots from it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import report
import trio
from cancel_latency import measure_cancel
from idle_sessions import KINDS, as_json, measure_idle, raise_fd_limit
from large_results import PATHS as LARGE_PATHS
from large_results import SIZES, LargeFigures, measure_emcp, measure_sdk, sizing
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from procstat import cpu_seconds
from rawhttp import MODERN_VERSION
from servers import TRANSPORTS, running, start
from transport_calls import Call, over_modern, over_session

from emcp.client import websocket_client
from emcp.sources.demo import ensure_demo_data

SECTIONS = ("calls", "idle", "large", "cancel")
DOCS = Path(__file__).resolve().parent.parent / "docs"


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
    #: Every call's latency, kept for the best round only (for the distribution plots).
    latencies_ms: list[float] = field(default_factory=list)


def connect(transport: str, url: str) -> AbstractAsyncContextManager[Call]:
    """The SDK's own client for `transport` (emcp's for WebSocket, which the SDK lacks)."""
    if transport == "sse":
        return over_session(sse_client(url))
    if transport == "streamable-http":
        return over_session(streamable_http_client(url))
    if transport == "streamable-http-2026":
        return over_modern(url, mode=MODERN_VERSION)
    return over_session(websocket_client(url))


async def run_load(
    url: str, transport: str, concurrency: int, calls: int, pid: int
) -> tuple[float, list[float], float]:
    """`concurrency` sessions calling back to back; (seconds, latencies, server CPU seconds)."""
    latencies: list[float] = []
    ready = trio.Event()

    async def client(task_status: trio.TaskStatus[None]) -> None:
        async with connect(transport, url) as call:
            await call()  # warm up: the session's first call
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
        latencies_ms=[round(x * 1e3, 3) for x in latencies],
    )


async def section_calls(args: argparse.Namespace) -> list[dict[str, Any]]:
    best: list[Figures] = []
    async with running(args.data_dir) as servers:
        for transport in TRANSPORTS:
            for concurrency in args.concurrency:
                calls = max(args.calls, args.min_samples // concurrency)
                rounds: dict[str, list[Figures]] = {name: [] for name in servers}
                for _ in range(args.rounds):
                    for name, server in servers.items():  # taking turns: a busy moment favours neither
                        if server.serves(transport):
                            elapsed, latencies, cpu = await run_load(
                                server.url(transport), transport, concurrency, calls, server.pid
                            )
                            rounds[name].append(figures(name, transport, concurrency, elapsed, latencies, cpu))
                for name, runs in rounds.items():
                    if runs:
                        f = max(runs, key=lambda f: f.calls_per_s)
                        best.append(f)
                        print(
                            f"{transport:<22} c={concurrency:<4} {name:<5} {f.calls_per_s:8.1f} calls/s  "
                            f"p50 {f.p50_ms:7.2f}  p95 {f.p95_ms:7.2f}  p99 {f.p99_ms:7.2f} ms  "
                            f"CPU {f.cpu_ms_per_call:5.2f} ms/call",
                            flush=True,
                        )
    return [asdict(f) for f in best]


async def section_idle(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each transport's ladder on a fresh pair of servers (so no transport inherits another's memory)."""
    limit = raise_fd_limit()
    # Both servers refuse sessions past 10,000 by default: the cap of each is raised over the ladder's top.
    max_sessions = max(args.idle) + 100
    results: list[dict[str, Any]] = []
    for kind in KINDS:
        # A connection per session on SSE and WebSocket: the server needs a descriptor for each.
        rungs = [n for n in args.idle if kind == "streamable-http" or n < limit - 64]
        skipped = [n for n in args.idle if n not in rungs]
        for name in ("emcp", "sdk"):
            server = await start(name, args.data_dir, max_sessions)
            try:
                if server.serves(kind):
                    for f in await measure_idle(name, server.pid, kind, server.url(kind), rungs):
                        results.append(as_json(f))
                    results += [
                        {
                            "server": name,
                            "transport": kind,
                            "requested": n,
                            "skipped": f"needs {n} descriptors; the hard limit here is {limit}",
                        }
                        for n in skipped
                    ]
            finally:
                await server.stop()
    return results


async def section_large(args: argparse.Namespace) -> list[dict[str, Any]]:
    results: list[LargeFigures] = []
    async with running(args.data_dir) as servers:
        for label in args.sizes:
            sql, rows, size = sizing(args.data_dir, SIZES[label])
            print(f"large {label}: {rows} rows, about {size / 1e6:.0f} MB of NDJSON", flush=True)
            transfers = await measure_emcp(servers["emcp"], sql)
            sdk = servers["sdk"]
            transfers.append(await measure_sdk(sdk, sql, size, args.time_cap, args.rss_cap_gib * 1024))
            if transfers[-1].failure:  # stopped mid-way: a fresh baseline for what follows
                await sdk.stop()
                servers["sdk"] = await start("sdk", args.data_dir)
            paths = [("emcp", p) for p in LARGE_PATHS["emcp"]] + [("sdk", p) for p in LARGE_PATHS["sdk"]]
            for (name, path), t in zip(paths, transfers, strict=True):
                results.append(
                    LargeFigures(
                        name, path, label, size, rows, t.size, t.elapsed, t.server_cpu_s, t.rss_growth_mib, t.failure
                    )
                )
    return [asdict(f) for f in results]


async def section_cancel(args: argparse.Namespace) -> list[dict[str, Any]]:
    results = []
    async with running(args.data_dir) as servers:
        for server in servers.values():
            for f in await measure_cancel(
                server, ["streamable-http", "streamable-http-2026", "websocket"], args.cancel_rounds
            ):
                results.append({**asdict(f), "latency_s": f.latency_s})
    return results


RUNNERS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "calls": section_calls,
    "idle": section_idle,
    "large": section_large,
    "cancel": section_cancel,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run these sections only (the others are kept)")
    parser.add_argument("--quick", action="store_true", help="every section, small: a check that all of it works")
    parser.add_argument("--concurrency", type=int, nargs="+", help="calls: sessions at once (1 10 100)")
    parser.add_argument("--calls", type=int, help="calls: per session per round, at least (20)")
    parser.add_argument("--min-samples", type=int, help="calls: latencies per round, at least (400)")
    parser.add_argument("--rounds", type=int, help="calls: rounds per server, the best kept (2)")
    parser.add_argument("--idle", type=int, nargs="+", help="idle: the ladder of session counts (1000 10000 20000)")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="large: result sizes (all)")
    parser.add_argument("--time-cap", type=float, default=600, help="large: seconds the baseline gets per result")
    parser.add_argument("--rss-cap-gib", type=float, default=12, help="large: RSS growth the baseline may reach")
    parser.add_argument("--cancel-rounds", type=int, help="cancel: cancels per server and transport (3)")
    parser.add_argument("--out", type=Path, default=DOCS, help="where benchmarks.md and benchmarks/ go (docs/)")
    parser.add_argument("--data-dir", type=Path, default=Path(tempfile.gettempdir()) / "emcp-bench-data")
    args = parser.parse_args()
    defaults: dict[str, Any] = {
        "concurrency": [1, 10, 100],
        "calls": 20,
        "min_samples": 400,
        "rounds": 2,
        "idle": [1000, 10000, 20000],
        "sizes": list(SIZES),
        "cancel_rounds": 3,
    }
    if args.quick:
        defaults |= {
            "concurrency": [1, 10],
            "calls": 10,
            "min_samples": 100,
            "rounds": 1,
            "idle": [200, 1000],
            "sizes": ["10 MB"],
            "cancel_rounds": 1,
        }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


async def main() -> None:
    args = parse_args()
    ensure_demo_data(args.data_dir)
    raw_path = args.out / "benchmarks" / "raw.json"
    raw: dict[str, Any] = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    raw["machine"] = report.machine()
    print(report.machine_line(raw["machine"]), flush=True)
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    for section in args.only or SECTIONS:
        started = time.perf_counter()
        figures = await RUNNERS[section](args)
        config = {k: v for k, v in vars(args).items() if k not in ("only", "out", "data_dir")}
        raw[section] = {
            "run_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "seconds": round(time.perf_counter() - started, 1),
            "quick": args.quick,
            "emcp_commit": raw["machine"]["emcp_commit"],  # sections of different runs may differ
            "config": config,
            "figures": figures,
        }
        raw_path.write_text(report.dump(raw))  # after each section: a later failure loses none
        print(f"-- {section} done in {raw[section]['seconds']:.0f} s", flush=True)
    report.write(raw, args.out)
    print(f"wrote {args.out / 'benchmarks.md'} and {raw_path.parent}/", flush=True)


if __name__ == "__main__":
    trio.run(main)
