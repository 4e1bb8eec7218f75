"""Calls per second per caller: one token bucket each, refilled continuously.

A bucket holds up to `burst` calls and refills at `rate` per second, so a
caller may burst after a quiet spell but not sustain more than the rate. The
limit is per caller (a token's name, a JWT subject, or every anonymous client
together), across all of its sessions: opening more sessions does not buy more
calls. Buckets that have refilled completely carry no state worth keeping and
are dropped once there are many.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

# Past this many buckets, the full ones are forgotten (they are indistinguishable from new ones).
PRUNE_ABOVE = 1024


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = trio.current_time) -> None:
        self._clock = clock
        # caller -> (calls available, when that was computed)
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, caller: str, rate: float, burst: int) -> float:
        """0.0 when `caller` may call now (the call is counted); else the seconds until it may."""
        if rate <= 0:
            return 0.0
        now = self._clock()
        available, then = self._buckets.get(caller, (float(burst), now))
        available = min(float(burst), available + (now - then) * rate)
        if available < 1.0:
            self._buckets[caller] = (available, now)
            return (1.0 - available) / rate
        self._buckets[caller] = (available - 1.0, now)
        if len(self._buckets) > PRUNE_ABOVE:
            self._prune(now, rate, burst)
        return 0.0

    def _prune(self, now: float, rate: float, burst: int) -> None:
        full = [key for key, (left, then) in self._buckets.items() if left + (now - then) * rate >= burst]
        for key in full:
            del self._buckets[key]
