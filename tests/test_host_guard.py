"""DNS-rebinding and foreign-page protection: Host and Origin checked before any route runs."""

from __future__ import annotations

import httpx2
import pytest
import trio
from trio_websocket import ConnectionRejected

from emcp import EmcpServer, Settings, open_server
from emcp.client.websocket import open_websocket
from emcp.settings import HttpSettings
from emcp.transport.host_guard import allowed_hosts, refusal

LOOPBACK = allowed_hosts(HttpSettings(host="127.0.0.1"))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"host": "127.0.0.1:8765"}, None),
        ({"host": "localhost"}, None),
        ({"host": "[::1]:8765", "origin": "http://localhost:3000"}, None),
        ({"host": "evil.example.com:8765"}, 421),
        ({"host": "127.0.0.1.evil.example.com"}, 421),
        ({"host": ""}, 421),
        ({"host": "127.0.0.1:8765", "origin": "http://evil.example.com"}, 403),
        ({"host": "127.0.0.1:8765", "origin": "null"}, 403),
        ({"host": "127.0.0.1:8765", "origin": "https://app.example.com"}, None),  # listed below
    ],
)
def test_refusal(headers: dict[str, str], expected: int | None) -> None:
    refused = refusal(headers, LOOPBACK, frozenset({"https://app.example.com"}))
    assert (refused[0] if refused else None) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"host": "edge.example:8765", "origin": "https://edge.example"}, None),
        ({"host": "edge.example:8765", "origin": "https://evil.example"}, 403),
        ({"host": "edge.example:8765", "origin": "http://["}, 403),
        ({"host": "edge.example:8765"}, None),
    ],
)
def test_without_allowed_hosts_a_page_may_call_only_its_own_host(headers: dict[str, str], expected: int | None) -> None:
    """A non-loopback bind with no http.allowed_hosts: any Host is answered, Origins must match it."""
    refused = refusal(headers, None, frozenset())
    assert (refused[0] if refused else None) == expected


async def test_probes_answer_whatever_the_host(server: EmcpServer) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            for path in ("/healthz", "/readyz"):
                assert (await http.get(path, headers={"Host": "10.1.2.3:8765"})).status_code == 200
            assert (await http.get("/metrics", headers={"Host": "10.1.2.3:8765"})).status_code == 421


def test_hosts_default_to_loopback_names_only_on_a_loopback_bind() -> None:
    assert allowed_hosts(HttpSettings(host="::1")) == LOOPBACK
    assert allowed_hosts(HttpSettings(host="0.0.0.0")) is None
    assert allowed_hosts(HttpSettings(host="0.0.0.0", allowed_hosts=["Edge.Example"])) == {"edge.example"}


async def test_foreign_host_and_origin_are_refused_on_http_with_a_json_body(server: EmcpServer) -> None:
    with trio.fail_after(10):
        async with httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            rebound = await http.get("/mcp/sse", headers={"Host": "evil.example.com"})
            assert rebound.status_code == 421 and rebound.json()["error"]["code"] == "host_not_allowed"
            foreign = await http.post("/mcp", json={}, headers={"Origin": "http://evil.example.com"})
            assert foreign.status_code == 403 and "allowed_origins" in foreign.json()["error"]["message"]
    assert server.registry.statistics().sessions_opened == 0


async def test_foreign_origin_cannot_open_a_websocket(server: EmcpServer) -> None:
    with trio.fail_after(10), pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket(server.ws_url, extra_headers=[("Origin", "http://evil.example.com")]):
            pass
    assert rejected.value.status_code == 403
    assert server.registry.statistics().sessions_opened == 0


async def test_configured_host_is_served(settings: Settings) -> None:
    settings.http.allowed_hosts = ["edge.example"]
    with trio.fail_after(10):
        async with open_server(settings) as server, httpx2.AsyncClient(base_url=server.url, timeout=10) as http:
            assert (await http.get("/mcp/nope", headers={"Host": "edge.example"})).status_code == 404
            assert (await http.get("/mcp/nope")).status_code == 421  # 127.0.0.1 is not listed now
