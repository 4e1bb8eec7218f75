"""Blocks without I/O: sizes as they travel in JSON, and a faithful NDJSON document."""

from __future__ import annotations

import base64
import json

import orjson

from emcp.blocks.download import csv_lines
from emcp.blocks.encoding import Block, BlockEncoder, escaped_size, json_lines

ROWS = [[i, f"dev-{i % 7}", i * 0.5, 'q"uote\\back\nline' if i % 5 == 0 else None] for i in range(5000)]


def _blocks(size: int) -> list[Block]:
    encoder = BlockEncoder(["id", "device", "value", "note"], size)
    blocks = encoder.add(ROWS[:1234])
    blocks += encoder.add(ROWS[1234:])
    last = encoder.finish()
    return blocks + ([last] if last else [])


def test_escaped_size_is_the_size_inside_a_json_string() -> None:
    for row in ROWS[:50]:
        line = orjson.dumps(row) + b"\n"
        assert escaped_size(line) == len(json.dumps(line.decode(), ensure_ascii=False)) - 2


def test_json_lines_is_one_json_array_per_row_whatever_the_values_hold() -> None:
    tricky = [
        [1, "a],[b", None],  # the separator between rows, inside a string
        [2, "x]", "[y"],
        [3, [4, 5], [6]],  # nested lists put "],[" inside a row
        [4, b"\x00\xffbytes", "\u00e9t\u00e9 \u2603"],
        [5, 'q"uote\\back\nline\r', 2.5],
    ]
    for rows in ([], [tricky[0]], tricky, tricky[1:2] * 3, ROWS, [*ROWS, *tricky]):
        data = json_lines(rows)
        assert data.endswith(b"\n") or not rows
        lines = data.splitlines()
        assert len(lines) == len(rows)
        assert [orjson.loads(line) for line in lines] == [
            [("base64:" + base64.b64encode(v).decode()) if isinstance(v, bytes) else v for v in row] for row in rows
        ]


def test_blocks_fit_the_size_and_concatenate_to_the_document() -> None:
    blocks = _blocks(4096)
    assert len(blocks) > 10
    assert [b.index for b in blocks] == list(range(len(blocks)))
    assert all(escaped_size(b.data) <= 4096 for b in blocks)
    lines = b"".join(b.data for b in blocks).splitlines()
    assert orjson.loads(lines[0]) == {"columns": ["id", "device", "value", "note"]}
    assert [orjson.loads(line) for line in lines[1:]] == ROWS
    assert sum(b.rows for b in blocks) == len(ROWS)
    assert all(b.first_row == sum(x.rows for x in blocks[: b.index]) for b in blocks)


def test_a_row_larger_than_a_block_gets_a_block_of_its_own() -> None:
    encoder = BlockEncoder(["x"], 100)
    big = ["y" * 500]
    blocks = encoder.add([[1], big, [2]])
    blocks.append(encoder.finish())
    assert [b.rows for b in blocks] == [1, 1, 1]
    assert orjson.loads(blocks[1].data) == big


def test_csv_of_blocks() -> None:
    text = b"".join(csv_lines(b.data) for b in _blocks(4096)).decode()
    lines = text.split("\n")
    assert lines[0] == "id,device,value,note"
    assert lines[1] == '0,dev-0,0.0,"q""uote\\back'  # the quoted field goes on over its line break
