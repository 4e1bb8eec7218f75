"""Idle sessions: how many a server holds and what each costs it in resident memory.

    python benchmarks/idle_sessions.py --worker KIND URL   (driven by versus_sdk.py; commands on stdin)

An idle session is a client that did the MCP handshake and then says nothing:
- `sse`: an open `GET` event stream, `initialize` and `notifications/initialized`
  posted to its endpoint (the reply read from the stream), then only the stream;
- `streamable-http` (2025-11-25): the `initialize` POST and the
  `notifications/initialized` POST, then nothing: server state and no connection;
- `websocket`: the upgrade and the handshake on `rawws.RawWebSocket`, then only the socket.
(2026-07-28 Streamable HTTP is stateless: there is no idle session to hold.)

The clients are light (raw sockets, one shared httpx2 pool for POSTs) and run
in worker processes of at most `CHUNK` sessions each, so the client side stays
under the file-descriptor limit however many sessions the server is asked to
hold. A worker obeys one-line commands on stdin and answers one JSON line on stdout:
`open N` (opens N more sessions), `check` (how many are still open; a `ping`
on a sample of them), `close` (closes them all); EOF ends it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urljoin, urlsplit

import httpx2
import orjson
import trio
from procstat import rss_kib
from rawhttp import INITIALIZED, HttpSession, host_port, initialize_message
from rawws import RawWebSocket

KINDS = ("sse", "streamable-http", "websocket")
#: Sessions per client process: under a 20,000 descriptor limit with room for the process's own.
CHUNK = 9000
#: Sessions opened at once by one worker: enough to keep the server busy, few enough not to time out.
OPENING = 64
#: Sessions per worker that `check` pings (spread over all of them).
PING_SAMPLE = 50
#: Seconds one session may take to open: past it, the server is taken not to hold it (a full accept
#: queue when the server is out of descriptors, say).
OPEN_TIMEOUT = 20
#: How a session fails to open, counted by kind rather than raised.
OPEN_ERRORS = (OSError, trio.TooSlowError, trio.BrokenResourceError, AssertionError, EOFError, httpx2.HTTPError)


def raise_fd_limit() -> int:
    """Raise this process's soft descriptor limit to the hard one (inherited by servers started after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Idle(Protocol):
    """One held session: whether its connection is still up, and a ping the server must answer."""

    alive: bool

    async def ping(self, request_id: int) -> bool: ...

    async def aclose(self) -> None: ...


class SseIdle:
    """An open legacy SSE stream whose session did the handshake; a reader task notices the end of it."""

    def __init__(self, stream: trio.SocketStream, http: httpx2.AsyncClient, endpoint: str) -> None:
        self.stream, self.http, self.endpoint = stream, http, endpoint
        self.alive = True

    @classmethod
    async def open(cls, url: str, http: httpx2.AsyncClient, nursery: trio.Nursery) -> SseIdle:
        host, port = host_port(url)
        stream = await trio.open_tcp_stream(host, port)
        try:
            path = urlsplit(url).path
            await stream.send_all(
                f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n".encode()
            )
            seen = await _read_until(stream, rb"event: endpoint\r?\ndata: (\S+)\r?\n")
            found = re.search(rb"event: endpoint\r?\ndata: (\S+)\r?\n", seen)
            assert found is not None
            self = cls(stream, http, urljoin(url, found.group(1).decode()))
            (await self.post(initialize_message())).raise_for_status()
            await _read_until(stream, rb'"result"')  # the initialize reply, on the stream
            (await self.post(INITIALIZED)).raise_for_status()
        except BaseException:
            await stream.aclose()
            raise
        nursery.start_soon(self._drain)
        return self

    async def post(self, message: dict[str, Any]) -> httpx2.Response:
        headers = {"Content-Type": "application/json"}
        return await self.http.post(self.endpoint, content=orjson.dumps(message), headers=headers)

    async def _drain(self) -> None:
        """Read (and drop) keepalives and replies until the server ends the stream."""
        try:
            while await self.stream.receive_some(1 << 16):
                pass
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        self.alive = False

    async def ping(self, request_id: int) -> bool:
        reply = await self.post({"jsonrpc": "2.0", "id": request_id, "method": "ping"})
        return reply.status_code == 202  # the session is known; the reply goes out on the stream

    async def aclose(self) -> None:
        await self.stream.aclose()


class HttpIdle:
    """A Streamable HTTP (2025-11-25) session: the handshake, then nothing; the server keeps its state."""

    alive = True

    def __init__(self, session: HttpSession) -> None:
        self.session = session

    @classmethod
    async def open(cls, url: str, http: httpx2.AsyncClient, nursery: trio.Nursery) -> HttpIdle:
        session = HttpSession(http, url)
        await session.open()
        return cls(session)

    async def ping(self, request_id: int) -> bool:
        return await self.session.ping(request_id)

    async def aclose(self) -> None:
        """End the session as the protocol says, with a DELETE: else it stays and counts against the server's cap."""
        await self.session.close()


class WsIdle:
    """A WebSocket session after its handshake; a reader task answers pings and counts replies."""

    def __init__(self, ws: RawWebSocket) -> None:
        self.ws = ws
        self.alive = True
        self.replies = 0
        self.replied = trio.Event()

    @classmethod
    async def open(cls, url: str, http: httpx2.AsyncClient, nursery: trio.Nursery) -> WsIdle:
        ws = await RawWebSocket.connect(*host_port(url))
        try:
            await ws.initialize()
        except BaseException:
            await ws.aclose()
            raise
        self = cls(ws)
        nursery.start_soon(self._read)
        return self

    async def _read(self) -> None:
        try:
            while True:
                await self.ws.receive(keep=0)
                self.replies += 1
                self.replied.set()
                self.replied = trio.Event()
        except (trio.BrokenResourceError, trio.ClosedResourceError, AssertionError):
            pass
        self.alive = False

    async def ping(self, request_id: int) -> bool:
        before = self.replies
        await self.ws.send({"id": request_id, "method": "ping"})
        while self.replies == before and self.alive:
            await self.replied.wait()
        return self.replies > before

    async def aclose(self) -> None:
        await self.ws.aclose()


OPENERS = {"sse": SseIdle.open, "streamable-http": HttpIdle.open, "websocket": WsIdle.open}


async def _read_until(stream: trio.SocketStream, pattern: bytes) -> bytes:
    seen = b""
    while not re.search(pattern, seen):
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            raise EOFError(f"the server closed the stream: {seen[:200]!r}")
        seen += chunk
    return seen


def error_kind(exc: BaseException) -> str:
    """An error's kind, for counting: its type and first line, URLs (session ids) left out."""
    first = re.sub(r"https?://\S+", "URL", (str(exc).splitlines() or [""])[0])
    return f"{type(exc).__name__}: {first[:100]}"


# -- the worker process ------------------------------------------------------------


async def worker(kind: str, url: str) -> None:
    raise_fd_limit()
    held: list[Idle] = []
    limits = httpx2.Limits(max_connections=OPENING, max_keepalive_connections=OPENING)
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    lines = _lines(stdin)
    async with httpx2.AsyncClient(limits=limits, timeout=60) as http, trio.open_nursery() as readers:
        async for command in lines:
            verb, *rest = command.split()
            if verb == "open":
                reply = await _open(kind, url, int(rest[0]), http, readers, held)
            elif verb == "check":
                reply = await _check(held)
            else:  # close
                for session in held:
                    await session.aclose()
                held.clear()
                reply = {"closed": True}
            print(orjson.dumps(reply).decode(), flush=True)
        readers.cancel_scope.cancel()


async def _lines(stream: trio.lowlevel.FdStream) -> Any:
    buffer = b""
    while chunk := await stream.receive_some():
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode()


async def _open(
    kind: str, url: str, n: int, http: httpx2.AsyncClient, readers: trio.Nursery, held: list[Idle]
) -> dict[str, Any]:
    errors: Counter[str] = Counter()
    limiter = trio.CapacityLimiter(OPENING)
    started = time.perf_counter()

    async def one() -> None:
        async with limiter:
            try:
                with trio.fail_after(OPEN_TIMEOUT):
                    held.append(await OPENERS[kind](url, http, readers))
            except OPEN_ERRORS as exc:
                errors[error_kind(exc)] += 1

    async with trio.open_nursery() as nursery:
        for _ in range(n):
            nursery.start_soon(one)
    return {"opened": n - errors.total(), "seconds": time.perf_counter() - started, "errors": dict(errors)}


async def _check(held: list[Idle]) -> dict[str, Any]:
    sample = held[:: max(1, len(held) // PING_SAMPLE)][:PING_SAMPLE]
    answered = 0

    async def one(i: int, session: Idle) -> None:
        nonlocal answered
        try:
            with trio.fail_after(30):
                ok = await session.ping(1000 + i)
                answered += ok
        except (OSError, trio.TooSlowError, trio.BrokenResourceError, httpx2.HTTPError):
            pass

    async with trio.open_nursery() as nursery:
        for i, session in enumerate(sample):
            nursery.start_soon(one, i, session)
    return {"alive": sum(s.alive for s in held), "pinged": len(sample), "answered": answered}


# -- the parent's side --------------------------------------------------------------


@dataclass
class IdleFigures:
    """What a server did with `requested` idle sessions of one transport."""

    server: str
    transport: str
    requested: int
    opened: int
    alive: int
    pinged: int
    answered: int
    open_seconds: float
    rss_before_kib: int
    rss_after_kib: int
    kib_per_session: float
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def held(self) -> bool:
        return self.opened == self.alive == self.requested and self.answered == self.pinged


class Worker:
    """One client process holding up to `CHUNK` idle sessions."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        assert process.stdout is not None and process.stdin is not None
        self._out = process.stdout
        self._buffer = b""

    @classmethod
    async def start(cls, kind: str, url: str) -> Worker:
        process = await trio.lowlevel.open_process(
            [sys.executable, __file__, "--worker", kind, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        return cls(process)

    async def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        await self.process.stdin.send_all(command.encode() + b"\n")
        while b"\n" not in self._buffer:
            chunk = await self._out.receive_some()
            if not chunk:
                raise RuntimeError(f"an idle-session worker exited ({command!r})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return orjson.loads(line)

    async def aclose(self) -> None:
        assert self.process.stdin is not None
        await self.process.stdin.aclose()
        with trio.move_on_after(30):
            await self.process.wait()
        if self.process.returncode is None:
            self.process.kill()
            await self.process.wait()


async def measure_idle(
    server: str, pid: int, kind: str, url: str, rungs: list[int], settle: float = 2.0
) -> list[IdleFigures]:
    """Idle sessions of `kind` on the server at `url` (process `pid`), up a ladder of counts.

    Sessions are opened up to each rung in turn and kept, and the server's RSS
    per session at each is (RSS then - RSS before any) / sessions open: one pass
    gives every rung, the largest being the most sessions held. The climb stops
    at the first rung not held. A warm-up opens and closes a few sessions
    first, so the server's first-use costs (imports, caches, pools) are not
    charged to the idle sessions.
    """
    workers: list[Worker] = []
    figures: list[IdleFigures] = []
    errors: Counter[str] = Counter()
    try:
        workers.append(await Worker.start(kind, url))
        await workers[0].ask("open 16")
        await workers[0].ask("close")
        await trio.sleep(settle)
        before = rss_kib(pid)
        counts: list[int] = []  # sessions each worker holds
        for n in rungs:
            while len(workers) * CHUNK < n:
                workers.append(await Worker.start(kind, url))
            counts += [0] * (len(workers) - len(counts))
            wanted = [min(CHUNK, n - i * CHUNK) - counts[i] for i in range(len(workers))]
            opened: dict[int, dict[str, Any]] = {}
            started = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for i, count in enumerate(wanted):
                    if count > 0:
                        nursery.start_soon(_ask_open, workers[i], count, opened, i)
            seconds = time.perf_counter() - started
            for i, reply in opened.items():
                counts[i] += reply["opened"]
                errors.update(reply["errors"])
            await trio.sleep(settle)
            after = rss_kib(pid)
            checks = [await w.ask("check") for w in workers]
            figures.append(
                IdleFigures(
                    server=server,
                    transport=kind,
                    requested=n,
                    opened=sum(counts),
                    alive=sum(c["alive"] for c in checks),
                    pinged=sum(c["pinged"] for c in checks),
                    answered=sum(c["answered"] for c in checks),
                    open_seconds=seconds,
                    rss_before_kib=before,
                    rss_after_kib=after,
                    kib_per_session=(after - before) / max(sum(counts), 1),
                    errors=dict(errors.most_common(5)),
                )
            )
            report(figures[-1])
            if not figures[-1].held:
                break
    finally:
        for w in workers:
            await w.aclose()
    return figures


async def _ask_open(worker: Worker, count: int, into: dict[int, dict[str, Any]], key: int) -> None:
    into[key] = await worker.ask(f"open {count}")


def report(f: IdleFigures) -> None:
    print(
        f"idle {f.transport:<16} {f.server:<5} {f.opened:>6}/{f.requested:<6} opened, {f.alive} alive, "
        f"ping {f.answered}/{f.pinged}   {f.kib_per_session:6.1f} KiB/session   "
        f"({f.open_seconds:.1f} s to open){'   errors: ' + str(f.errors) if f.errors else ''}",
        flush=True,
    )


def as_json(figures: IdleFigures) -> dict[str, Any]:
    return {**asdict(figures), "held": figures.held}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "URL"), required=True)
    args = parser.parse_args()
    kind, url = args.worker
    assert kind in KINDS, kind
    trio.run(worker, kind, url)


if __name__ == "__main__":
    main()
