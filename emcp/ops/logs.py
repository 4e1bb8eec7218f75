"""emcp's log output: human-readable lines or JSON lines, with secrets scrubbed either way.

`emcp serve --log-format json` writes one JSON object per line on stderr, for
log collectors: every ordinary log record, and one line per MCP request (its
fields come from `emcp.ops.requests`). Nothing emcp logs on purpose carries a
secret, but a library's message might quote a header or a URL; so every line,
whichever format, passes through `redact()` last, which masks bearer tokens,
credential headers and `token=` query parameters wherever they appear.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import IO, Any

import orjson

from emcp.settings import LoggingSettings, SettingsError

#: The formats `logging.format` takes.
FORMATS = ("text", "json")
#: The attribute of a log record holding its structured fields (`logger.info(..., extra={FIELDS: {...}})`).
FIELDS = "emcp_fields"

_SECRETS = (
    # "Bearer <token>" in a header value, a repr of headers, an exception text.
    (re.compile(r"(?i)\b(bearer\s+)[^\s'\",;]+"), r"\1[redacted]"),
    # A credential header with its value: "authorization: Basic abc", ('cookie', 'a=b'), {"x-api-key": "k"}.
    (
        re.compile(
            r"(?i)(\b(?:proxy-)?authorization|\bcookie|\bset-cookie|\bx-api-key)(['\"]?\s*[:=,]\s*(?-i:b)?['\"]?)[^'\"\r\n]+"
        ),
        r"\1\2[redacted]",
    ),
    # A token in a URL: download links carry ?token=...
    (re.compile(r"(?i)([?&](?:access_)?token=)[^&\s'\"]+"), r"\1[redacted]"),
)


def redact(text: str) -> str:
    """`text` with bearer tokens, credential header values and `token=` parameters masked."""
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class TextFormatter(logging.Formatter):
    """The classic one-line format, the record's fields after the message as key=value, scrubbed."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        fields = getattr(record, FIELDS, None) or {}
        pairs = [f"{key}={_text_value(value)}" for key, value in fields.items() if value is not None]
        return " ".join([line, *pairs])

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def _text_value(value: object) -> str:
    """A field's value in a text line: quoted when it holds spaces or quotes, so the line still splits."""
    text = str(value)
    return orjson.dumps(text).decode() if not text or any(c in text for c in " \t\n\"'") else text


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's fields, any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, FIELDS, None) or {})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        # Scrubbed before encoding, while quotes are still quotes rather than JSON escapes.
        scrubbed = {key: redact(value) if isinstance(value, str) else value for key, value in entry.items()}
        return orjson.dumps(scrubbed, default=str).decode()


def log_handler(log_format: str, stream: IO[str] | None = None) -> logging.Handler:
    """A handler writing to `stream` (stderr by default) in `log_format`: "text" or "json"."""
    if log_format not in FORMATS:
        raise SettingsError(f"logging.format: expected one of {', '.join(FORMATS)}, got {log_format!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    return handler


def configure_logging(level: str, settings: LoggingSettings) -> None:
    """Send every log record to stderr in the configured format (stdout may be a protocol stream)."""
    logging.basicConfig(level=level, handlers=[log_handler(settings.format)], force=True)
