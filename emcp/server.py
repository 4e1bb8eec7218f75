"""Start and stop emcp: the lifecycle the CLI uses and that Trio programs can embed.

    async with emcp.open_server(settings) as server:   # bound, serving
        print(server.sse_url)
    # drained and stopped here

or `await nursery.start(emcp.serve, settings)`. `open_core(settings)` is the same
server without the HTTP listener (what `emcp stdio` runs on). Shutdown order: stop admitting
sessions and stop listening, give in-flight requests the grace period, then
cancel every session (which interrupts their queries), then release the source.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve as hypercorn_serve
from mcp.server.lowlevel import Server

from emcp.app import create_app
from emcp.auth import TokenBook
from emcp.auth.oauth import JwtVerifier, verifier_for
from emcp.blocks.stream import ResultStore
from emcp.dispatch import build_mcp_server, exchange_runner, session_runner
from emcp.nursery import SessionRegistry, open_session_registry
from emcp.ops import Observability
from emcp.settings import Settings, SettingsError
from emcp.sources import open_source
from emcp.sources.base import Source
from emcp.tools.toolset import ToolSet
from emcp.transport.host_guard import is_loopback
from emcp.transport.sse import SSE_PATH
from emcp.transport.streamable_http import MCP_PATH
from emcp.transport.websocket import WS_PATH

logger = logging.getLogger(__name__)

#: Called with the SDK `Server` once emcp's handlers are on it, before any session starts:
#: how an embedding program (or a test) adds or wraps handlers.
Customize = Callable[[Server[Any]], None]


class EmcpServer:
    """A running server: its addresses and the live objects behind them."""

    def __init__(self, settings: Settings, source: Source, toolset: ToolSet, ops: Observability) -> None:
        self.settings = settings
        self.source = source
        self.toolset = toolset
        self.ops = ops
        self.tokens = TokenBook([])
        self.jwt: JwtVerifier | None = None
        self.results = ResultStore(settings.blocks)
        self.registry: SessionRegistry
        self.urls: list[str] = []
        self.started_at = time.time()

    @property
    def url(self) -> str:
        return self.urls[0]

    @property
    def mcp_url(self) -> str:
        return self.url + MCP_PATH

    @property
    def sse_url(self) -> str:
        return self.url + SSE_PATH

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http") + WS_PATH

    def statistics(self) -> dict[str, Any]:
        return {
            "uptime_s": round(time.time() - self.started_at, 3),
            **asdict(self.registry.statistics()),
            **self.source.statistics().snapshot(),
            **self.results.statistics(),
        }


def _hypercorn_config(settings: Settings) -> Config:
    config = Config()
    host = settings.http.host
    config.bind = [f"[{host}]:{settings.http.port}" if ":" in host else f"{host}:{settings.http.port}"]
    config.backlog = settings.http.backlog
    # emcp's own drain (registry.drain) ends every stream within graceful_timeout; hypercorn's cut-off of
    # connections comes after it, so a stream ended at shutdown ends cleanly rather than being cut.
    config.graceful_timeout = settings.http.graceful_timeout + SHUTDOWN_MARGIN
    config.websocket_ping_interval = settings.http.ws_ping_interval or None  # 0 = no pings
    config.websocket_max_message_size = settings.http.ws_max_message_bytes
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


# Seconds hypercorn waits for connections beyond emcp's own grace period at shutdown.
SHUTDOWN_MARGIN = 5.0


@asynccontextmanager
async def open_core(settings: Settings, customize: Customize | None = None) -> AsyncIterator[EmcpServer]:
    """The server without a listener: source, tools, MCP dispatch and the session registry.

    This is what every transport needs; `open_server` adds the HTTP listener on
    top, and `emcp stdio` serves one session from it without binding a port.
    On exit, sessions get the grace period for their in-flight requests, then
    are cancelled (interrupting their queries), then the source is released.
    `server.urls` stays empty.
    """
    ops = Observability(settings)
    source = ops.observe_source(await open_source(settings))
    try:
        server = EmcpServer(settings, source, ToolSet.load(settings, source), ops)
        # Checked before anything starts, so a bad auth config stops emcp with its message alone.
        server.tokens = _token_book(settings, server.toolset)
        server.jwt = verifier_for(settings.auth.jwt)
        if server.jwt is not None:
            await server.jwt.load()
        mcp_server = build_mcp_server(server.toolset, source, settings, server.results, server.statistics)
        ops.observe_requests(mcp_server, server.toolset.names)
        if customize is not None:
            customize(mcp_server)
        runners = session_runner(mcp_server), exchange_runner(mcp_server)
        async with open_session_registry(settings.sessions, *runners) as registry:
            server.registry = registry
            ops.observe_server(registry, server.results)
            try:
                yield server
            finally:
                with trio.CancelScope(shield=True):
                    await registry.drain(settings.http.graceful_timeout)
                # Stateless callers' results run in the registry's nursery, not in a session.
                server.results.close_all("server shutting down")
    finally:
        with trio.CancelScope(shield=True):
            await source.aclose()


def _token_book(settings: Settings, toolset: ToolSet) -> TokenBook:
    """The configured tokens; no tokens is refused off loopback unless the operator said `insecure`."""
    book = TokenBook.from_settings(settings.auth.tokens, toolset.names)
    if not book and not settings.auth.jwt.jwks and not is_loopback(settings.http.host) and not settings.auth.insecure:
        raise SettingsError(
            f"refusing to serve {settings.http.host} without auth: anyone who reaches it could query the data. "
            "Configure auth.tokens (`emcp token` prints one) or auth.jwt, bind a loopback address, "
            "or pass --insecure if something in front of emcp already authenticates"
        )
    return book


@asynccontextmanager
async def open_server(settings: Settings, customize: Customize | None = None) -> AsyncIterator[EmcpServer]:
    """`open_core` plus the HTTP listener: bound and serving when the block starts."""
    async with open_core(settings, customize) as server:
        app = create_app(server.registry, server.results, settings, server.tokens, server.jwt, server.ops)
        stop_listening = trio.Event()
        async with trio.open_nursery() as nursery:
            server.urls = await nursery.start(
                lambda task_status: hypercorn_serve(
                    app, _hypercorn_config(settings), shutdown_trigger=stop_listening.wait, task_status=task_status
                )
            )
            try:
                yield server
            finally:
                stop_listening.set()
                # Drain while hypercorn is still waiting on its connections: ending the
                # sessions is what ends their streams. open_core's own drain is then a no-op.
                with trio.CancelScope(shield=True):
                    await server.registry.drain(settings.http.graceful_timeout)


async def serve(settings: Settings, *, task_status: trio.TaskStatus[EmcpServer] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve until cancelled; `await nursery.start(serve, settings)` returns the running server."""
    async with open_server(settings) as server:
        task_status.started(server)
        await trio.sleep_forever()
