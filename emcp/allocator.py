"""glibc's malloc tuned for block streams, so a block's buffers come from the heap instead of fresh pages.

A block stream allocates a few buffers of about `blocks.size` for every block
(the block itself, the HTTP chunk or JSON-RPC message that carries it) and
frees them a moment later. One of them is asked for much larger than it ends
up: orjson, escaping a block's text into a `resources/read` reply, first
reserves room for the worst case, several times the text's length (measured:
above 6 MiB for a 512 KiB text, above 3 MiB for 420 kB), and writes only the
~600 KB it needs. By default glibc serves such sizes with mmap(), or from the
heap top that it hands back to the kernel as soon as about twice the largest
such size lies free there; either way the next block faults its pages in
again, zeroed by the kernel. On the 1 GiB benchmark that was 1.6 million page
faults per GiB streamed and 10-15 % of the download's time.

Raising the mmap threshold above a block's buffers, that reservation included,
and the trim threshold to twice that, keeps them in the heap: the memory is
reused instead of being returned and faulted back. A threshold set this way is
fixed (glibc no longer raises it after freeing a mapped chunk, as it does on
its own), so it must clear the largest of them: with 4 x the block size,
orjson's reservations were mapped afresh for every reply (145,000 page faults
on 0.45 GiB read by resources/read, against 25,000 for the download). The cost
is that freed heap up to the trim threshold stays mapped between bursts, in
each malloc arena (the event loop's and each worker thread's); only the pages
that were written are resident, so a reservation's unwritten tail costs
address space, not memory.

An operator who sets glibc's own knobs (`MALLOC_*_` variables,
`GLIBC_TUNABLES`) keeps them: emcp then changes nothing.
"""

from __future__ import annotations

import ctypes
import logging
import os
import platform
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# mallopt() parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit builds.
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024

OPERATOR_KNOBS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "GLIBC_TUNABLES")


@dataclass(frozen=True, slots=True)
class Thresholds:
    mmap: int
    trim: int


def thresholds_for(block_size: int) -> Thresholds:
    """Room below the mmap threshold for one block's buffers, orjson's reservation for its escaped text included.

    That reservation, about 8 x the text (above 6 MiB for a 512 KiB text), is
    the largest: 16 x the block size clears it for any text up to the size.
    """
    mmap = min(MAX_MMAP_THRESHOLD, max(16 * block_size, 1024 * 1024))
    # Twice the mmap threshold is room enough (page faults measured: as few as with 4x), and it is
    # what each malloc arena (the event loop's, each worker thread's) may keep once freed.
    return Thresholds(mmap=mmap, trim=2 * mmap)


def tune_for_blocks(block_size: int) -> Thresholds | None:
    """Apply `thresholds_for(block_size)` to this process; None when not glibc or the operator chose already."""
    chosen = [name for name in OPERATOR_KNOBS if name in os.environ]
    if chosen:
        logger.info("malloc left as configured by %s", ", ".join(chosen))
        return None
    if platform.libc_ver()[0] != "glibc":
        return None
    libc = ctypes.CDLL(None)
    wanted = thresholds_for(block_size)
    if not (libc.mallopt(M_MMAP_THRESHOLD, wanted.mmap) and libc.mallopt(M_TRIM_THRESHOLD, wanted.trim)):
        logger.warning("glibc refused the malloc thresholds %s; large results may stream slower", wanted)
        return None
    logger.debug("malloc thresholds for block streams: %s", wanted)
    return wanted
