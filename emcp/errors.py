"""The one shape of every error a caller can act on, whichever layer raises it."""

from __future__ import annotations


class ActionableError(Exception):
    """An error reported back to the caller, never a crash.

    `code` is a short stable identifier a program can match (`unknown_database`,
    `invalid_json`, `block_gone`...), `message` says what went wrong, and `hint`
    what to change to make the call succeed.
    """

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
