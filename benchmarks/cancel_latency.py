"""Cancel-to-interrupt latency: how long a server keeps working on a query after the client cancels it.

A long query (a cross join with a one-row answer: no result to send, only
work) starts; about half a second later the client cancels it the way the
transport says (`notifications/cancelled` on a 2025-11-25 session or a
WebSocket; closing the response stream at 2026-07-28). The server's CPU time
is then polled every few milliseconds, and the latency is when it last grew
before a quiet spell: the server stopped working. This needs nothing from the
server but its pid, so it judges both servers alike, whatever they claim.
Its resolution is the kernel's CPU clock tick (10 ms at 100 Hz).
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass

import httpx2
import trio
from blocks import drain
from procstat import cpu_seconds
from rawhttp import HttpSession, host_port, modern_request
from rawws import RawWebSocket
from servers import Server

#: Copies of the sensor table the long query counts through (about 6 s of SQLite on this kind of machine).
COPIES = 100
#: Seconds between the call and its cancel: long enough for the query to be running.
CANCEL_AFTER = 0.5
#: The server is taken to have stopped once its CPU time has not grown for this long.
QUIET = 0.05
POLL = 0.002


def long_sql(copies: int = COPIES) -> str:
    return (
        f"WITH RECURSIVE k(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM k WHERE n < {copies}) "
        "SELECT count(*), sum(s.value * k.n) FROM sensor AS s CROSS JOIN k"
    )


def call(request_id: int, sql: str) -> dict:
    params = {"name": "sql", "arguments": {"database": "new_company", "sql": sql}}
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params}


def cancelled(request_id: int) -> dict:
    params = {"requestId": request_id, "reason": "bench"}
    return {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": params}


@dataclass
class CancelFigures:
    server: str
    transport: str
    #: Seconds from the cancel to the server's last CPU activity on the query, one per round.
    latencies_s: list[float]
    #: Seconds the same query takes when nobody cancels it (the most a cancel can save).
    full_run_s: float

    @property
    def latency_s(self) -> float:
        """The median round."""
        return statistics.median(self.latencies_s)


async def stopped_after(pid: int, since: float, limit: float = 120.0) -> float:
    """Seconds from `since` to the last growth of `pid`'s CPU time before `QUIET` seconds without any."""
    last_cpu, last_change = cpu_seconds(pid), time.perf_counter()
    while True:
        await trio.sleep(POLL)
        now, cpu = time.perf_counter(), cpu_seconds(pid)
        if cpu != last_cpu:
            last_cpu, last_change = cpu, now
        elif now - last_change >= QUIET:
            return max(0.0, last_change - since)
        if now - since > limit:
            return math.inf


async def full_run(server: Server, sql: str) -> float:
    """Seconds the query takes to its answer, uncancelled (a 2026-07-28 request on a raw socket)."""
    url = server.url("streamable-http-2026")
    started = time.perf_counter()
    await drain(*host_port(url), modern_request(url, 1, "tools/call", call(1, sql)["params"]))
    return time.perf_counter() - started


async def cancel_on(server: Server, transport: str, sql: str) -> float:
    """Start `sql`, cancel it after `CANCEL_AFTER` seconds as `transport` does; seconds until the server stops."""
    url = server.url(transport)
    async with trio.open_nursery() as nursery:
        if transport == "streamable-http":
            async with httpx2.AsyncClient(timeout=None) as http:
                session = HttpSession(http, url)
                await session.open()

                async def long_call() -> None:
                    async with session.stream(call(1, sql)) as reply:
                        async for _ in reply.aiter_raw():
                            pass

                nursery.start_soon(long_call)
                await trio.sleep(CANCEL_AFTER)
                since = time.perf_counter()
                await session.post(cancelled(1))
                latency = await stopped_after(server.pid, since)
                nursery.cancel_scope.cancel()  # no reply comes for a cancelled request: stop waiting for one
        elif transport == "streamable-http-2026":
            stream = await trio.open_tcp_stream(*host_port(url))
            await stream.send_all(modern_request(url, 1, "tools/call", call(1, sql)["params"]))
            await trio.sleep(CANCEL_AFTER)
            since = time.perf_counter()
            await stream.aclose()  # at 2026-07-28, closing the response stream is the cancel
            latency = await stopped_after(server.pid, since)
        else:  # websocket
            ws = await RawWebSocket.connect(*host_port(url))
            await ws.initialize()
            await ws.send(call(1, sql))
            await trio.sleep(CANCEL_AFTER)
            since = time.perf_counter()
            await ws.send(cancelled(1))
            latency = await stopped_after(server.pid, since)
            await ws.aclose()
    return latency


async def measure_cancel(
    server: Server, transports: list[str], rounds: int = 3, sql: str | None = None
) -> list[CancelFigures]:
    """Cancel latency of `server` on each of `transports` it serves, with the uncancelled run time for scale."""
    sql = sql or long_sql()
    full = await full_run(server, sql)
    figures = []
    for transport in transports:
        if server.serves(transport):
            latencies = []
            for _ in range(rounds):
                await stopped_after(server.pid, time.perf_counter())  # start from a quiet server
                latencies.append(await cancel_on(server, transport, sql))
            figures.append(CancelFigures(server.name, transport, latencies, full))
            print(
                f"cancel {transport:<22} {server.name:<5} stopped {figures[-1].latency_s * 1e3:8.1f} ms after the "
                f"cancel (median of {rounds}; the query takes {full:.2f} s uncancelled)",
                flush=True,
            )
    return figures
