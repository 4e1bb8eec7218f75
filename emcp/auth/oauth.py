"""OAuth 2.1 resource-server mode: access tokens are JWTs checked against the issuer's JWKS.

emcp never sees passwords or runs an authorization server: clients get tokens
from the issuer (found through `/.well-known/oauth-protected-resource`, RFC
9728, as the MCP authorization spec asks) and emcp checks each one's
signature, issuer, audience (this server, so a token minted for another
service is refused), expiry and scopes. Keys come from a JWKS file, read at
start, or URL, fetched at start and again when a token names a key id not
seen yet (at most every `refetch_every` seconds, so forged key ids cannot make
emcp hammer the issuer).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx2
import jwt
import trio

from emcp.auth.caller import Caller
from emcp.settings import JwtSettings, SettingsError

logger = logging.getLogger(__name__)

METADATA_PATH = "/.well-known/oauth-protected-resource"
FETCH_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a token was not accepted: 401 (no good token) or 403 (a good token without the scopes)."""

    status: int
    error: str
    description: str
    scope: str = ""


class JwtVerifier:
    def __init__(self, settings: JwtSettings) -> None:
        self.settings = settings
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = -settings.refetch_every
        self._fetching = trio.Lock()

    @property
    def metadata_url(self) -> str:
        """Where clients find the metadata: on the audience's origin, the public URL of this server
        (behind a TLS proxy, the scheme and host a client uses, which emcp's own socket does not see)."""
        parts = urlsplit(self.settings.audience)
        return f"{parts.scheme}://{parts.netloc}{METADATA_PATH}"

    @property
    def resource_metadata(self) -> dict[str, Any]:
        settings = self.settings
        return {
            "resource": settings.audience,
            "authorization_servers": settings.authorization_servers or [settings.issuer],
            "scopes_supported": settings.scopes,
            "bearer_methods_supported": ["header"],
        }

    async def load(self) -> None:
        """Read or fetch the keys before serving: a JWKS that cannot be had stops emcp with the reason."""
        try:
            self._keys = await self._read_keys()
        except (OSError, ValueError, httpx2.HTTPError, jwt.PyJWKSetError) as exc:
            raise SettingsError(f"auth.jwt.jwks: cannot load keys from {self.settings.jwks}: {exc}") from exc
        self._fetched_at = trio.current_time()

    async def _read_keys(self) -> dict[str, jwt.PyJWK]:
        source = self.settings.jwks
        if source.startswith(("https://", "http://")):
            async with httpx2.AsyncClient(timeout=FETCH_TIMEOUT) as http:
                response = await http.get(source)
                response.raise_for_status()
                document = response.json()
        else:
            document = json.loads(await trio.Path(source).read_text())
        keys = jwt.PyJWKSet.from_dict(document).keys
        return {key.key_id or "": key for key in keys}

    async def _key(self, kid: str) -> jwt.PyJWK | None:
        if kid not in self._keys and self.settings.jwks.startswith(("https://", "http://")):
            async with self._fetching:
                if kid not in self._keys and trio.current_time() - self._fetched_at >= self.settings.refetch_every:
                    self._fetched_at = trio.current_time()
                    try:
                        self._keys = await self._read_keys()
                    except (OSError, ValueError, httpx2.HTTPError, jwt.PyJWKSetError) as exc:
                        logger.warning("cannot refresh the JWKS from %s: %s", self.settings.jwks, exc)
        if kid in self._keys:
            return self._keys[kid]
        # A JWKS of one key without an id serves tokens that name none.
        return self._keys.get("") if not kid else None

    async def verify(self, token: str) -> Caller | Refusal:
        settings = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return Refusal(401, "invalid_token", "the bearer token is neither a known token nor a JWT")
        key = await self._key(str(header.get("kid") or ""))
        if key is None:
            return Refusal(401, "invalid_token", "the JWT is signed with a key the issuer's JWKS does not hold")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=settings.algorithms,
                audience=settings.audience,
                issuer=settings.issuer,
                leeway=settings.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            return Refusal(401, "invalid_token", self._why(exc))
        granted = _scopes(claims)
        missing = [scope for scope in settings.scopes if scope not in granted]
        if missing:
            return Refusal(
                403,
                "insufficient_scope",
                f"the token lacks the scopes {missing}; ask the authorization server for them",
                " ".join(settings.scopes),
            )
        return Caller(f"jwt:{claims['sub']}")

    def _why(self, exc: jwt.PyJWTError) -> str:
        if isinstance(exc, jwt.ExpiredSignatureError):
            return "the JWT has expired; get a new one from the issuer"
        if isinstance(exc, jwt.InvalidAudienceError):
            return f"the JWT was issued for another audience; this server's is {self.settings.audience}"
        if isinstance(exc, jwt.InvalidIssuerError):
            return f"the JWT comes from another issuer; this server takes tokens of {self.settings.issuer}"
        if isinstance(exc, jwt.MissingRequiredClaimError):
            return f"the JWT lacks the {exc.claim!r} claim"
        return f"the JWT was refused: {exc}"


def _scopes(claims: dict[str, Any]) -> set[str]:
    """`scope` as OAuth writes it (space-separated), or `scp` as some issuers do (a list)."""
    scope = claims.get("scope", claims.get("scp", ""))
    return set(scope.split()) if isinstance(scope, str) else {str(s) for s in scope}


def verifier_for(settings: JwtSettings) -> JwtVerifier | None:
    """None when JWT mode is off; otherwise checked settings, each mistake named."""
    if not settings.jwks:
        return None
    for name in ("issuer", "audience"):
        if not getattr(settings, name):
            raise SettingsError(f"auth.jwt.{name}: required with auth.jwt.jwks (tokens are checked against it)")
    if not settings.jwks.startswith(("https://", "http://")) and not Path(settings.jwks).is_file():
        raise SettingsError(f"auth.jwt.jwks: {settings.jwks} is neither an http(s) URL nor a file")
    return JwtVerifier(settings)
