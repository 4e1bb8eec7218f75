"""Readiness: whether this server can answer queries now, as a load balancer needs to know.

A server whose source is unreachable (every EdgeLake node down, a SQLite file
gone) is alive, and restarting it would not help, but it cannot serve a
query: `/readyz` says so, so traffic goes elsewhere until the source is back.
The check is the source's own `status()`, bounded by a short timeout: a probe
must answer before the orchestrator's own deadline, and a source that does not
answer in time is as good as down.
"""

from __future__ import annotations

from dataclasses import dataclass

from emcp.sources.base import Source, SourceError


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    #: Why not, in words an operator can act on; empty when ready.
    reason: str = ""


async def check_ready(source: Source) -> Readiness:
    """Ready when `source.status()` says it is reachable. The caller bounds the wait (`unanswered`)."""
    try:
        status = await source.status()
    except SourceError as exc:
        return Readiness(False, f"the {source.kind} source failed its status check ({exc.code}): {exc.message}")
    if status.get("reachable", True):
        return Readiness(True)
    why = status.get("error") or status.get("errors") or "no reason given"
    return Readiness(False, f"the {source.kind} source is unreachable: {why}")


def unanswered(source: Source, seconds: float) -> Readiness:
    """What a status check that took longer than `seconds` means: not ready."""
    return Readiness(False, f"the {source.kind} source did not answer its status check within {seconds:g} s")
