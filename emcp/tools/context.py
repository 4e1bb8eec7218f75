"""What a running tool call can reach, and the error type it raises for the caller to fix."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from emcp.settings import QuerySettings
from emcp.sources.base import Source
from emcp.tools.spec import ToolSpec

Progress = Callable[[float, float | None, str | None], Awaitable[None]]


class ToolFailure(Exception):
    """A call that cannot succeed as asked: becomes an `isError` result with the hint, never a crash."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


async def _no_progress(progress: float, total: float | None, message: str | None) -> None:
    return None


@dataclass
class ToolCall:
    spec: ToolSpec
    source: Source
    settings: QuerySettings
    # Server-wide figures for node_status (sessions, requests, uptime).
    server_statistics: Callable[[], dict[str, Any]]
    tool_names: list[str]
    report_progress: Progress = _no_progress
    # Counts the call's source query against its session while it runs.
    track_query: Callable[[], AbstractContextManager[None]] = field(default=nullcontext)
