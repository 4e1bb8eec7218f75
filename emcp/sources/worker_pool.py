"""The SQLite source's worker processes: started on demand, lent one query at a time, killed to stop one.

A worker that answered its query to the end (or with an error) is kept for
the next one, up to `idle_max` idle workers; any other ending (a cancel, a
caller that stopped reading, a worker that died) kills it, which is also how
a running statement is stopped: at once, whatever SQLite is doing. The
number of workers at work is bounded by the source's limiter, the same one
its catalogue threads borrow from.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from emcp.sources import sqlite_worker
from emcp.sources.base import SourceError

_READ_SIZE = 1 << 20


class WorkerGone(Exception):
    """The worker process ended while a query was waiting for it."""


class Worker:
    """One worker process, spoken to in `sqlite_worker`'s frames."""

    def __init__(self, process: trio.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._buffer = bytearray()
        #: True between queries: the worker answered its last one to the end and waits for the next.
        self.ready = True

    @classmethod
    async def start(cls) -> Worker:
        # -I: no user site or PYTHON* variables, nothing but the standard library and this file.
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-I", sqlite_worker.__file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
        except OSError as exc:  # out of processes, memory or file descriptors
            raise SourceError(
                "source_unavailable",
                f"cannot start a SQLite worker process: {exc}",
                hint="retry later; the server is short of processes or memory",
            ) from exc
        return cls(process)

    async def request(self, message: Any) -> None:
        self.ready = False
        try:
            await self._stdin.send_all(sqlite_worker.frame(message))
        except trio.BrokenResourceError as exc:
            raise self._gone() from exc

    async def reply(self) -> tuple[Any, ...]:
        """The next reply frame; an `end` or `error` one makes the worker ready for its next query."""
        (size,) = sqlite_worker.LENGTH.unpack(await self._read(sqlite_worker.LENGTH.size))
        message: tuple[Any, ...] = pickle.loads(await self._read(size))
        if message[0] in ("end", "error"):
            self.ready = True
        return message

    async def _read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = await self._stdout.receive_some(max(_READ_SIZE, size - len(self._buffer)))
            if not chunk:
                raise self._gone()
            self._buffer += chunk
        data = bytes(memoryview(self._buffer)[:size])
        del self._buffer[:size]
        return data

    def _gone(self) -> WorkerGone:
        return WorkerGone(f"the SQLite worker process ended (exit status {self.process.poll()})")

    async def stop(self) -> None:
        """Kill the worker and reap it; shielded, so it completes even for a cancelled caller."""
        self.process.kill()
        with trio.CancelScope(shield=True):
            await self._stdin.aclose()
            await self._stdout.aclose()
            await self.process.wait()


class WorkerPool:
    def __init__(self, limiter: trio.CapacityLimiter, idle_max: int) -> None:
        self._limiter = limiter
        self._idle_max = idle_max
        self._idle: list[Worker] = []
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    @asynccontextmanager
    async def lease(self) -> AsyncIterator[Worker]:
        """A worker for one query: an idle one, or a new one once the limiter lets it run."""
        borrower = object()
        await self._limiter.acquire_on_behalf_of(borrower)
        worker: Worker | None = None
        try:
            while self._idle and worker is None:
                worker = self._idle.pop()
                if worker.process.poll() is not None:  # died while idle (the OOM killer, an operator)
                    await worker.stop()
                    worker = None
            if worker is None:
                worker = await Worker.start()
            yield worker
        finally:
            try:
                if worker is not None:
                    if worker.ready and not self._closed and len(self._idle) < self._idle_max:
                        self._idle.append(worker)
                    else:
                        await worker.stop()
            finally:
                self._limiter.release_on_behalf_of(borrower)

    async def aclose(self) -> None:
        """Stop the idle workers; a worker still lent out is stopped when its query ends."""
        self._closed = True
        while self._idle:
            await self._idle.pop().stop()
