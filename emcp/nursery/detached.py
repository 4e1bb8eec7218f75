"""Starting a task that outlives the request which starts it, without that request's context.

Trio starts a task with a copy of its spawner's context variables. When the
spawner is an HTTP request handler, that context holds the whole request
(Quart's request and app contexts: the request object, its headers, its body),
and a long-lived task started from it (a session, a session's router) keeps
all of it alive for as long as the task runs: kilobytes per idle session.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

import trio

__all__ = ["start_soon_detached"]


def start_soon_detached(nursery: trio.Nursery, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
    """`nursery.start_soon(async_fn, *args)`, the task starting from an empty context."""
    contextvars.Context().run(nursery.start_soon, async_fn, *args)
