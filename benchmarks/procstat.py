"""What the benchmarks read of a server from /proc: its resident memory and CPU time, its child processes included.

emcp runs SQLite queries in worker processes: a server's memory and CPU are
its own and its workers', or the figures would flatter it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for process {pid}")


def _children(pid: int) -> list[int]:
    """The live child processes of `pid` (every thread's: a child belongs to the thread that started it)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _tree_sum(pid: int, read: Callable[[int], int]) -> int:
    total = read(pid)
    for child in _children(pid):
        try:
            total += read(child)
        except (OSError, RuntimeError):  # the child ended meanwhile
            continue
    return total


def rss_kib(pid: int) -> int:
    """Resident memory of the process and its children."""
    return _tree_sum(pid, lambda p: _status_kib(p, "VmRSS:"))


def peak_rss_kib(pid: int) -> int:
    """The high-water marks of resident memory (VmHWM) of the process and its children, added up.

    No sampling interval can miss a peak; added up, the peaks of several
    processes are an upper bound of their joint peak.
    """
    return _tree_sum(pid, lambda p: _status_kib(p, "VmHWM:"))


def reset_peak_rss(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux `clear_refs` 5), so a peak is the peak of what follows.

    Allowed on one's own processes; False where the kernel refuses, and then only sampling tells the peak.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        for child in _children(pid):
            Path(f"/proc/{child}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _ticks(pid: int, reaped_children: bool) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # utime, stime; then cutime, cstime: the children that ended and were waited for.
    return sum(int(f) for f in fields[11 : 15 if reaped_children else 13])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its children, live or ended (clock-tick resolution)."""
    ticks = _ticks(pid, reaped_children=True)
    for child in _children(pid):
        try:
            ticks += _ticks(child, reaped_children=True)
        except OSError:  # ended meanwhile: its time is in the parent's cutime once waited for
            continue
    return ticks / os.sysconf("SC_CLK_TCK")
