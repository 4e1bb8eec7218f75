"""Blocks without I/O: sizes as they travel in JSON, and a faithful NDJSON document."""

from __future__ import annotations

import base64
import json
from itertools import pairwise

import orjson
from hypothesis import given
from hypothesis import strategies as st

from emcp.blocks.download import csv_lines
from emcp.blocks.encoding import Block, BlockEncoder, escaped_size, header_line, json_lines

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
        [6, 2**64, -(2**63) - 1, 10**30],  # integers past 64 bits (EdgeLake's JSON can hold them) stay exact
    ]
    for rows in ([], [tricky[0]], tricky, tricky[1:2] * 3, ROWS, [*ROWS, *tricky]):
        data = json_lines(rows)
        assert data.endswith(b"\n") or not rows
        lines = data.splitlines()
        assert len(lines) == len(rows)
        assert [json.loads(line) for line in lines] == [  # json: orjson reads big integers as floats
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


_CELLS = st.none() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)


@given(
    rows=st.lists(st.lists(_CELLS, min_size=2, max_size=2), max_size=300),
    size=st.integers(min_value=1, max_value=2048),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=4),
)
def test_any_rows_in_any_batches_make_blocks_that_fit_and_read_back(
    rows: list[list[object]], size: int, cuts: list[int]
) -> None:
    encoder = BlockEncoder(["a", "b"], size)
    blocks: list[Block] = []
    bounds = [0, *sorted(c for c in cuts if c <= len(rows)), len(rows)]
    for start, stop in pairwise(bounds):
        blocks += encoder.add(rows[start:stop])
    last = encoder.finish()
    blocks += [last] if last else []
    # Within the size, or one row alone (block 0 also starts with the header line, which may not fit either).
    assert all(escaped_size(b.data) <= size or b.rows <= 1 for b in blocks)
    assert all(b.rows or b.index == 0 for b in blocks)
    lines = b"".join(b.data for b in blocks).splitlines()
    assert [json.loads(line) for line in lines[1:]] == rows
    assert [b.first_row for b in blocks] == [sum(x.rows for x in blocks[: b.index]) for b in blocks]


def test_a_batch_split_over_blocks_fills_each_one() -> None:
    """Cutting a batch larger than a block: every block takes as many of its lines as fit."""
    encoder = BlockEncoder(["id", "device", "value", "note"], 4096)
    blocks = encoder.add(ROWS)
    lines = [orjson.dumps(row) + b"\n" for row in ROWS]
    taken = 0
    for block in blocks:
        taken += block.rows
        assert escaped_size(block.data) + escaped_size(lines[taken]) > 4096


def test_a_row_larger_than_a_block_gets_a_block_of_its_own() -> None:
    encoder = BlockEncoder(["x"], 100)
    big = ["y" * 500]
    blocks = encoder.add([[1], big, [2]])
    blocks.append(encoder.finish())
    assert [b.rows for b in blocks] == [1, 1, 1]
    assert orjson.loads(blocks[1].data) == big


def test_csv_keeps_integers_past_64_bits_exact() -> None:
    rows = [[2**64, -(2**63) - 1, 10**30, 1.5, "id 12345678901234567890"], [1, 2, 3, 0.25, "x"]]
    text = csv_lines(header_line(["a", "b", "c", "d", "e"]) + json_lines(rows)).decode()
    assert text.splitlines()[1:] == [
        "18446744073709551616,-9223372036854775809,1000000000000000000000000000000,1.5,id 12345678901234567890",
        "1,2,3,0.25,x",
    ]


def test_csv_of_blocks() -> None:
    text = b"".join(csv_lines(b.data) for b in _blocks(4096)).decode()
    lines = text.split("\n")
    assert lines[0] == "id,device,value,note"
    assert lines[1] == '0,dev-0,0.0,"q""uote\\back'  # the quoted field goes on over its line break


def test_an_empty_batch_changes_nothing() -> None:
    """A source may hand over an empty batch: it neither cuts the block being filled nor adds an empty one."""
    encoder = BlockEncoder(["x"], 3)  # every row is a block of its own; the second waits to be cut
    blocks = encoder.add([[1], [2]])
    assert encoder.add([]) == []
    blocks.append(encoder.finish())
    assert [b.rows for b in blocks] == [1, 1]
