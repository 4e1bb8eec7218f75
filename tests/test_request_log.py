"""Request logs: one line per MCP request with its session, method, tool, duration and outcome, as JSON
lines or text; tool arguments never, SQL only when asked, secrets never, whatever logs them."""

from __future__ import annotations

import hashlib
import io
import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client

from emcp import Settings, open_server
from emcp.ops.logs import log_handler, redact
from tests.conftest import mcp_session

SECRET_VALUE = "dev-0000-not-in-any-log"
WHERE_SQL = f"SELECT count(*) AS n FROM sensor WHERE device = '{SECRET_VALUE}'"
TOKEN = "alice-token-5f0c1e9a7b3d2c4e6f8a9b0c"
WRONG_TOKEN = "mallory-token-0d9c8b7a6f5e4d3c2b1a"
MIDDLE_SQL = "SELECT * FROM sensor WHERE device IN ('dev-001', 'dev-002', 'dev-003') ORDER BY row_id"


@contextmanager
def captured(log_format: str, level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Everything logged in the process meanwhile, through emcp's handler in `log_format`."""
    out = io.StringIO()
    handler, root = log_handler(log_format, out), logging.getLogger()
    saved = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(saved)


def request_lines(out: io.StringIO) -> list[dict[str, Any]]:
    """Every line parsed as JSON (so each one must be), keeping the request lines."""
    entries = [orjson.loads(line) for line in out.getvalue().splitlines()]
    return [entry for entry in entries if entry["logger"] == "emcp.requests"]


async def test_one_json_line_per_request_with_its_fields_and_no_arguments(settings: Settings) -> None:
    with captured("json") as out, trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            (live,) = server.registry.sessions()
            assert not (await session.call_tool("list_databases", {})).is_error
            assert not (await session.call_tool("sql", {"database": "new_company", "sql": WHERE_SQL})).is_error
            assert (await session.call_tool("sql", {"database": "new_company", "sql": "DROP TABLE x"})).is_error
    lines = request_lines(out)
    assert [(e["method"], e["tool"], e["outcome"], e["code"]) for e in lines] == [
        ("initialize", None, "ok", None),
        ("tools/call", "list_databases", "ok", None),
        ("tools/list", None, "ok", None),  # the SDK client asks for output schemas on its first call
        ("tools/call", "sql", "ok", None),
        ("tools/call", "sql", "tool_error", "sql_rejected"),
    ]
    first = lines[1]
    assert first["level"] == "INFO" and first["message"] == "tools/call list_databases: ok"
    assert set(first) == {
        "ts", "level", "logger", "message", "session", "transport", "caller",
        "method", "tool", "request_id", "duration_ms", "outcome", "code",
    }  # fmt: skip
    assert first["session"] == live.id[:8]  # a prefix: the whole id is a capability
    assert (first["transport"], first["caller"]) == ("sse", "anonymous")
    assert isinstance(first["request_id"], int) and first["duration_ms"] >= 0
    # The server's other records are JSON lines too; arguments (and the data in them) are in none.
    assert '"logger":"hypercorn.error"' in out.getvalue()
    assert SECRET_VALUE not in out.getvalue()


async def test_sql_is_logged_only_when_the_setting_says_so(settings: Settings) -> None:
    settings.logging.sql = True
    with captured("json") as out, trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            await session.call_tool("sql", {"database": "new_company", "sql": WHERE_SQL})
            await session.call_tool("sql", {"database": "new_company", "sql": "DROP TABLE x"})
    ran, refused = [e for e in request_lines(out) if e["tool"] == "sql"]
    assert SECRET_VALUE in ran["sql"]  # the statement as it ran (re-rendered by the guard)
    assert refused["sql"] == "DROP TABLE x"  # as given: nothing ran


async def test_text_lines_carry_the_same_fields(settings: Settings) -> None:
    with captured("text") as out, trio.fail_after(20):
        async with open_server(settings) as server, mcp_session(server) as session:
            (live,) = server.registry.sessions()
            await session.call_tool("list_databases", {})
    (line,) = [line for line in out.getvalue().splitlines() if "emcp.requests: tools/call" in line]
    assert f"tools/call list_databases: ok session={live.id[:8]} transport=sse caller=anonymous" in line
    assert " method=tools/call tool=list_databases request_id=" in line and " outcome=ok" in line


@pytest.mark.parametrize("log_format", ["json", "text"])
async def test_tokens_and_credentials_never_reach_the_logs(settings: Settings, log_format: str) -> None:
    settings.auth.tokens = [{"name": "alice", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with captured(log_format, logging.DEBUG) as out, trio.fail_after(30):
        async with open_server(settings) as server:
            async with (
                sse_client(server.sse_url, headers=bearer) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                big = await session.call_tool("sql", {"database": "new_company", "sql": MIDDLE_SQL})
                assert big.structured_content is not None
                download_url = big.structured_content["result"]["download_url"]
                async with httpx2.AsyncClient(base_url=server.url, headers=bearer) as http:
                    # A download link carries its own token; the HTTP client logs the URL it fetches.
                    assert (await http.get(download_url)).status_code == 200
                    refused = await http.get("/metrics", headers={"Authorization": f"Bearer {WRONG_TOKEN}"})
                    assert refused.status_code == 401
            # As a library might: the headers of a request, quoted in a record.
            logging.getLogger("tests.quoting").warning("headers: %r", [(b"authorization", f"Bearer {TOKEN}")])
    logged = out.getvalue()
    assert "alice" in logged  # the caller's name is logged: it is not the secret
    download_token = download_url.partition("token=")[2]
    for secret in (TOKEN, WRONG_TOKEN, download_token):
        assert secret not in logged
    assert "[redacted]" in logged


class JsonLog:
    """A process's stderr parsed as it arrives; every line must be one JSON object."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._pending = b""
        self.entries: list[dict[str, Any]] = []

    async def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """Read on until an entry that is `wanted` arrives, and return it."""
        while True:
            chunk = await self._stream.receive_some()
            if not chunk:
                raise AssertionError(f"stderr ended; it said: {self.entries}")
            *lines, self._pending = (self._pending + chunk).split(b"\n")
            new = [orjson.loads(line) for line in lines]
            self.entries += new
            found = [entry for entry in new if wanted(entry)]
            if found:
                return found[0]


async def test_emcp_serve_log_format_json_writes_json_lines(demo_dir: Path) -> None:
    serve = ["serve", "--port", "0", "--data-dir", str(demo_dir), "--log-format", "json"]
    command = [sys.executable, "-m", "emcp", *serve]
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            assert process.stderr is not None
            log = JsonLog(process.stderr)
            running = await log.wait_for(lambda entry: entry["message"].startswith("Running on "))
            url = running["message"].split()[2]
            async with sse_client(f"{url}/mcp/sse") as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                await session.call_tool("list_databases", {})
                call = await log.wait_for(lambda entry: entry.get("tool") == "list_databases")
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            process.kill()
            await process.wait()
            if process.stderr is not None:
                await process.stderr.aclose()
    assert (call["logger"], call["transport"], call["outcome"]) == ("emcp.requests", "sse", "ok")


async def test_an_unknown_log_format_in_the_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "emcp.yaml"
    config.write_text("logging: {format: xml}\n")
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--config", str(config)], capture_stderr=True, check=False
        )
    assert done.returncode == 2
    assert b"logging.format: expected one of text, json, got 'xml'" in done.stderr


@pytest.mark.parametrize(
    ("text", "scrubbed"),
    [
        ("Authorization: Bearer abc.def", "Authorization: [redacted]"),
        ("sent Bearer abc.def to the node", "sent Bearer [redacted] to the node"),
        ("[(b'authorization', b'Basic dXNlcjpwdw==')]", "[(b'authorization', b'[redacted]')]"),
        ('{"cookie": "session=abc"}', '{"cookie": "[redacted]"}'),
        ("GET /mcp/results/f00?token=s3cret&format=csv", "GET /mcp/results/f00?token=[redacted]&format=csv"),
        ("nothing secret here", "nothing secret here"),
    ],
)
def test_redact(text: str, scrubbed: str) -> None:
    assert redact(text) == scrubbed
