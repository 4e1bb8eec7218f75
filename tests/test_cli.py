"""`emcp serve` as a user runs it: a real process, real signals, a real client."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio
from mcp import ClientSession
from mcp.client.sse import sse_client

from emcp import load_settings, open_server, serve
from tests.conftest import mcp_session


async def _read_until(stream: trio.abc.ReceiveStream, needle: bytes, seen: bytearray) -> None:
    while needle not in seen:
        chunk = await stream.receive_some()
        if not chunk:
            raise AssertionError(f"process output ended before {needle!r}: {seen.decode()}")
        seen += chunk


async def test_serve_prints_urls_and_sigterm_exits_zero(demo_dir: Path) -> None:
    with trio.fail_after(60):
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "emcp", "serve", "--port", "0", "--data-dir", str(demo_dir)],
            stdout=subprocess.PIPE,
        )
        try:
            assert process.stdout is not None
            seen = bytearray()
            await _read_until(process.stdout, b"/mcp/sse\n", seen)
            url = seen.decode().split("SSE endpoint (protocol 2024-11-05): ")[1].split()[0]
            assert url.startswith("http://127.0.0.1:")
            async with sse_client(url) as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("list_databases", {})
                assert result.structured_content == {"databases": ["new_company"]}
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            await _read_until(process.stdout, b"shutting down", seen)
        finally:
            process.kill()
            await process.wait()
            if process.stdout is not None:
                await process.stdout.aclose()


async def test_a_port_in_use_exits_1_with_a_message(demo_dir: Path) -> None:
    with trio.fail_after(60), trio.socket.socket() as taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--port", str(port), "--data-dir", str(demo_dir)],
            capture_stderr=True,
            capture_stdout=True,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(b"emcp: cannot serve: [Errno 98]"), done.stderr[-500:]
    assert b"Traceback" not in done.stderr


@pytest.mark.parametrize("setting", ["http:\n  keepalive: 0", "sessions:\n  admission_timeout: 0"])
async def test_a_zero_that_would_not_mean_off_is_refused(tmp_path: Path, setting: str) -> None:
    config = tmp_path / "zero.yaml"
    config.write_text(setting + "\n")
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--config", str(config)], capture_stderr=True, check=False
        )
    assert done.returncode == 2
    assert b"must be more than 0" in done.stderr


async def test_bad_config_exits_2_with_a_message(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("sessions:\n  max_inflight: 3\n")
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--config", str(config)], capture_stderr=True, check=False
        )
    assert done.returncode == 2
    assert b"sessions.max_inflight: unknown setting" in done.stderr


async def test_user_declared_saved_query_tool(demo_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "emcp.yaml"
    config.write_text(
        """
http: {port: 0}
tools:
  - name: device_count
    description: How many readings one device has.
    operation: saved_query
    database: new_company
    sql: "SELECT count(*) AS n FROM sensor WHERE device = :device"
    input_schema:
      type: object
      properties:
        device: {type: string, default: dev-007}
      additionalProperties: false
"""
    )
    settings = load_settings(config, data_dir=demo_dir)
    with trio.fail_after(30):
        async with open_server(settings) as server, mcp_session(server) as session:
            names = {t.name for t in (await session.list_tools()).tools}
            assert "device_count" in names
            by_default = await session.call_tool("device_count", {})
            injected = await session.call_tool("device_count", {"device": "x' OR '1'='1"})
    assert by_default.structured_content["rows"] == [[20_000]]
    assert injected.structured_content["rows"] == [[0]]  # bound as a parameter, never spliced


async def test_saved_query_that_writes_is_refused_at_start(demo_dir: Path, tmp_path: Path) -> None:
    config = tmp_path / "emcp.yaml"
    config.write_text(
        "tools:\n  - name: wipe\n    description: x\n    operation: saved_query\n"
        "    database: new_company\n    sql: DELETE FROM sensor\n"
    )
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--config", str(config), "--data-dir", str(demo_dir)],
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 2
    assert b"tool 'wipe'" in done.stderr


async def test_unknown_source_exits_2(tmp_path: Path) -> None:
    with trio.fail_after(60):
        done = await trio.run_process(
            [sys.executable, "-m", "emcp", "serve", "--source", "postgres:x"], capture_stderr=True, check=False
        )
    assert done.returncode == 2
    assert b"cannot use source 'postgres:x'" in done.stderr


async def test_serve_in_a_trio_nursery_over_a_sqlite_directory(demo_dir: Path) -> None:
    settings = load_settings(source=f"sqlite:{demo_dir}", http__port=0)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(serve, settings)
            async with mcp_session(server) as session:
                tables = await session.call_tool("list_tables", {"database": "new_company"})
            assert "sensor" in tables.structured_content["tables"]
            nursery.cancel_scope.cancel()
        assert server.registry.statistics().sessions_open == 0
