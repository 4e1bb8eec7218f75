"""Every HTTP request and WebSocket upgrade proves who it is before any route runs.

The client sends `Authorization: Bearer <token>`; a missing or unknown token
gets 401 with `WWW-Authenticate` (RFC 6750), so an MCP client knows to ask
its user for credentials. The caller found is left in the ASGI scope, where
transports read it to open sessions for it, refuse its sessions to anyone
else, and filter the tools it may list and call. Health probes stay open:
they reveal nothing, and orchestrators call them without credentials.
"""

from __future__ import annotations

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from emcp.auth.caller import SCOPE_KEY
from emcp.auth.tokens import TokenBook
from emcp.transport.http_errors import send_json_error

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
REALM = 'Bearer realm="emcp"'


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AuthGuard:
    """ASGI middleware: 401 unless the request carries a token of `book`; the caller goes into the scope."""

    def __init__(self, app: ASGIFramework, book: TokenBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] in ("http", "websocket") and scope["path"] not in PUBLIC_PATHS:
            token = bearer_token(scope)
            caller = self.book.verify(token) if token is not None else None
            if caller is None:
                if token is None:
                    challenge, message = REALM, "send Authorization: Bearer <token>; this server requires a token"
                else:
                    challenge = f'{REALM}, error="invalid_token"'
                    message = "the bearer token is not one this server knows; check it, or ask for a new one"
                await send_json_error(scope, send, 401, "unauthorized", message, {"WWW-Authenticate": challenge})
                return
            scope[SCOPE_KEY] = caller  # type: ignore[literal-required]
        await self.app(scope, receive, send)
