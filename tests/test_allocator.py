"""glibc malloc tuning for block streams: a block's buffers are reused, not faulted in afresh."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from emcp.allocator import MAX_MMAP_THRESHOLD, Thresholds, thresholds_for, tune_for_blocks

# A block stream's allocation pattern: a block of about the block size, its copy with HTTP chunk
# framing, a window of two blocks kept; run in a fresh interpreter, tuned or not, counting page faults.
PATTERN = """
import resource, sys
from emcp.allocator import tune_for_blocks
if sys.argv[1] == "tuned":
    assert tune_for_blocks(512 * 1024)
window = []
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(300):
    block = bytes(500_000 + (i % 7) * 3000)
    framed = b"%x\\r\\n" % len(block) + block + b"\\r\\n"
    window.append(block)
    if len(window) > 2:
        window.pop(0)
    del framed
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# A resources/read reply's: a block's text escaped by orjson, which first reserves several times the text.
REPLIES = """
import resource, sys
import orjson
from emcp.allocator import tune_for_blocks
assert tune_for_blocks(512 * 1024)
text = '[1,"dev-1",2.5]\\n' * 32_768
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for i in range(300):
    reply = orjson.dumps({"text": text[: 500_000 + (i % 7) * 3000]})
    del reply
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str, pattern: str = PATTERN) -> int:
    done = subprocess.run([sys.executable, "-c", pattern, mode], capture_output=True, text=True, check=True, timeout=60)
    return int(done.stdout)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_tuned_malloc_reuses_block_buffers_instead_of_faulting_them_in() -> None:
    plain, tuned = faults("plain"), faults("tuned")
    # 300 blocks of ~0.5 MB and their copies: ~70,000 pages when every one is fresh.
    assert plain > 20_000
    assert tuned < plain / 10


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="tunes glibc's malloc only")
def test_tuned_malloc_keeps_orjsons_reservation_for_a_reply_in_the_heap() -> None:
    # 300 replies of ~600 KB: ~45,000 pages when each one's reservation is mapped afresh
    # (as with an mmap threshold of 4 x the block size, below the reservation).
    assert faults("tuned", REPLIES) < 5_000


def test_thresholds_follow_the_block_size_within_glibc_bounds() -> None:
    assert thresholds_for(512 * 1024) == Thresholds(mmap=8 * 1024 * 1024, trim=16 * 1024 * 1024)
    assert thresholds_for(1024).mmap == 1024 * 1024  # never below 1 MiB
    assert thresholds_for(64 * 1024 * 1024).mmap == MAX_MMAP_THRESHOLD


def test_the_operators_own_malloc_settings_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
    assert tune_for_blocks(512 * 1024) is None
