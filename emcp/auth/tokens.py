"""Bearer tokens from the config or the environment, kept only as SHA-256 digests.

A token is a random secret handed to one client; the config names it, says
which tools it may use, and holds its SHA-256 digest (`sha256:`) or the name
of an environment variable holding the token itself (`env:`), so no secret
need sit in a config file. Tokens are long random strings, so a fast hash is
enough (nothing to brute-force), and the digest of what a client presents is
compared with every configured digest in constant time, without stopping at
the first match, so timing tells nothing about which digests exist.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from emcp.auth.caller import Caller
from emcp.settings import SettingsError

_DIGEST = re.compile(r"[0-9a-f]{64}")
_KEYS = frozenset({"name", "sha256", "env", "tools", "calls_per_second"})
# Shorter secrets than this are refused: a token must not be guessable.
MIN_TOKEN_LENGTH = 24


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def new_token() -> tuple[str, str]:
    """A fresh token and the hex digest to put in the config."""
    token = secrets.token_urlsafe(32)
    return token, digest(token).hex()


class TokenBook:
    """The configured tokens; `verify` turns a presented token into its `Caller`, or None."""

    def __init__(self, entries: list[tuple[bytes, Caller]]) -> None:
        self._entries = entries

    def __bool__(self) -> bool:
        return bool(self._entries)

    @classmethod
    def from_settings(
        cls, entries: Iterable[Any], tool_names: Iterable[str], environ: Mapping[str, str] = os.environ
    ) -> TokenBook:
        """Check every entry (names, digests, variables, tool names) and say exactly what is wrong."""
        known_tools = frozenset(tool_names)
        book: list[tuple[bytes, Caller]] = []
        names: set[str] = set()
        for i, entry in enumerate(entries):
            where = f"auth.tokens[{i}]"
            if not isinstance(entry, dict):
                raise SettingsError(f"{where}: expected a mapping with name, and sha256 or env")
            unknown = set(entry) - _KEYS
            if unknown:
                raise SettingsError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(_KEYS)}")
            name = entry.get("name")
            if not isinstance(name, str) or not name:
                raise SettingsError(f"{where}.name: a non-empty name is required (it owns results, shows in logs)")
            if name in names:
                raise SettingsError(f"{where}.name: {name!r} is used twice")
            names.add(name)
            caller = Caller(name, _tools_of(entry, where, known_tools), _rate_of(entry, where))
            book.append((_digest_of(entry, where, environ), caller))
        return cls(book)

    def verify(self, token: str) -> Caller | None:
        presented = digest(token)
        found: Caller | None = None
        for expected, caller in self._entries:
            if hmac.compare_digest(presented, expected):
                found = caller
        return found


def _digest_of(entry: dict[str, Any], where: str, environ: Mapping[str, str]) -> bytes:
    if ("sha256" in entry) == ("env" in entry):
        raise SettingsError(f"{where}: give exactly one of sha256 (the token's digest) or env (a variable holding it)")
    if "sha256" in entry:
        value = str(entry["sha256"]).lower()
        if not _DIGEST.fullmatch(value):
            raise SettingsError(f"{where}.sha256: expected 64 hex digits; `emcp token` prints a token and its digest")
        return bytes.fromhex(value)
    variable = str(entry["env"])
    token = environ.get(variable, "")
    if len(token) < MIN_TOKEN_LENGTH:
        state = "is not set" if not token else f"holds a token shorter than {MIN_TOKEN_LENGTH} characters"
        raise SettingsError(f"{where}.env: the variable {variable} {state}; `emcp token` prints a good one")
    return digest(token)


def _rate_of(entry: dict[str, Any], where: str) -> float | None:
    rate = entry.get("calls_per_second")
    if rate is None:
        return None
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate < 0:
        raise SettingsError(f"{where}.calls_per_second: expected a number of calls per second (0 = unlimited)")
    return float(rate)


def _tools_of(entry: dict[str, Any], where: str, known: frozenset[str]) -> frozenset[str] | None:
    tools = entry.get("tools")
    if tools is None or tools == "*":
        return None
    if not isinstance(tools, list) or not all(isinstance(t, str) for t in tools):
        raise SettingsError(f"{where}.tools: expected a list of tool names, or '*' for all")
    unknown = sorted(set(tools) - known)
    if unknown:
        raise SettingsError(f"{where}.tools: no such tools {unknown}; the tools are {sorted(known)}")
    return frozenset(tools)
