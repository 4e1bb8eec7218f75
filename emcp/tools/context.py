"""What a running tool call can reach, and the error type it raises for the caller to fix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mcp_types as types
import trio

from emcp.errors import ActionableError
from emcp.settings import BlocksSettings, QuerySettings
from emcp.sources.base import Source
from emcp.sources.schema_cache import SchemaCache
from emcp.tools.spec import ToolSpec

if TYPE_CHECKING:
    from emcp.blocks.stream import ResultStore

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class ToolFailure(ActionableError):
    """A call that cannot succeed as asked: becomes an `isError` result with the hint."""


@dataclass
class ToolOutput:
    """A result with more than its structured content: its own text, or extra content blocks."""

    structured: dict[str, Any]
    #: The text content; None = the structured content as JSON.
    text: str | None = None
    extra: list[types.ContentBlock] = field(default_factory=list)


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    return None


@dataclass
class Results:
    """Where a call's large result goes: the server's store, owned by the calling session."""

    store: ResultStore
    owner: str
    #: The caller's name: only they may download the result.
    caller: str
    #: The session's nursery: block producers outlive the call that started them, not the session.
    nursery: trio.Nursery
    settings: BlocksSettings


@dataclass
class ToolCall:
    spec: ToolSpec
    source: Source
    settings: QuerySettings
    # Server-wide figures for node_status (sessions, requests, uptime).
    server_statistics: Callable[[], dict[str, Any]]
    tool_names: list[str]
    # Seconds the call may run (0 = no limit): the server's default, or what the call asked for.
    timeout: float
    # The server's remembered table schemas (the query tool builds its SQL against them).
    schema: SchemaCache
    report_progress: Progress = _no_progress
    # Counts the call's source query against its session while it runs.
    track_query: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
    # None when large results cannot stream (blocks disabled, or no session to own them).
    results: Results | None = None
