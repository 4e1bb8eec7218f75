"""OAuth 2.1 resource-server mode: JWTs checked against a JWKS file or URL, and the metadata that finds the issuer."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa
from mcp import ClientSession
from mcp.client.sse import sse_client

from emcp import EmcpServer, Settings, open_server
from emcp.settings import SettingsError

ISSUER = "https://issuer.example"
AUDIENCE = "https://emcp.example/mcp"
SCOPE = "emcp.read"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


KEY, OTHER_KEY = new_key(), new_key()


def jwks(*keys: tuple[str, rsa.RSAPrivateKey]) -> dict[str, Any]:
    return {
        "keys": [
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256"}
            for kid, key in keys
        ]
    }


def token(key: rsa.RSAPrivateKey = KEY, kid: str = "k1", **claims: Any) -> str:
    body = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 300, "scope": SCOPE, **claims}
    return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture
def settings(settings: Settings, tmp_path: Path) -> Settings:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(("k1", KEY))))
    settings.auth.jwt.jwks = str(path)
    settings.auth.jwt.issuer = ISSUER
    settings.auth.jwt.audience = AUDIENCE
    settings.auth.jwt.scopes = [SCOPE]
    return settings


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_valid_jwt_opens_a_session_as_its_subject(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with (
            sse_client(server.sse_url, headers=bearer(token())) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert not (await session.call_tool("list_databases", {})).is_error
            (opened,) = server.registry.sessions()
            assert opened.caller.name == "jwt:alice"


@pytest.mark.parametrize(
    ("value", "status", "fragment"),
    [
        (token(exp=time.time() - 3600), 401, "expired"),
        (token(aud="https://elsewhere.example"), 401, "another audience; this server's is https://emcp.example/mcp"),
        (token(iss="https://evil.example"), 401, "another issuer"),
        (token(sub=None), 401, "lacks the 'sub' claim"),
        (token(key=OTHER_KEY), 401, "Signature verification failed"),
        (token(kid="unknown"), 401, "key the issuer's JWKS does not hold"),
        ("not-a-jwt", 401, "neither a known token nor a JWT"),
        (token(scope="other"), 403, "lacks the scopes ['emcp.read']"),
        (token(scope=None, scp=[SCOPE, "x"]), 200, ""),
    ],
)
async def test_refused_tokens_say_why(server: EmcpServer, value: str, status: int, fragment: str) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            if status == 200:
                async with http.stream("GET", "/mcp/sse", headers=bearer(value)) as response:
                    assert response.status_code == 200
                return
            response = await http.get("/mcp/sse", headers=bearer(value))
    assert response.status_code == status
    assert fragment in response.json()["error"]["message"]
    challenge = response.headers["www-authenticate"]
    # On the audience's origin: the public URL clients use, also behind a TLS proxy.
    assert 'resource_metadata="https://emcp.example/.well-known/oauth-protected-resource"' in challenge
    assert ('error="insufficient_scope", scope="emcp.read"' in challenge) == (status == 403)
    assert server.registry.statistics().sessions_opened == 0


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"])
async def test_protected_resource_metadata_names_the_issuer(server: EmcpServer, path: str) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            response = await http.get(path)
    assert response.status_code == 200
    assert response.json() == {
        "resource": AUDIENCE,
        "authorization_servers": [ISSUER],
        "scopes_supported": [SCOPE],
        "bearer_methods_supported": ["header"],
    }


@asynccontextmanager
async def serve_jwks(document: dict[str, Any]) -> AsyncIterator[str]:
    """A JWKS URL: a one-route HTTP server whose `document` the test may change; yields its URL."""

    async def handle(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.receive_some()
            body = json.dumps(document).encode()
            head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            await stream.send_all(head.encode() + b"Connection: close\r\n\r\n" + body)

    async with trio.open_nursery() as nursery:
        (listener,) = await nursery.start(partial(trio.serve_tcp, handle, 0, host="127.0.0.1"))
        yield f"http://127.0.0.1:{listener.socket.getsockname()[1]}/jwks.json"
        nursery.cancel_scope.cancel()


async def test_a_jwks_url_is_fetched_again_for_a_new_key_id(settings: Settings) -> None:
    document = jwks(("k1", KEY))
    settings.auth.jwt.refetch_every = 0.0
    with trio.fail_after(20):
        async with serve_jwks(document) as url:
            settings.auth.jwt.jwks = url
            async with open_server(settings) as server, httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
                rotated = token(key=OTHER_KEY, kid="k2")
                assert (await http.get("/mcp/results/x", headers=bearer(rotated))).status_code == 401
                document["keys"] = jwks(("k1", KEY), ("k2", OTHER_KEY))["keys"]  # the issuer rotates
                # Past the auth check: the route itself answers (no such result).
                assert (await http.get("/mcp/results/x", headers=bearer(rotated))).status_code == 404


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"issuer": ""}, "auth.jwt.issuer: required"),
        ({"audience": ""}, "auth.jwt.audience: required"),
        ({"jwks": "/nonexistent/jwks.json"}, "neither an http(s) URL nor a file"),
        ({"jwks": "http://127.0.0.1:9/jwks.json"}, "cannot load keys"),
    ],
)
async def test_bad_jwt_settings_stop_the_server_with_the_reason(
    settings: Settings, changes: dict[str, str], fragment: str
) -> None:
    for name, value in changes.items():
        setattr(settings.auth.jwt, name, value)
    with trio.fail_after(20), pytest.raises(SettingsError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        async with open_server(settings):
            pass
