"""The bounded registry of live sessions, and the nursery that owns them.

emcp opens this nursery itself around the HTTP server (never quart-trio's
`app.nursery`, where one uncaught error would close it for good), so every
session outlives the request that opened it and is cancelled by its owner.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio

from emcp.auth.caller import ANONYMOUS, Caller
from emcp.nursery.detached import start_soon_detached
from emcp.nursery.session import ServeMcp, Session
from emcp.observe import Watch
from emcp.settings import SessionSettings


class RegistryFull(Exception):
    """The registry holds `max_sessions` sessions already (or drains); the message is the client's."""

    def __init__(self) -> None:
        super().__init__("the server holds its maximum number of sessions; retry later")


@dataclass(frozen=True, slots=True)
class RegistryStatistics:
    sessions_open: int
    sessions_opened: int
    sessions_rejected: int
    requests_in_flight: int
    queries_running: int
    cancellations: int
    requests_overloaded: int
    draining: bool


class SessionRegistry:
    def __init__(
        self, nursery: trio.Nursery, settings: SessionSettings, serve_mcp: ServeMcp, serve_exchange: ServeMcp
    ) -> None:
        self._nursery = nursery
        self._settings = settings
        self._serve_mcp = serve_mcp
        self._serve_exchange = serve_exchange
        self._sessions: dict[str, Session] = {}
        self._opened = 0
        self._rejected = 0
        # Cancellations and overload refusals of sessions that have already left, so totals never go down.
        self._past_cancellations = 0
        self._past_overloaded = 0
        self.draining = False
        self.watch = Watch()

    async def open_session(self, transport: str, caller: Caller = ANONYMOUS, *, stateless: bool = False) -> Session:
        """Start a new session for `caller` in the registry's nursery and return it, running.

        A `stateless` session serves one exchange: its large results belong to
        the caller and run in the registry's nursery, so they outlive the
        exchange (their TTL, `close_result` or shutdown ends them).
        """
        if self.draining or len(self._sessions) >= self._settings.max_sessions:
            self._rejected += 1
            raise RegistryFull
        session_id = secrets.token_hex(16)  # 128 random bits: unguessable, so a session id is a capability
        session = Session(
            session_id,
            transport,
            self._settings,
            self.watch.changed,
            caller=caller,
            owner=f"caller:{caller.name}" if stateless else None,
            results_nursery=self._nursery if stateless else None,
        )
        self._sessions[session_id] = session
        self._opened += 1
        started = _Started()
        # Detached: the spawner is a request handler, whose context the session must not keep alive.
        serve = self._serve_exchange if stateless else self._serve_mcp
        start_soon_detached(self._nursery, self._run, session, serve, started)
        await started.wait()
        return session

    async def _run(self, session: Session, serve: ServeMcp, started: _Started) -> None:
        try:
            await session.run(serve, task_status=started)
        finally:
            started.event.set()  # never leave open_session waiting, even for a session that failed to start
            self._past_cancellations += session.cancellations
            self._past_overloaded += session.overloaded
            del self._sessions[session.id]
            self.watch.changed()

    def get(self, session_id: str, caller: Caller) -> Session | None:
        """The session, if it is still open and `caller`'s: another caller's session id finds nothing."""
        session = self._sessions.get(session_id)
        if session is None or session.closed.is_set() or session.caller.name != caller.name:
            return None
        return session

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def close_all(self, reason: str) -> None:
        for session in list(self._sessions.values()):
            session.close(reason)

    async def drain(self, grace: float) -> None:
        """Stop admitting sessions, give in-flight requests `grace` seconds, then close every session."""
        self.draining = True
        self.watch.changed()
        with trio.move_on_after(grace):
            await self.watch.wait_until(lambda: self.statistics().requests_in_flight == 0)
        self.close_all("server shutting down")
        await self.watch.wait_until(lambda: not self._sessions)

    def statistics(self) -> RegistryStatistics:
        stats = [s.statistics() for s in self._sessions.values()]
        return RegistryStatistics(
            sessions_open=len(stats),
            sessions_opened=self._opened,
            sessions_rejected=self._rejected,
            requests_in_flight=sum(s.requests_in_flight for s in stats),
            queries_running=sum(s.queries_running for s in stats),
            cancellations=self._past_cancellations + sum(s.cancellations for s in stats),
            requests_overloaded=self._past_overloaded + sum(s.overloaded for s in stats),
            draining=self.draining,
        )


class _Started:
    """The `task_status` of a session started with `start_soon`: `open_session` waits on its event."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def started(self, value: None = None) -> None:
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


@asynccontextmanager
async def open_session_registry(
    settings: SessionSettings, serve_mcp: ServeMcp, serve_exchange: ServeMcp | None = None
) -> AsyncIterator[SessionRegistry]:
    """A registry whose sessions all end (cancelled) when the block exits.

    Sessions run `serve_mcp`; stateless ones (one 2026-07-28 exchange each) run `serve_exchange`,
    by default `serve_mcp` too.
    """
    async with trio.open_nursery() as nursery:
        registry = SessionRegistry(nursery, settings, serve_mcp, serve_exchange or serve_mcp)
        try:
            yield registry
        finally:
            registry.close_all("server stopped")
