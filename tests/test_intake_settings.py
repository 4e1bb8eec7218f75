"""Sans-IO pieces: message intake and settings loading."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp_types import JSONRPCNotification, JSONRPCRequest, JSONRPCResponse

from emcp.settings import SettingsError, load_settings
from emcp.transport.intake import IntakeError, parse_message


def test_parse_message_kinds() -> None:
    assert isinstance(parse_message(b'{"jsonrpc":"2.0","id":1,"method":"ping"}'), JSONRPCRequest)
    assert isinstance(parse_message(b'{"jsonrpc":"2.0","method":"notifications/initialized"}'), JSONRPCNotification)
    assert isinstance(parse_message(b'{"jsonrpc":"2.0","id":"a","result":{}}'), JSONRPCResponse)


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_body"),
        (b"  \n", "empty_body"),
        (b"{", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[]", "batch_not_supported"),
        (b"42", "invalid_jsonrpc"),
        (b'{"id":1,"method":"ping"}', "invalid_jsonrpc"),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', "invalid_jsonrpc"),
        (b'{"jsonrpc":"2.0","id":[1],"method":"ping"}', "invalid_jsonrpc"),
        (b'{"jsonrpc":"2.0","method":7}', "invalid_jsonrpc"),
    ],
)
def test_parse_message_rejections_name_the_problem(body: bytes, code: str) -> None:
    with pytest.raises(IntakeError) as info:
        parse_message(body)
    assert info.value.code == code
    assert info.value.message


def test_settings_defaults_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "emcp.yaml"
    config.write_text("http:\n  port: 9000\n  keepalive: 5\nsessions:\n  max_in_flight: 4\ntools_files: [more.yaml]\n")
    settings = load_settings(config, http__port=1234)
    assert settings.http.port == 1234  # the flag wins over the file
    assert settings.http.keepalive == 5.0
    assert settings.sessions.max_in_flight == 4
    assert settings.tools_files == [tmp_path / "more.yaml"]
    assert load_settings().http.host == "127.0.0.1"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("http:\n  prot: 1\n", "http.prot: unknown setting"),
        ("http:\n  port: eighty\n", "expected int"),
        ("http: 5\n", "expected a mapping"),
        ("sessions:\n  max_in_flight: 0\n", "max_in_flight: must be at least 1"),
        ("sessions:\n  idle_timeout: -1\n", "idle_timeout: must be at least 0"),
        ("- a\n", "mapping at the top level"),
        ("http: [\n", "cannot read config"),
        ("sessions:\n  idle_timeout: true\n", "expected float"),
    ],
)
def test_settings_errors_say_which_key(tmp_path: Path, text: str, needle: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=needle):
        load_settings(config)
