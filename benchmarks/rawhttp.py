"""Light HTTP MCP clients for benchmarks, the Streamable HTTP counterpart of `rawws.py`.

Where the SDK's client would cost more than the server it measures (ten
thousand idle sessions, a 1 GiB reply parsed whole), the benchmarks speak the
wire directly: a 2026-07-28 request is one self-contained POST, built here as
raw bytes; a 2025-11-25 session is an `initialize` POST, its `Mcp-Session-Id`,
then POSTs carrying it, over a shared httpx2 client's connection pool.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson

HANDSHAKE_VERSION = "2025-11-25"
MODERN_VERSION = "2026-07-28"
ACCEPT = "application/json, text/event-stream"
CLIENT_INFO = {"name": "bench", "version": "1"}


def modern_request(url: str, request_id: int, method: str, params: dict[str, Any]) -> bytes:
    """A whole 2026-07-28 request as HTTP/1.1 bytes, `Connection: close` so its reply ends at EOF.

    The `_meta` envelope and the `Mcp-Method`/`Mcp-Name` headers are what the
    SDK's own client sends; no handshake comes before it.
    """
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
        "io.modelcontextprotocol/clientInfo": CLIENT_INFO,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = orjson.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": {**params, "_meta": meta}})
    parts = urlsplit(url)
    name = f"Mcp-Name: {params['name']}\r\n" if "name" in params else ""
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Accept: {ACCEPT}\r\nMcp-Protocol-Version: {MODERN_VERSION}\r\nMcp-Method: {method}\r\n{name}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None, url
    return parts.hostname, parts.port


def initialize_message(request_id: int = 0) -> dict[str, Any]:
    params = {"protocolVersion": HANDSHAKE_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


class HttpSession:
    """A 2025-11-25 Streamable HTTP session: the handshake, then messages posted with its session id.

    It holds no connection of its own (the shared client's pool carries its
    POSTs), which is what an idle Streamable HTTP session is: server state only.
    """

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.session_id = ""

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": ACCEPT, "Content-Type": "application/json", "Mcp-Protocol-Version": HANDSHAKE_VERSION}
        if self.session_id:
            headers["Mcp-Session-Id"] = self.session_id
        return headers

    async def open(self) -> None:
        reply = await self.post(initialize_message())
        reply.raise_for_status()
        self.session_id = reply.headers["mcp-session-id"]
        (await self.post(INITIALIZED)).raise_for_status()

    async def post(self, message: dict[str, Any]) -> httpx2.Response:
        """POST one message and read its whole reply (a JSON body or an SSE stream the server ends)."""
        return await self.http.post(self.url, content=orjson.dumps(message), headers=self._headers())

    @asynccontextmanager
    async def stream(self, message: dict[str, Any]) -> AsyncIterator[httpx2.Response]:
        """POST one request and yield its reply unread: a long call whose stream stays open."""
        async with self.http.stream("POST", self.url, content=orjson.dumps(message), headers=self._headers()) as reply:
            yield reply

    async def close(self) -> None:
        """End the session (HTTP DELETE with its id)."""
        await self.http.delete(self.url, headers=self._headers())

    async def ping(self, request_id: int) -> bool:
        reply = await self.post({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        return reply.status_code == 200 and b'"result"' in reply.content
