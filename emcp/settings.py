"""Settings: defaults, the YAML config file and command-line overrides, in one typed tree.

Every limit emcp enforces lives here with its default, so the README's
configuration table, the CLI and the tests all read the same names.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class SettingsError(ValueError):
    """A config file or flag that cannot be used; the message says which key and why."""


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "emcp"


# Field metadata for limits where 0 would refuse everything (or deadlock) rather than mean "off".
AT_LEAST_ONE = {"min": 1}
# For durations where 0 would spin (a keepalive loop) or fail everything (a timeout) rather than mean "off".
POSITIVE = {"positive": True}


@dataclass
class HttpSettings:
    host: str = "127.0.0.1"
    port: int = 8765
    # Requests beyond this body size get 413 before the body is read whole.
    max_body_bytes: int = field(default=1024 * 1024, metadata=AT_LEAST_ONE)
    # Seconds between SSE keepalive comments: how a vanished peer is noticed.
    keepalive: float = field(default=15.0, metadata=POSITIVE)
    # Seconds that open connections get to finish after a shutdown trigger.
    graceful_timeout: float = 3.0
    backlog: int = field(default=4096, metadata=AT_LEAST_ONE)
    # Seconds between WebSocket pings (hypercorn's keepalive on /mcp/ws): how a vanished peer is noticed.
    ws_ping_interval: float = 20.0
    # A WebSocket message larger than this closes the connection with 1009 (message too big).
    ws_max_message_bytes: int = field(default=1024 * 1024, metadata=AT_LEAST_ONE)
    # Host names (no port) requests may address, against DNS rebinding. Empty = the loopback
    # names when the server is bound to a loopback address, and no check otherwise.
    allowed_hosts: list[str] = field(default_factory=list)
    # Origins (scheme://host[:port]) whose pages may call the server, beyond those of the allowed
    # hosts. A request with any other Origin header is refused.
    allowed_origins: list[str] = field(default_factory=list)
    # Seconds /readyz waits for the source's status check before answering 503: keep it under the
    # orchestrator's probe timeout (Kubernetes: 1 s by default).
    ready_timeout: float = field(default=0.8, metadata=POSITIVE)


@dataclass
class SessionSettings:
    max_sessions: int = field(default=10_000, metadata=AT_LEAST_ONE)
    # Requests a session may have between admission and the response being
    # written; a client that stops reading holds at most this many results.
    max_in_flight: int = field(default=16, metadata=AT_LEAST_ONE)
    # How long a POSTed request waits for an in-flight slot before 429.
    admission_timeout: float = field(default=30.0, metadata=POSITIVE)
    # A session with nothing in flight and no message for this long is closed; 0 = never.
    idle_timeout: float = 3600.0


@dataclass
class QuerySettings:
    # Rows and bytes of a result returned inline; past either, the result is
    # truncated with an explicit flag and the count of rows read.
    max_inline_rows: int = field(default=1000, metadata=AT_LEAST_ONE)
    max_inline_bytes: int = 256 * 1024
    # Rows per batch a query's rows travel in (SQLite: per message from its worker process).
    batch_rows: int = field(default=4096, metadata=AT_LEAST_ONE)
    # SQLite statements running at once, across all sessions: worker processes for queries, worker
    # threads for catalogue reads, one limit for both.
    max_threads: int = field(default=8, metadata=AT_LEAST_ONE)
    # SQLite worker processes kept between queries (about 13 MB each); more are started as needed.
    # Fewer than max_threads saves memory but starts a process (tens of ms of CPU) for each query
    # past them whenever that many run at once.
    idle_workers: int = 8
    # Seconds a tool call may run before it is cancelled (and its query interrupted); 0 = no limit.
    # A call may ask for its own with `_meta: {"emcp/timeout": seconds}`, up to max_timeout.
    timeout: float = 300.0
    max_timeout: float = 1800.0
    # Tool calls per second per caller (a token, or all anonymous clients together), with bursts of
    # up to calls_burst; 0 = unlimited. A token entry's own `calls_per_second` overrides it.
    calls_per_second: float = 0.0
    calls_burst: int = field(default=20, metadata=AT_LEAST_ONE)
    # Seconds the query tool reuses a table's columns before asking the source again; 0 = ask every
    # call. A query naming a column the remembered schema lacks is checked against a fresh one first.
    schema_ttl: float = 30.0


@dataclass
class BlocksSettings:
    # Results larger than the inline budget stream as blocks; off = truncate with a hint.
    enabled: bool = True
    # Bytes of rows returned inline before a result goes to a block stream.
    threshold: int = field(default=256 * 1024, metadata=AT_LEAST_ONE)
    # Bytes of one encoded block, counted as it travels inside a JSON string, so a
    # block stays under the SDK clients' 1 MiB limit on one SSE event.
    size: int = field(default=512 * 1024, metadata=AT_LEAST_ONE)
    # Blocks the producer may run ahead of the reader: memory per stream is about
    # (window + 2) x size, whatever the result's size.
    window: int = field(default=2, metadata=AT_LEAST_ONE)
    # Seconds a stream may go unread before it is dropped (and its query stopped).
    ttl: float = 300.0
    # Open streams per session, and in the whole server.
    max_per_session: int = field(default=8, metadata=AT_LEAST_ONE)
    max_streams: int = field(default=1000, metadata=AT_LEAST_ONE)
    # Tune glibc's malloc so block buffers are reused rather than faulted in afresh (emcp/allocator.py);
    # ignored when MALLOC_*_ variables or GLIBC_TUNABLES are set.
    tune_malloc: bool = True


@dataclass
class EdgeLakeSettings:
    # Seconds one call to a node may take (connect and reply head; then each read of a
    # streamed result). A dead peer stalls EdgeLake about 12 s whatever it is told.
    timeout: float = 20.0
    # Where SQL runs: "network" (every operator holding the table) or "local".
    destination: str = "network"
    user_agent: str = "AnyLog/1.23"
    # Seconds an unreachable node is skipped before it is tried again.
    retry_down_after: float = 30.0


@dataclass
class JwtSettings:
    # OAuth 2.1 resource-server mode: the issuer's JWKS, as an https URL or a file; "" = off.
    jwks: str = ""
    # The `iss` every token must carry, and the `aud`: this server's resource URL (its /mcp URL).
    issuer: str = ""
    audience: str = ""
    # Scopes every token must grant (403 naming them otherwise).
    scopes: list[str] = field(default_factory=list)
    algorithms: list[str] = field(default_factory=lambda: ["RS256", "ES256"])
    # Advertised at /.well-known/oauth-protected-resource; default: [issuer].
    authorization_servers: list[str] = field(default_factory=list)
    # Seconds of clock skew tolerated on exp/nbf/iat.
    leeway: float = 30.0
    # A JWKS URL is fetched again for a key id it lacked at most this often (seconds).
    refetch_every: float = 60.0


@dataclass
class AuthSettings:
    # Bearer tokens, each {name, sha256 | env, tools, calls_per_second}: see emcp/auth/tokens.py and
    # docs/SECURITY.md.
    # None configured = no auth, which emcp allows only on a loopback address unless `insecure`.
    tokens: list[dict[str, Any]] = field(default_factory=list)
    # Serve a non-loopback address without auth (`emcp serve --insecure`): anyone who reaches it may call.
    insecure: bool = False
    jwt: JwtSettings = field(default_factory=JwtSettings)


@dataclass
class LoggingSettings:
    # "text" (one readable line per record) or "json" (one JSON object per line, for log collectors).
    format: str = "text"
    # Put the SQL of each tool call in its request log line. Off by default: SQL carries data
    # (the values in a WHERE clause), which logs are not meant to hold.
    sql: bool = False


@dataclass
class RuntimeSettings:
    # Allocations between two collections of Python's young GC generation (Python: 700); fewer
    # collections, far fewer full ones, shorter pauses on requests (emcp/collector.py). 0 = Python's.
    gc_threshold: int = 50_000


@dataclass
class Settings:
    # "" = the embedded demo data; "sqlite:PATH" = SQLite files;
    # "edgelake:http://HOST:PORT[,http://HOST2:PORT]" = an EdgeLake network.
    source: str = ""
    data_dir: Path = field(default_factory=_default_data_dir)
    tools_files: list[Path] = field(default_factory=list)
    http: HttpSettings = field(default_factory=HttpSettings)
    sessions: SessionSettings = field(default_factory=SessionSettings)
    query: QuerySettings = field(default_factory=QuerySettings)
    blocks: BlocksSettings = field(default_factory=BlocksSettings)
    edgelake: EdgeLakeSettings = field(default_factory=EdgeLakeSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    # Tools declared inline in the config file (same shape as tools.yaml entries).
    tools: list[dict[str, Any]] = field(default_factory=list)


def _merge(target: Any, values: dict[str, Any], where: str) -> None:
    """Copy `values` onto the dataclass `target`, checking names and types."""
    known = {f.name: f for f in dataclasses.fields(target)}
    for key, value in values.items():
        if key not in known:
            raise SettingsError(f"{where}{key}: unknown setting; known: {', '.join(sorted(known))}")
        current = getattr(target, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise SettingsError(f"{where}{key}: expected a mapping")
            _merge(current, value, f"{where}{key}.")
        elif isinstance(current, Path):
            setattr(target, key, Path(str(value)).expanduser())
        elif isinstance(current, list):
            if not isinstance(value, list):
                raise SettingsError(f"{where}{key}: expected a list")
            setattr(target, key, value)
        else:
            expected = type(current)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, expected) or isinstance(value, bool) != (expected is bool):
                raise SettingsError(f"{where}{key}: expected {expected.__name__}, got {value!r}")
            minimum = known[key].metadata.get("min", 0)
            if isinstance(value, int | float) and not isinstance(value, bool) and value < minimum:
                raise SettingsError(f"{where}{key}: must be at least {minimum}")
            if known[key].metadata.get("positive") and value <= 0:
                raise SettingsError(f"{where}{key}: must be more than 0 (0 would not mean off here)")
            setattr(target, key, value)


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Defaults, then the YAML file, then non-None `overrides` (dotted keys as `http__port`)."""
    settings = Settings()
    if config is not None:
        try:
            data = yaml.safe_load(config.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise SettingsError(f"cannot read config {config}: {exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"config {config}: expected a mapping at the top level")
        _merge(settings, data, "")
        settings.tools_files = [p if p.is_absolute() else config.parent / p for p in map(Path, settings.tools_files)]
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = key.split("__")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    _merge(settings, nested, "")
    return settings
