"""EdgeLake's SQL as a sqlglot dialect, so the guard and the query builder speak it.

EdgeLake takes SQLite-like SELECTs with two differences that matter here:

- Relative time is written `NOW() - 7 days` (no INTERVAL keyword). The
  tokenizer rewrites `<+|-> <number> <unit>` into an INTERVAL so the parser
  builds a proper `exp.Interval`, and the generator writes it back in
  EdgeLake's form. Working on tokens leaves string literals untouched.
- The statement travels inside `"…"` in an HTTP header, so the generator
  never quotes identifiers: a name that would need quoting cannot be sent
  and is refused with a clear error instead of producing a broken command.

Function names are rendered lower-case, as EdgeLake's own examples write them
(its result keys are the expressions' text: `count(*)`, `min(value)`).
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.dialects.sqlite import SQLite
from sqlglot.tokens import Token, TokenType

from emcp.sql.guard import SqlRejected

_UNITS = frozenset(
    {"second", "seconds", "minute", "minutes", "hour", "hours", "day", "days", "week", "weeks", "month", "months"}
    | {"year", "years"}
)
_PLAIN_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _rewrite_relative_time(tokens: list[Token]) -> list[Token]:
    """`- 7 days` -> `- INTERVAL '7' days`: the shape sqlglot parses into exp.Interval."""
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if (
            token.token_type == TokenType.NUMBER
            and following is not None
            and following.token_type == TokenType.VAR
            and following.text.lower() in _UNITS
            and out
            and out[-1].token_type in (TokenType.DASH, TokenType.PLUS)
        ):
            out.append(Token(TokenType.INTERVAL, "INTERVAL", token.line, token.col, token.start, token.start))
            out.append(Token(TokenType.STRING, token.text, token.line, token.col, token.start, token.end))
            out.append(following)
            i += 2
            continue
        out.append(token)
        i += 1
    return out


class EdgeLake(SQLite):
    """Registered with sqlglot as the dialect "edgelake" by subclassing."""

    NORMALIZE_FUNCTIONS = "lower"
    # What EdgeLake adds to the query builder's allowlists: now(), and the
    # interval of `NOW() - 7 days` (its unit is a Var under the Interval).
    EXTRA_FUNCTIONS = frozenset({"now"})
    EXTRA_NODES = (exp.Interval, exp.Var)

    def tokenize(self, sql: str) -> list[Token]:
        return _rewrite_relative_time(super().tokenize(sql))

    class Generator(SQLite.Generator):
        def identifier_sql(self, expression: exp.Identifier) -> str:
            name = expression.this
            if not _PLAIN_IDENTIFIER.match(name):
                raise SqlRejected(
                    f"the name {name!r} cannot be sent to EdgeLake: it needs quoting, and EdgeLake takes "
                    "identifiers unquoted inside its command",
                    hint="use names made of letters, digits and underscores",
                )
            return name

        def interval_sql(self, expression: exp.Interval) -> str:
            value, unit = expression.this, expression.args.get("unit")
            if isinstance(value, exp.Literal) and unit is not None:
                return f"{value.name} {unit.name.lower()}"
            raise SqlRejected(
                f"EdgeLake cannot take the interval {expression.sql()}",
                hint="write relative time as NOW() - 7 days",
            )
