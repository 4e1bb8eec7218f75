"""Who is calling: the identity a request authenticated as, and the tools it may use."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Where the auth middleware leaves the caller in an ASGI scope.
SCOPE_KEY = "emcp.caller"


@dataclass(frozen=True, slots=True)
class Caller:
    #: The token's (or JWT subject's) name: it owns stateless results and shows in logs and metrics.
    name: str
    #: The tools this caller may list and call; None means every tool.
    tools: frozenset[str] | None = None
    #: Tool calls per second for this caller; None means the server's `query.calls_per_second`.
    calls_per_second: float | None = None

    def may_use(self, tool: str) -> bool:
        return self.tools is None or tool in self.tools

    def visible(self, names: Iterable[str]) -> list[str]:
        return [name for name in names if self.may_use(name)]


#: Every request when auth is off (a loopback bind, or `--insecure`).
ANONYMOUS = Caller("anonymous")


def caller_of(scope: Mapping[str, Any]) -> Caller:
    """The caller the auth middleware found for this request; anonymous when auth is off."""
    caller = scope.get(SCOPE_KEY)
    return caller if isinstance(caller, Caller) else ANONYMOUS
