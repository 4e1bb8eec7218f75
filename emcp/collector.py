"""Python's cyclic garbage collector, tuned for a server that runs for months.

By default the collector runs its young generation every 700 net allocations
of container objects, which a busy server makes in well under a millisecond,
and every tenth of those promotes survivors, until a full collection walks
the whole heap: every module, the SDK's and pydantic's schemas and
validators, every session. Those pauses land on requests: in
`benchmarks/soak.py` (300 WebSocket sessions, 200 calls/s) the client's p99
was 222 ms with the defaults and 81 ms with a young-generation threshold of
50,000 (the server's own p95 went from 25 ms to 10 ms). Reference counting
still frees nearly everything at once; the collector is only for cycles, so
running it less often costs a little memory, not correctness.

Once the server is up, `freeze_startup_objects` moves everything built so far
(modules, tool specs, validators) out of the collector's sight for good: no
later collection walks it again.
"""

from __future__ import annotations

import gc

# Collections of the middle and the oldest generation per collection of the one below
# (Python's defaults: 10 and 10). A full collection walks the whole heap: rarer is better.
OLDER_EVERY = (20, 100)


def tune_collector(young_threshold: int) -> None:
    """Collect the young generation every `young_threshold` allocations; 0 leaves Python's defaults."""
    if young_threshold:
        gc.set_threshold(young_threshold, *OLDER_EVERY)


def freeze_startup_objects() -> None:
    """Collect once, then exclude every surviving object from all later collections."""
    gc.collect()
    gc.freeze()
