"""Shared fixtures: the demo data (generated once per run), a real server on 127.0.0.1
port 0, and MCP client sessions over the SDK's own `sse_client`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client

from emcp import EmcpServer, Settings, load_settings, open_server
from emcp.sources.demo import ensure_demo_data

# Property tests draw the same examples on every run, so a suite that passed passes again;
# HYPOTHESIS_PROFILE=explore draws new ones on each run, to look for what those miss.
hypothesis.settings.register_profile("emcp", derandomize=True, database=None, deadline=None)
hypothesis.settings.register_profile("explore", database=None, deadline=None)
hypothesis.settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "emcp"))


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_demo_data(tmp_path_factory.mktemp("demo"))


@pytest.fixture
def settings(demo_dir: Path) -> Settings:
    return load_settings(data_dir=demo_dir, http__port=0, http__graceful_timeout=1.0)


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[EmcpServer]:
    async with open_server(settings) as running:
        yield running


@asynccontextmanager
async def mcp_session(server: EmcpServer) -> AsyncIterator[ClientSession]:
    """An initialized MCP session over the legacy SSE transport, with the official client."""
    async with sse_client(server.sse_url) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


SLOW_SQL = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000000) SELECT count(*) FROM n"


def tasks_under(task: trio.lowlevel.Task) -> list[trio.lowlevel.Task]:
    """Every task under `task`, however deep (the SDK's task groups nest inside a session's)."""
    children = [child for nursery in task.child_nurseries for child in nursery.child_tasks]
    return [t for child in children for t in (child, *tasks_under(child))]


async def wait_running(server: EmcpServer, n: int) -> None:
    """Until `n` source queries run: the moment a test can cancel or disconnect mid-query."""
    stats = server.source.statistics()
    await stats.watch.wait_until(lambda: stats.running >= n)


def rpc(method: str, id: int | None = None, **params: Any) -> dict[str, Any]:
    """A JSON-RPC 2.0 request (with `id`) or notification, as a raw client puts it on the wire."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
    if id is not None:
        message["id"] = id
    return message
