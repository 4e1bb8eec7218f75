"""The two servers the comparison runs, each in a process of its own, and where each serves what.

emcp is `emcp serve` (started by `transport_calls.start_server`); the baseline is
the official SDK's `MCPServer` on uvicorn (`sdk_baseline.py`). Both serve the
same `query` and `sql` tools over the same SQLite demo data.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import trio
from transport_calls import start_server

#: The transports of the comparison, in the order of the tables.
TRANSPORTS = ("sse", "streamable-http", "streamable-http-2026", "websocket")
LABELS = {
    "sse": "SSE (2024-11-05)",
    "streamable-http": "Streamable HTTP (2025-11-25)",
    "streamable-http-2026": "Streamable HTTP (2026-07-28)",
    "websocket": "WebSocket",
}
#: Where each server serves each transport, after its base URL. The SDK (2.x) has no WebSocket server.
PATHS = {
    "emcp": {"sse": "/mcp/sse", "streamable-http": "/mcp", "streamable-http-2026": "/mcp", "websocket": "/mcp/ws"},
    "sdk": {"sse": "/sse", "streamable-http": "/mcp", "streamable-http-2026": "/mcp"},
}


@dataclass
class Server:
    name: str
    process: trio.Process
    base: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def serves(self, transport: str) -> bool:
        return transport in PATHS[self.name]

    def url(self, transport: str) -> str:
        url = self.base + PATHS[self.name][transport]
        return "ws" + url.removeprefix("http") if transport == "websocket" else url

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            with trio.move_on_after(10):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
        await self.process.wait()


async def start_baseline(data_dir: Path, *extra: str) -> tuple[trio.Process, str]:
    """The SDK baseline on a free port; returns its process and base URL. `extra`: more of its arguments."""
    script = Path(__file__).with_name("sdk_baseline.py")
    process = await trio.lowlevel.open_process(
        [sys.executable, str(script), "--data-dir", str(data_dir), *extra], stdout=subprocess.PIPE
    )
    assert process.stdout is not None
    seen = b""
    while not (match := re.search(rb"listening on (\d+)", seen)):
        chunk = await process.stdout.receive_some()
        if not chunk:
            raise RuntimeError(f"the baseline exited: {seen.decode()}")
        seen += chunk
    return process, f"http://127.0.0.1:{int(match.group(1))}"


async def start(name: str, data_dir: Path, max_sessions: int | None = None) -> Server:
    """Start one server; `max_sessions` raises its cap on sessions at once (both cap them at 10,000 by default)."""
    if name == "sdk":
        return Server(
            name, *await start_baseline(data_dir, *(["--max-sessions", str(max_sessions)] * bool(max_sessions)))
        )
    extra: list[str] = []
    if max_sessions:
        config = Path(tempfile.mkdtemp(prefix="emcp-bench-")) / "config.yaml"
        config.write_text(f"sessions:\n  max_sessions: {max_sessions}\n")
        extra = ["--config", str(config)]
    return Server(name, *await start_server(data_dir, *extra))


@asynccontextmanager
async def running(data_dir: Path, names: Sequence[str] = ("emcp", "sdk")) -> AsyncIterator[dict[str, Server]]:
    """The named servers, started fresh and stopped on the way out."""
    servers: dict[str, Server] = {}
    try:
        for name in names:
            servers[name] = await start(name, data_dir)
        yield servers
    finally:
        for server in servers.values():
            with trio.CancelScope(shield=True):
                await server.stop()
