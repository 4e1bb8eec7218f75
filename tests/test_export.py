"""`emcp export` as a user runs it: a real process against a real server."""

from __future__ import annotations

import csv
import sqlite3
import sys
from pathlib import Path

import orjson
import trio

from emcp import EmcpServer

SQL = "SELECT * FROM sensor WHERE device IN ('dev-001', 'dev-002', 'dev-003') ORDER BY row_id"


async def _export(server: EmcpServer, *args: str) -> trio.CompletedProcess[bytes]:
    with trio.fail_after(120):
        return await trio.run_process(
            [sys.executable, "-m", "emcp", "export", "--url", server.sse_url, "--database", "new_company", *args],
            capture_stderr=True,
            check=False,
        )


async def test_export_a_large_result_to_ndjson(server: EmcpServer, demo_dir: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.ndjson"
    done = await _export(server, "--sql", SQL, "--output", str(output))
    assert done.returncode == 0, done.stderr
    lines = output.read_bytes().splitlines()
    with sqlite3.connect(demo_dir / "new_company.db") as conn:
        direct = [list(row) for row in conn.execute(SQL)]
    assert orjson.loads(lines[0]) == {"columns": ["row_id", "timestamp", "device", "value", "unit"]}
    assert [orjson.loads(line) for line in lines[1:]] == direct
    assert b"rows" in done.stderr and b"MiB/s" in done.stderr  # the progress line
    assert f"wrote {len(direct):,} rows".encode() in done.stderr


async def test_export_a_table_to_csv(server: EmcpServer, tmp_path: Path) -> None:
    output = tmp_path / "out.csv"
    done = await _export(
        server, "--table", "sensor", "--where", "device = 'dev-007'", "-o", str(output), "--format", "csv"
    )
    assert done.returncode == 0, done.stderr
    with output.open(newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["row_id", "timestamp", "device", "value", "unit"]
    assert len(rows) == 1 + 20_000 and {row[2] for row in rows[1:]} == {"dev-007"}


async def test_export_a_small_result(server: EmcpServer, tmp_path: Path) -> None:
    output = tmp_path / "count.ndjson"
    done = await _export(server, "--sql", "SELECT count(*) AS n FROM sensor", "-o", str(output))
    assert done.returncode == 0, done.stderr
    assert output.read_bytes() == b'{"columns":["n"]}\n[1000000]\n'


async def test_export_errors_are_one_clear_line(server: EmcpServer, tmp_path: Path) -> None:
    done = await _export(server, "--sql", "DELETE FROM sensor", "-o", str(tmp_path / "x"))
    assert done.returncode == 1
    assert done.stderr.startswith(b"emcp export: the query failed: Error (sql_rejected)")
    assert b"Traceback" not in done.stderr
