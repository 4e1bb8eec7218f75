"""Blocking database calls in worker threads that a Trio cancel really stops.

`trio.to_thread.run_sync(..., abandon_on_cancel=True)` lets the caller go at
once but leaves the thread running: the statement keeps burning CPU and its
connection cannot be reused or closed. `abandon_on_cancel=False` keeps the
thread accounted for but makes the caller deaf to cancellation. This module
takes the useful half of each: the caller's `Cancelled` is noticed at once,
turned into the engine's own interrupt (`sqlite3.Connection.interrupt()`),
and only propagates once the thread has really returned.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TypeVar

import trio

T = TypeVar("T")

logger = logging.getLogger(__name__)

#: How often the interrupt is repeated while waiting for the thread. Repeating
#: matters: SQLite forgets an interrupt that arrives when no statement is
#: running, which happens if the cancel lands just before the thread's first step.
INTERRUPT_EVERY = 0.02


class _Skipped(Exception):
    """Raised by a thread that started after its caller was cancelled; nobody reads it."""


class _Handoff:
    """The two flags the Trio side and the worker thread use to agree on who stops."""

    __slots__ = ("cancelled", "started")

    def __init__(self) -> None:
        self.started = False
        self.cancelled = False


async def run_interruptible(
    fn: Callable[[], T],
    interrupt: Callable[[], None],
    *,
    limiter: trio.CapacityLimiter,
    grace: float = 10.0,
) -> T:
    """Run `fn` in a worker thread; on cancel, `interrupt()` it and wait for it to return.

    `interrupt` is called from the Trio thread, so it must be thread-safe and
    quick (SQLite's is both). A cancel while waiting for a `limiter` token, or
    before the thread got to `fn`, means `fn` never runs. Once `fn` has started,
    `Cancelled` is raised only after `fn` returned, so whatever `fn` used is
    free again; if `fn` ignores interrupts for `grace` seconds the wait gives up
    and logs, leaving the thread behind rather than hanging the caller forever.

    The `limiter` token is borrowed by this call (not by Trio's thread
    machinery), so it is back in the limiter by the time this returns or
    raises: `limiter.borrowed_tokens` is exact, even right after a cancel.
    """
    handoff = _Handoff()
    done = trio.Event()
    token = trio.lowlevel.current_trio_token()

    def in_thread() -> T:
        # Ordering argument. This thread stores `started` then loads
        # `cancelled`; the Trio side (below) stores `cancelled` then loads
        # `started`. The GIL runs those four bytecodes in one total order that
        # respects each thread's program order. If the Trio side loads
        # started=False, its load precedes our store of `started`, hence its
        # earlier store of `cancelled` precedes our load of it: we see
        # cancelled=True and skip `fn`. So either `fn` never runs, or the Trio
        # side sees started=True and waits for `done`: never both misses.
        handoff.started = True
        if handoff.cancelled:
            raise _Skipped
        try:
            return fn()
        finally:
            # RunFinishedError: `grace` expired and the run has ended since; nobody waits.
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

    borrower = object()
    await limiter.acquire_on_behalf_of(borrower)
    try:
        # The thread is started without a second limit: the caller's limiter
        # already bounds it, and a private one-token limiter is never contended.
        return await trio.to_thread.run_sync(in_thread, abandon_on_cancel=True, limiter=trio.CapacityLimiter(1))
    except trio.Cancelled:
        handoff.cancelled = True
        if handoff.started:
            await _interrupt_until_done(interrupt, done, grace)
        raise
    finally:
        limiter.release_on_behalf_of(borrower)


async def _interrupt_until_done(interrupt: Callable[[], None], done: trio.Event, grace: float) -> None:
    """Keep interrupting until the thread reports back, shielded from the cancel that caused it."""
    with trio.move_on_after(grace, shield=True) as waiting:
        while not done.is_set():
            interrupt()
            with trio.move_on_after(INTERRUPT_EVERY):
                await done.wait()
    if waiting.cancelled_caught:
        logger.warning("a worker thread ignored interrupts for %.1f s after a cancel; leaving it running", grace)
