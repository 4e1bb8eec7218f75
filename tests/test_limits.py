"""Per-caller rate limits and per-call timeouts: each enforced with an error that says what to do."""

from __future__ import annotations

import hashlib
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client
from mcp.shared.exceptions import MCPError

from emcp import Settings, open_server
from emcp.dispatch import RATE_LIMITED
from emcp.rate_limit import PRUNE_ABOVE, RateLimiter
from tests.conftest import SLOW_SQL, mcp_session


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    assert [limiter.take("a", 2.0, 3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.take("a", 2.0, 3) == pytest.approx(0.5)  # empty: one call refills in 1/rate s
    assert limiter.take("b", 2.0, 3) == 0.0  # callers do not share a bucket
    clock.now += 0.5
    assert limiter.take("a", 2.0, 3) == 0.0
    assert limiter.take("a", 0.0, 1) == 0.0  # 0 = unlimited


def test_full_buckets_are_forgotten_once_there_are_many() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock)
    for n in range(PRUNE_ABOVE):
        limiter.take(f"caller-{n}", 1.0, 5)
    clock.now += 10.0  # every bucket has refilled
    limiter.take("one-more", 1.0, 5)
    limiter.take("and-another", 1.0, 5)
    assert len(limiter._buckets) <= 2


async def test_calls_beyond_the_rate_are_refused_per_caller_across_sessions(settings: Settings) -> None:
    settings.query.calls_per_second = 0.001  # no refill during the test
    settings.query.calls_burst = 2
    unlimited = "unlimited-token-0123456789abcdef"
    limited = "limited-token-0123456789abcdef012"
    settings.auth.tokens = [
        {"name": "unlimited", "sha256": hashlib.sha256(unlimited.encode()).hexdigest(), "calls_per_second": 0},
        {"name": "limited", "sha256": hashlib.sha256(limited.encode()).hexdigest()},
    ]

    def session(token: str) -> AbstractAsyncContextManager[Any]:
        return sse_client(f"{server.url}/mcp/sse", headers={"Authorization": f"Bearer {token}"})

    with trio.fail_after(30):
        async with open_server(settings) as server:
            async with session(limited) as (r1, w1), ClientSession(r1, w1) as first:
                await first.initialize()
                for _ in range(2):
                    assert not (await first.call_tool("list_databases", {})).is_error
                async with session(limited) as (r2, w2), ClientSession(r2, w2) as second:
                    await second.initialize()
                    with pytest.raises(MCPError) as refused:
                        await second.call_tool("list_databases", {})
                    assert refused.value.error.code == RATE_LIMITED
                    assert "at most 0.001 tool calls per second for 'limited'" in refused.value.error.message
                    assert refused.value.error.data["retry_after"] > 0
                    # Other requests than tool calls are not limited.
                    assert (await second.list_tools()).tools
            async with session(unlimited) as (r3, w3), ClientSession(r3, w3) as free:
                await free.initialize()
                for _ in range(5):
                    assert not (await free.call_tool("list_databases", {})).is_error


async def test_a_call_may_ask_for_a_shorter_timeout_and_its_query_stops(settings: Settings) -> None:
    with trio.fail_after(30):
        async with open_server(settings) as server, mcp_session(server) as session:
            stats = server.source.statistics()
            args = {"database": "new_company", "sql": SLOW_SQL}
            result = await session.call_tool("sql", args, meta={"emcp/timeout": 0.2})
            assert result.is_error
            assert "ran longer than 0.2 s and was stopped" in result.content[0].text
            await stats.watch.wait_until(lambda: stats.interrupted == 1 and stats.running == 0)


@pytest.mark.parametrize(
    ("asked", "fragment"),
    [
        (0, "positive number"),
        ("10", "positive number"),
        (True, "positive number"),
        (99999, "the most this server allows is 1800 s"),
    ],
)
async def test_a_bad_timeout_request_is_refused_with_the_reason(
    settings: Settings, asked: object, fragment: str
) -> None:
    with trio.fail_after(30):
        async with open_server(settings) as server, mcp_session(server) as session:
            with pytest.raises(MCPError) as refused:
                await session.call_tool("list_databases", {}, meta={"emcp/timeout": asked})
            assert fragment in refused.value.error.message
