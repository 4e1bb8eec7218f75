"""Bearer-token auth: 401 before any route, toolsets, sessions and results bound to their caller."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx2
import pytest
import trio
from mcp import Client, ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from trio_websocket import ConnectionRejected

from emcp import EmcpServer, Settings, open_server
from emcp.auth import TokenBook
from emcp.auth.guard import bearer_token
from emcp.cli import main
from emcp.client import websocket_client
from emcp.settings import SettingsError
from tests.conftest import rpc

FULL = "full-access-token-0123456789abcdef"
READER = "reader-token-0123456789abcdef0123"
READER_TOOLS = ["list_databases", "query"]
TOOLS = ["list_databases", "query", "sql"]


def sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    settings.auth.tokens = [
        {"name": "full", "sha256": sha256(FULL)},
        {"name": "reader", "sha256": sha256(READER), "tools": READER_TOOLS},
    ]
    return settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@asynccontextmanager
async def sse_session(server: EmcpServer, token: str) -> AsyncIterator[ClientSession]:
    async with (
        sse_client(server.sse_url, headers=bearer(token)) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def modern_client(server: EmcpServer, token: str) -> AsyncIterator[Client]:
    """`mcp.Client` on 2026-07-28 with the token on every request (the HTTP client is ours to close)."""
    async with (
        create_mcp_http_client(headers=bearer(token)) as http,
        Client(streamable_http_client(f"{server.url}/mcp", http_client=http), mode="auto") as client,
    ):
        yield client


# -- the token book, without I/O ---------------------------------------------------------------


def test_tokens_verify_to_their_caller_and_nothing_else() -> None:
    book = TokenBook.from_settings(
        [{"name": "a", "sha256": sha256(FULL)}, {"name": "b", "env": "B_TOKEN", "tools": ["query"]}],
        TOOLS,
        environ={"B_TOKEN": READER},
    )
    a, b = book.verify(FULL), book.verify(READER)
    assert a is not None and a.name == "a" and a.tools is None
    assert b is not None and b.name == "b" and b.visible(TOOLS) == ["query"]
    assert book.verify(FULL + "x") is None and book.verify("") is None
    assert not TokenBook.from_settings([], TOOLS)


@pytest.mark.parametrize(
    ("entry", "environ", "fragment"),
    [
        ({"sha256": sha256(FULL)}, {}, "non-empty name"),
        ({"name": "a"}, {}, "exactly one of sha256"),
        ({"name": "a", "sha256": sha256(FULL), "env": "X"}, {}, "exactly one of sha256"),
        ({"name": "a", "sha256": "abc"}, {}, "64 hex digits"),
        ({"name": "a", "env": "MISSING"}, {}, "MISSING is not set"),
        ({"name": "a", "env": "SHORT"}, {"SHORT": "abc"}, "shorter than"),
        ({"name": "a", "sha256": sha256(FULL), "tools": ["drop_table"]}, {}, "no such tools ['drop_table']"),
        ({"name": "a", "sha256": sha256(FULL), "tools": "query"}, {}, "a list of tool names"),
        ({"name": "a", "sha256": sha256(FULL), "scope": "x"}, {}, "unknown keys ['scope']"),
    ],
)
def test_bad_token_entries_say_what_to_fix(entry: dict[str, Any], environ: dict[str, str], fragment: str) -> None:
    with pytest.raises(SettingsError, match=r"auth\.tokens") as raised:
        TokenBook.from_settings([entry], TOOLS, environ=environ)
    assert fragment in str(raised.value)


def test_duplicate_names_are_refused() -> None:
    entries = [{"name": "a", "sha256": sha256(FULL)}, {"name": "a", "sha256": sha256(READER)}]
    with pytest.raises(SettingsError, match="used twice"):
        TokenBook.from_settings(entries, TOOLS)


@pytest.mark.parametrize(
    ("value", "token"),
    [(b"Bearer abc", "abc"), (b"bearer  abc ", "abc"), (b"Basic abc", None), (b"Bearer", None), (b"Bearer ", None)],
)
def test_bearer_token_parsing(value: bytes, token: str | None) -> None:
    assert bearer_token({"headers": [(b"Authorization", value)]}) == token  # type: ignore[typeddict-item]


def test_emcp_token_prints_a_token_and_its_digest(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--name", "ci"]) == 0
    out = capsys.readouterr().out
    token = out.split("secret): ")[1].split()[0]
    assert f"name: ci\n      sha256: {sha256(token)}" in out


# -- refusing to serve the network without auth ------------------------------------------------


async def test_a_non_loopback_bind_without_auth_is_refused_unless_insecure(settings: Settings) -> None:
    settings.auth.tokens = []
    settings.http.host = "0.0.0.0"
    with trio.fail_after(30):
        with pytest.raises(SettingsError, match=r"refusing to serve 0\.0\.0\.0 without auth"):
            async with open_server(settings):
                pass
        settings.auth.insecure = True
        async with open_server(settings) as server:
            assert server.urls


# -- a live server with two tokens -----------------------------------------------------------


@pytest.mark.parametrize("path", ["/mcp/sse", "/mcp", "/mcp/results/0123"])
async def test_missing_or_unknown_token_gets_401_with_a_challenge(server: EmcpServer, path: str) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            missing = await http.get(path)
            unknown = await http.get(path, headers=bearer("not-a-token"))
    assert missing.status_code == 401 and unknown.status_code == 401
    assert missing.headers["www-authenticate"] == 'Bearer realm="emcp"'
    assert unknown.headers["www-authenticate"] == 'Bearer realm="emcp", error="invalid_token"'
    assert missing.json()["error"]["code"] == "unauthorized"
    assert server.registry.statistics().sessions_opened == 0


async def test_websocket_upgrade_needs_the_token(server: EmcpServer) -> None:
    with trio.fail_after(10):
        with pytest.raises(ConnectionRejected) as rejected:
            async with websocket_client(server.ws_url):
                pass
        assert rejected.value.status_code == 401
        async with (
            websocket_client(server.ws_url, headers=bearer(READER)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            assert {tool.name for tool in (await session.list_tools()).tools} == set(READER_TOOLS)


async def test_a_toolset_limits_what_is_listed_and_callable(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with sse_session(server, READER) as reader, sse_session(server, FULL) as full:
            assert {tool.name for tool in (await reader.list_tools()).tools} == set(READER_TOOLS)
            assert "sql" in {tool.name for tool in (await full.list_tools()).tools}
            # A tool outside the toolset reads exactly like one that does not exist.
            with pytest.raises(MCPError) as hidden:
                await reader.call_tool("sql", {"database": "new_company", "sql": "SELECT 1"})
            with pytest.raises(MCPError) as missing:
                await reader.call_tool("no_such_tool", {})
            assert hidden.value.error.message.replace("'sql'", "X") == missing.value.error.message.replace(
                "'no_such_tool'", "X"
            )
            assert hidden.value.error.data == {"tools": READER_TOOLS}
            listed = await reader.call_tool("list_databases", {})
            assert not listed.is_error
    assert server.source.statistics().running == 0


async def test_a_session_answers_only_the_caller_that_opened_it(server: EmcpServer) -> None:
    with trio.fail_after(20):
        async with sse_session(server, FULL):
            (session,) = server.registry.sessions()
            async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
                body = rpc("tools/list", 7)
                foreign = await http.post(f"/mcp/messages/{session.id}", json=body, headers=bearer(READER))
                assert foreign.status_code == 404
                initialize = rpc(
                    "initialize",
                    1,
                    protocolVersion="2025-11-25",
                    capabilities={},
                    clientInfo={"name": "t", "version": "1"},
                )
                accept = {"Accept": "application/json, text/event-stream"}
                opened = await http.post("/mcp", json=initialize, headers={**accept, **bearer(FULL)})
                session_id = opened.headers["mcp-session-id"]
                headers = {**accept, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": "2025-11-25"}
                stolen = await http.post("/mcp", json=body, headers={**headers, **bearer(READER)})
                assert stolen.status_code == 404
                own = await http.post("/mcp", json=body, headers={**headers, **bearer(FULL)})
                assert own.status_code == 200


async def test_a_download_needs_the_callers_own_token(server: EmcpServer) -> None:
    with trio.fail_after(60):
        async with sse_session(server, FULL) as full:
            result = await full.call_tool("sql", {"database": "new_company", "sql": "SELECT * FROM sensor"})
            url = result.structured_content["result"]["download_url"]
            async with httpx2.AsyncClient(base_url=server.url, timeout=30) as http:
                foreign = await http.get(url, headers=bearer(READER))
                assert foreign.status_code == 404
                async with http.stream("GET", url, headers=bearer(FULL)) as own:
                    assert own.status_code == 200
                    first = await own.aiter_raw().__anext__()
            assert first.startswith(b'{"columns"')


async def test_stateless_results_belong_to_the_authenticated_caller(settings: Settings) -> None:
    settings.auth.tokens.append({"name": "other", "sha256": sha256(READER[::-1])})
    with trio.fail_after(60):
        async with open_server(settings) as server:
            async with modern_client(server, FULL) as full, modern_client(server, READER[::-1]) as other:
                result = await full.call_tool("sql", {"database": "new_company", "sql": "SELECT * FROM sensor"})
                uri = f"emcp://results/{result.structured_content['result']['handle']}/0"
                with pytest.raises(MCPError, match="Resource not found"):
                    await other.read_resource(uri)
                block = await full.read_resource(uri)
                assert block.contents[0].text.startswith('{"columns"')
                assert not (await full.call_tool("close_result", {"handle": uri.split("/")[3]})).is_error
            assert server.statistics()["result_streams_open"] == 0
