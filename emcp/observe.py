"""Counters that tests and supervisors can wait on without polling.

A long-lived object bumps its `Watch` whenever its statistics change; a waiter
parks until a predicate over those statistics holds. This is how a test learns
that a query was interrupted or that a session left the registry without a
sleep loop, and how shutdown waits for sessions to drain.
"""

from __future__ import annotations

from collections.abc import Callable

import trio


class Watch:
    """Wakes every waiter whenever `changed()` is called."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event = trio.Event()

    def changed(self) -> None:
        """Wake current waiters. Sync and cheap: safe to call on every counter bump."""
        event, self._event = self._event, trio.Event()
        event.set()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Return once `predicate()` is true; re-checked after every change."""
        while not predicate():
            await self._event.wait()
