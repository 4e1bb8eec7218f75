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
        # caller -> (calls available, when that was computed, when the bucket will be full again at its rate)
        self._buckets: dict[str, tuple[float, float, float]] = {}

    def take(self, caller: str, rate: float, burst: int) -> float:
        """0.0 when `caller` may call now (the call is counted); else the seconds until it may."""
        if rate <= 0:
            return 0.0
        now = self._clock()
        available, then, _ = self._buckets.get(caller, (float(burst), now, now))
        available = min(float(burst), available + (now - then) * rate)
        allowed = available >= 1.0
        if allowed:
            available -= 1.0
        self._buckets[caller] = (available, now, now + (burst - available) / rate)
        if allowed and len(self._buckets) > PRUNE_ABOVE:
            self._prune(now)
        return 0.0 if allowed else (1.0 - available) / rate

    def _prune(self, now: float) -> None:
        # Each bucket by its own caller's rate: callers' rates differ (a token may have its own).
        full = [key for key, (_, _, full_at) in self._buckets.items() if full_at <= now]
        for key in full:
            del self._buckets[key]
