"""EdgeLake source pieces without a node: schema from a table policy, bound parameters, filter values."""

from __future__ import annotations

import json

import pytest

from emcp.sources.base import SourceError
from emcp.sources.edgelake.source import bind_parameters, columns_of_create, filter_value, plain_word
from tests.edgelake_emulator import load_exchanges


def _recorded_creates() -> dict[str, str]:
    reply = load_exchanges()["blockchain_get_table"].payload
    return {policy["table"]["name"]: policy["table"]["create"] for policy in json.loads(reply)}


def test_columns_from_the_recorded_table_policies() -> None:
    creates = _recorded_creates()
    sensor = columns_of_create(creates["sensor"])
    assert [(c.name, c.type, c.system) for c in sensor] == [
        ("row_id", "serial", True),
        ("insert_timestamp", "timestamp", True),
        ("tsd_name", "char(3)", True),
        ("tsd_id", "int", True),
        ("timestamp", "timestamp", False),
        ("device", "char(5)", False),
        ("value", "decimal", False),
    ]
    assert sensor[0].primary_key and not sensor[1].nullable and sensor[5].nullable
    assert [c.name for c in columns_of_create(creates["events"]) if not c.system] == [
        "timestamp",
        "device",
        "level",
        "message",
    ]


def test_a_policy_without_create_table_is_a_bad_reply() -> None:
    with pytest.raises(SourceError) as info:
        columns_of_create("CREATE INDEX i ON t(x);")
    assert info.value.code == "bad_reply"


def test_parameters_become_literals_quoted_by_sqlglot() -> None:
    sql = bind_parameters(
        "SELECT value FROM sensor WHERE device = :device LIMIT :n", {"device": "dev-a' OR 1=1", "n": 3}
    )
    assert sql == "SELECT value FROM sensor WHERE device = 'dev-a'' OR 1=1' LIMIT 3"


@pytest.mark.parametrize("value", ["new company", "a;b", 'a"b', "", "tab\there"])
def test_names_must_be_plain(value: str) -> None:
    with pytest.raises(SourceError, match="cannot be sent to EdgeLake"):
        plain_word(value, "database")


def test_filter_values() -> None:
    assert filter_value("new_company") == "new_company"
    assert filter_value(32048) == "32048"
    assert filter_value(True) == "true"
    assert filter_value("Test Company") == '"Test Company"'
    for bad in ('a"b', "", "line\nbreak"):
        with pytest.raises(SourceError):
            filter_value(bad)
