"""The `emcp` command."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from emcp import __version__
from emcp.allocator import tune_for_blocks
from emcp.auth import new_token
from emcp.collector import freeze_startup_objects, tune_collector
from emcp.export import ExportError, ExportRequest, export
from emcp.ops.logs import FORMATS, configure_logging
from emcp.server import open_core, open_server
from emcp.settings import Settings, SettingsError, load_settings
from emcp.sources.base import SourceError
from emcp.tools.spec import ToolSpecError
from emcp.transport.stdio import open_stdio_streams, serve_stdio_session

logger = logging.getLogger("emcp")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emcp", description="An MCP server for EdgeLake data, on Trio.")
    parser.add_argument("--version", action="version", version=f"emcp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    # What every serving command takes: where the data is, the config file, logging.
    serving = argparse.ArgumentParser(add_help=False)
    serving.add_argument(
        "--source",
        help="sqlite:PATH (a SQLite file or a directory of them) or edgelake:http://HOST:PORT[,...]; "
        "default: the demo data",
    )
    serving.add_argument("--config", type=Path, help="a YAML config file (settings and your own tools)")
    serving.add_argument("--data-dir", type=Path, help="where the demo data is generated")
    serving.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    serving.add_argument(
        "--log-format", choices=FORMATS, help="text (default) or json: one JSON object per line, for log collectors"
    )
    serve = commands.add_parser(
        "serve", parents=[serving], help="serve MCP over HTTP (Streamable HTTP, SSE, WebSocket)"
    )
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8765; 0 picks a free one)")
    serve.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="serve a non-loopback address without auth (only behind something that authenticates)",
    )
    commands.add_parser(
        "stdio", parents=[serving], help="serve one MCP session on stdin/stdout (for clients that spawn emcp)"
    )
    export = commands.add_parser("export", help="run a query on a running emcp server and write the whole result")
    export.add_argument("--url", default="http://127.0.0.1:8765/mcp/sse", help="the server's SSE endpoint")
    export.add_argument("--database", required=True)
    what = export.add_mutually_exclusive_group(required=True)
    what.add_argument("--sql", help="one read-only SELECT")
    what.add_argument("--table", help="a table to read (with --where and --limit)")
    export.add_argument("--where", help="with --table: a boolean expression over its columns")
    export.add_argument("--limit", type=int, default=2**31 - 1, help="with --table: at most this many rows")
    export.add_argument("--output", "-o", type=Path, required=True)
    export.add_argument("--format", choices=["ndjson", "csv"], default="ndjson")
    export.add_argument("--token", default=os.environ.get("EMCP_TOKEN"), help="bearer token (default: $EMCP_TOKEN)")
    commands.add_parser(
        "token", help="print a new bearer token, and the config entry that admits it (only its digest)"
    ).add_argument("--name", default="client", help="the name the token's calls go by (logs, result ownership)")
    return parser


def _export(args: argparse.Namespace) -> int:
    request = ExportRequest(
        url=args.url,
        database=args.database,
        output=args.output,
        format=args.format,
        sql=args.sql,
        table=args.table,
        where=args.where,
        limit=args.limit,
        token=args.token,
    )
    try:
        progress = trio.run(export, request)
    except (ExportError, OSError) as exc:
        print(f"emcp export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {progress.rows:,} rows to {args.output}", file=sys.stderr)
    return 0


async def _serve_until_signal(settings: Settings) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_server(settings) as server:
            freeze_startup_objects()
            print(f"emcp {__version__} serving {server.source.kind} data", flush=True)
            print(f"  Streamable HTTP (protocols 2025-03-26 to 2026-07-28): {server.mcp_url}", flush=True)
            print(f"  SSE endpoint (protocol 2024-11-05): {server.sse_url}", flush=True)
            print(f"  WebSocket (subprotocol mcp): {server.ws_url}", flush=True)
            if settings.http.host in ("0.0.0.0", "::"):
                print("  (bound to every interface: clients use this machine's name or address)", flush=True)
            async for signum in signals:
                print(f"{signal.Signals(signum).name}: shutting down gracefully", flush=True)
                break


async def _stdio_until_signal(settings: Settings) -> None:
    """Serve one session on stdin/stdout until input ends or SIGINT/SIGTERM; either way, exit cleanly.

    stdout carries only protocol lines, so nothing here prints: logs go to stderr.
    """
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with open_core(settings) as server, trio.open_nursery() as nursery:
            freeze_startup_objects()

            async def stop_on_signal() -> None:
                async for signum in signals:
                    logger.info("%s: closing the stdio session", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            receive, send = open_stdio_streams()
            async with receive, send:
                await serve_stdio_session(server.registry, settings, receive, send)
            nursery.cancel_scope.cancel()


def _run(serve: Callable[[Settings], Awaitable[None]], settings: Settings) -> None:
    """`trio.run`, with a lone error out of the server's nurseries (a port in use...) raised as itself."""
    try:
        trio.run(serve, settings)
    except BaseExceptionGroup as group:
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, OSError | SettingsError | SourceError | ToolSpecError):
            raise leaf from None
        raise


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "export":
        return _export(args)
    if args.command == "token":
        token, digest = new_token()
        print(f"token (give it to the client, keep it secret): {token}")
        print(f"config entry:\nauth:\n  tokens:\n    - name: {args.name}\n      sha256: {digest}")
        return 0
    try:
        given = {"source": args.source, "data_dir": args.data_dir, "logging__format": args.log_format}
        if args.command == "stdio":
            # The client owns the process and ends the session by closing stdin;
            # an idle timeout would only kill the server under a quiet client.
            settings = load_settings(args.config, sessions__idle_timeout=0.0, **given)
            serve = _stdio_until_signal
        else:
            settings = load_settings(
                args.config, http__host=args.host, http__port=args.port, auth__insecure=args.insecure, **given
            )
            serve = _serve_until_signal
        configure_logging(args.log_level, settings.logging)
        if settings.blocks.tune_malloc:
            tune_for_blocks(settings.blocks.size)
        tune_collector(settings.runtime.gc_threshold)
        _run(serve, settings)
    except (SettingsError, SourceError, ToolSpecError) as exc:
        print(f"emcp: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"emcp: cannot serve: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
