"""Every HTTP request and WebSocket upgrade proves who it is before any route runs.

The client sends `Authorization: Bearer <token>`: one of the configured
tokens, or, in OAuth resource-server mode, a JWT from the issuer. A missing
or refused token gets 401 with `WWW-Authenticate` (RFC 6750), which in OAuth
mode also points at the protected-resource metadata (RFC 9728) so an MCP
client can find the issuer; a valid JWT without the required scopes gets 403
naming them. The caller found is left in the ASGI scope, where transports read
it to open sessions for it, refuse its sessions to anyone else, and filter the
tools it may list and call. Health probes and the metadata stay open: they
reveal nothing, and orchestrators and clients read them without credentials.
"""

from __future__ import annotations

from hypercorn.typing import ASGIFramework, ASGIReceiveCallable, ASGISendCallable, Scope

from emcp.auth.caller import SCOPE_KEY
from emcp.auth.oauth import METADATA_PATH, JwtVerifier, Refusal
from emcp.auth.tokens import TokenBook
from emcp.ops.routes import PROBE_PATHS
from emcp.transport.http_errors import send_json, send_json_error

REALM = 'Bearer realm="emcp"'


def bearer_token(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    return None


class AuthGuard:
    """ASGI middleware: 401/403 unless the request carries a token `book` or `jwt` accepts."""

    def __init__(self, app: ASGIFramework, book: TokenBook, jwt: JwtVerifier | None = None) -> None:
        self.app = app
        self.book = book
        self.jwt = jwt

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        if self.jwt is not None and scope["path"].startswith(METADATA_PATH) and scope["type"] == "http":
            await send_json(scope, send, 200, self.jwt.resource_metadata)
            return
        token = bearer_token(scope)
        if token is None:
            message = "send Authorization: Bearer <token>; this server requires a token"
            await self._refuse(scope, send, Refusal(401, "", message))
            return
        found = self.book.verify(token)
        if found is None:
            found = (
                await self.jwt.verify(token)
                if self.jwt is not None
                else Refusal(401, "invalid_token", "the bearer token is not one this server knows; check it")
            )
        if isinstance(found, Refusal):
            await self._refuse(scope, send, found)
            return
        scope[SCOPE_KEY] = found  # type: ignore[literal-required]
        await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, send: ASGISendCallable, refusal: Refusal) -> None:
        challenge = REALM
        if self.jwt is not None:
            challenge += f', resource_metadata="{self.jwt.metadata_url}"'
        if refusal.error:
            challenge += f', error="{refusal.error}"'
        if refusal.scope:
            challenge += f', scope="{refusal.scope}"'
        code = "insufficient_scope" if refusal.status == 403 else "unauthorized"
        await send_json_error(scope, send, refusal.status, code, refusal.description, {"WWW-Authenticate": challenge})
