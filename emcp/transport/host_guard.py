"""Refuse requests that name a host the server is not, or come from a foreign web page.

A web page can reach a server on the user's loopback interface through DNS
rebinding (its own host name resolving to 127.0.0.1), and a browser lets any
page open a WebSocket anywhere. The `Host` header gives the first away and
the `Origin` header the second, so every HTTP request and WebSocket upgrade
is checked before any route runs: a foreign Host gets 421, a foreign Origin
403, each with a JSON body that says which setting admits it.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from emcp.ops.routes import PROBE_PATHS
from emcp.settings import HttpSettings
from emcp.transport.http_errors import send_json_error

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(settings: HttpSettings) -> frozenset[str] | None:
    """The host names requests may use; None = any (bound to a non-loopback address, none configured)."""
    if settings.allowed_hosts:
        return frozenset(host.lower() for host in settings.allowed_hosts)
    return frozenset(LOOPBACK_NAMES) if is_loopback(settings.host) else None


def _scheme_and_host(url: str) -> tuple[str, str]:
    """`http://[::1]:8765` -> `("http", "::1")`; empty strings for what does not parse (an unbalanced `[`)."""
    try:
        parts = urlsplit(url)
        return parts.scheme, (parts.hostname or "").lower()
    except ValueError:
        return "", ""


def _host_name(authority: str) -> str:
    """`example.com:8765` -> `example.com`; `[::1]:8765` -> `::1`."""
    return _scheme_and_host("//" + authority)[1]


def refusal(
    headers: dict[str, str], hosts: frozenset[str] | None, origins: frozenset[str]
) -> tuple[int, str, str] | None:
    """(status, reason, message) for a request to refuse, or None. `headers` keys are lower case."""
    if hosts is not None and _host_name(headers.get("host", "")) not in hosts:
        return (
            421,
            "host_not_allowed",
            f"this server does not answer to Host {headers.get('host', '')!r}; "
            "add the name to http.allowed_hosts if it is really this server's",
        )
    origin = headers.get("origin")
    if origin is not None and origin.lower() not in origins:
        scheme, host = _scheme_and_host(origin)
        # Without a list of this server's names, a page may call only the host it was loaded from.
        own_names = hosts if hosts is not None else {_host_name(headers.get("host", ""))}
        same_host = scheme in ("http", "https") and host in own_names
        if not same_host:
            return (
                403,
                "origin_not_allowed",
                f"requests from pages of {origin!r} are refused; add it to http.allowed_origins to allow them",
            )
    return None


class HostGuard:
    """ASGI middleware applying `refusal` to every HTTP request and WebSocket upgrade."""

    def __init__(self, app: ASGIFramework, settings: HttpSettings) -> None:
        self.app = app
        self.hosts = allowed_hosts(settings)
        self.origins = frozenset(origin.lower() for origin in settings.allowed_origins)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in PROBE_PATHS:
            refused = refusal(_headers(scope), self.hosts, self.origins)
            if refused is not None:
                await send_json_error(scope, send, *refused)
                return
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name; built in a call of its own so that the dict is
    not a local of `__call__`, whose frame lives as long as the connection (a WebSocket's: hours)."""
    return {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
