"""`emcp export`: run one query against a running emcp server and write the whole result to a file.

It speaks to the server as any client would: an MCP session over the SSE
transport for the query, then the result's HTTP download for the rows, which
stream to the file at the disk's pace (the server's producer follows). A
progress line on stderr shows rows, bytes and the rate.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import urljoin

import httpx2
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client

from emcp.blocks.download import csv_lines
from emcp.blocks.encoding import header_line, json_lines


class ExportError(Exception):
    """The export cannot go on; the message says why."""


@dataclass
class ExportRequest:
    url: str  # the server's SSE endpoint, e.g. http://127.0.0.1:8765/mcp/sse
    database: str
    output: Path
    format: str = "ndjson"
    sql: str | None = None
    table: str | None = None
    where: str | None = None
    limit: int = 2**31 - 1
    #: The bearer token, for a server with auth on.
    token: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


class ProgressLine:
    """One self-rewriting line on stderr, at most ten times a second."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self._started = time.monotonic()
        self._shown = 0.0
        self.rows = 0
        self.bytes = 0

    def update(self, rows: int, size: int, *, final: bool = False) -> None:
        self.rows += rows
        self.bytes += size
        now = time.monotonic()
        if not final and now - self._shown < 0.1:
            return
        self._shown = now
        elapsed = max(now - self._started, 1e-9)
        line = (
            f"\r{self.rows:>12,} rows  {self.bytes / 2**20:10.1f} MiB  "
            f"{self.bytes / 2**20 / elapsed:8.1f} MiB/s  {self.rows / elapsed:12,.0f} rows/s"
        )
        self._stream.write(line + ("\n" if final else ""))
        self._stream.flush()


def _call(request: ExportRequest) -> tuple[str, dict[str, Any]]:
    if request.sql is not None:
        return "sql", {"database": request.database, "sql": request.sql}
    if request.table is None:
        raise ExportError("give --sql, or --table (with --where and --limit if needed)")
    args: dict[str, Any] = {"database": request.database, "table": request.table, "limit": request.limit}
    if request.where:
        args["where"] = request.where
    return "query", args


async def export(request: ExportRequest, progress_to: IO[str] = sys.stderr) -> ProgressLine:
    if request.format not in ("ndjson", "csv"):
        raise ExportError("--format must be ndjson or csv")
    tool, args = _call(request)
    progress = ProgressLine(progress_to)
    try:
        return await _export(request, tool, args, progress)
    except (ExportError, httpx2.HTTPError, BaseExceptionGroup) as exc:
        raise _reason(exc, request.url) from None


def _reason(exc: BaseException, url: str) -> BaseException:
    """The one error worth a user's reading, out of the task groups the MCP client wraps it in."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    if isinstance(exc, httpx2.HTTPError):
        return ExportError(f"cannot reach the server at {url}: {exc}")
    return exc


async def _export(request: ExportRequest, tool: str, args: dict[str, Any], progress: ProgressLine) -> ProgressLine:
    async with sse_client(request.url, headers=request.headers) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        result = await session.call_tool(tool, args)
        if result.is_error:
            text = result.content[0].text if result.content and result.content[0].type == "text" else "error"
            raise ExportError(f"the query failed: {text}")
        out = result.structured_content or {}
        with request.output.open("wb") as file:
            write_rows = _writer(file, request.format, progress)
            if not out.get("truncated"):
                write_rows(header_line(out["columns"]) + json_lines(out["rows"]))
            elif "result" in out:
                await _download(urljoin(request.url, out["result"]["download_url"]), request.headers, write_rows)
            else:
                raise ExportError(f"the server cut the result short: {out.get('truncated_reason')}")
    progress.update(0, 0, final=True)
    return progress


def _writer(file: IO[bytes], fmt: str, progress: ProgressLine) -> Callable[[bytes], None]:
    """A function taking complete NDJSON lines: counts them and writes them in the chosen format."""

    def write_rows(lines: bytes) -> None:
        rows = lines.count(b"\n") - (1 if lines.startswith(b'{"columns"') else 0)
        data = csv_lines(lines) if fmt == "csv" else lines
        file.write(data)
        progress.update(rows, len(data))

    return write_rows


async def _download(url: str, headers: dict[str, str], write_rows: Callable[[bytes], None]) -> None:
    pending = b""
    timeout = httpx2.Timeout(60.0)
    async with httpx2.AsyncClient(timeout=timeout, headers=headers) as client, client.stream("GET", url) as response:
        if response.status_code != 200:
            body = await response.aread()
            raise ExportError(f"the download failed: HTTP {response.status_code} {body[:300]!r}")
        async for chunk in response.aiter_raw():
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if cut:
                # Whole lines only: a row is never split between two writes.
                await trio.to_thread.run_sync(write_rows, pending[:cut])
                pending = pending[cut:]
    if pending:
        raise ExportError("the download ended in the middle of a row")
