"""Large results: emcp's block stream against the baseline's single result, at 10 MB, 100 MB and 1 GiB.

The rows are the sensor table crossed with itself enough times and cut to the
row count whose NDJSON (emcp's block encoding) is about the size asked. emcp
answers the `sql` call with its first rows and a handle, then streams blocks:
measured are the HTTP download and `resources/read` on a raw WebSocket (both
from `blocks.py`, the tool call included in the time). The baseline's `sql`
tool returns the whole result as one text, the only way an SDK tool can
answer; it is asked with one 2026-07-28 POST on a raw socket, the cheapest
request its transports take, and its reply read and dropped. Each side's
server peak RSS growth comes from `blocks.RssSampler`. A baseline that runs
past the time cap, or grows past the RSS cap, is stopped there and recorded
as failed with its figures at that moment, then restarted.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from blocks import Transfer, big_sql, download_job, drain, measure, read_blocks_raw
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from rawhttp import host_port, modern_request
from servers import Server

from emcp.blocks.encoding import json_lines

SIZES = {"10 MB": 10_000_000, "100 MB": 100_000_000, "1 GiB": 2**30}
PATHS = {
    "emcp": ("http-download", "resources/read (WebSocket)"),
    "sdk": ("single result (Streamable HTTP 2026)",),
}


@dataclass
class LargeFigures:
    server: str
    path: str
    size_label: str
    #: Bytes of the result as NDJSON, what both sides encode.
    result_bytes: int
    rows: int
    #: Bytes the client received (framing and JSON escaping included).
    received_bytes: int
    seconds: float
    server_cpu_s: float
    rss_growth_mib: float
    failure: str = ""


def sizing(data_dir: Path, target: int) -> tuple[str, int, int]:
    """The query giving about `target` bytes of NDJSON rows: (SQL, rows, estimated bytes)."""
    conn = sqlite3.connect(f"file:{data_dir / 'new_company'}.db?mode=ro", uri=True)
    try:
        table_rows = conn.execute("SELECT count(*) FROM sensor").fetchone()[0]
        sample = conn.execute(big_sql(1, limit=min(table_rows, 200_000))).fetchall()
    finally:
        conn.close()
    per_row = len(json_lines(sample)) / len(sample) + 0.9  # k.n has 2 digits past 9 copies: about a byte more
    rows = math.ceil(target / per_row)
    return big_sql(math.ceil(rows / table_rows), limit=rows), rows, round(rows * per_row)


async def measure_emcp(server: Server, sql: str) -> list[Transfer]:
    """emcp's block stream, both ways: the HTTP download, then resources/read on a raw WebSocket."""
    url = server.url("streamable-http")
    async with streamable_http_client(url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        download = await measure("emcp HTTP download", server.pid, download_job(session, sql, *host_port(url)))
    blocks = await read_blocks_raw(*host_port(url), sql, server.pid)
    return [download, blocks]


async def measure_sdk(server: Server, sql: str, expected: int, time_cap_s: float, rss_cap_mib: float) -> Transfer:
    """The baseline's single result; a reply much smaller than the result is a failure (an error reply)."""
    url = server.url("streamable-http-2026")
    params = {"name": "sql", "arguments": {"database": "new_company", "sql": sql}}
    request = modern_request(url, 1, "tools/call", params)
    transfer = await measure(
        "sdk single result", server.pid, lambda: drain(*host_port(url), request), time_cap_s, rss_cap_mib
    )
    if not transfer.failure and transfer.size < expected * 0.9:
        transfer.failure = f"a reply of {transfer.size} bytes, not the result"
    return transfer
