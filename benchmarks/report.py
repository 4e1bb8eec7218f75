"""docs/benchmarks.md and its plots, from the raw figures of a run (docs/benchmarks/raw.json).

    python benchmarks/report.py [docs/benchmarks/raw.json]    # rewrite the page and plots from the figures

Kept apart from the measuring so the page can be re-rendered (wording,
plots) without re-running twenty minutes of benchmarks, and so every figure on
the page comes from the JSON committed next to it.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on a benchmark machine
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

LABELS = {
    "sse": "SSE (2024-11-05)",
    "streamable-http": "Streamable HTTP (2025-11-25)",
    "streamable-http-2026": "Streamable HTTP (2026-07-28)",
    "websocket": "WebSocket",
}
HTTP_TRANSPORTS = ("sse", "streamable-http", "streamable-http-2026")
COLORS = {"emcp": "tab:blue", "sdk": "tab:orange"}
PACKAGES = ("mcp", "trio", "hypercorn", "quart-trio", "uvicorn", "starlette", "anyio", "httpx2", "orjson")

# The goals of issue 7.
GOAL_HTTP_RATIO = 2.0
GOAL_WS_RATIO = 5.0
GOAL_P99_RATIO = 0.5
GOAL_IDLE_KIB = 32.0
GOAL_IDLE_HELD = 20_000


# -- the machine -----------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the figures were measured on: enough to judge them, nothing that names this machine."""
    cpu = "unknown"
    meminfo = Path("/proc/meminfo")
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    ram = 0.0
    if meminfo.exists():
        found = re.search(r"^MemTotal:\s*(\d+) kB", meminfo.read_text(), re.MULTILINE)
        ram = int(found.group(1)) / 2**20 if found else 0.0
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", "emcp"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent.parent,
        ).stdout.strip()
        commit += " plus uncommitted changes under emcp/" if changed else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "-"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(ram, 1),
        "kernel": platform.release(),
        "os": platform.system(),
        "python": platform.python_version(),
        "packages": versions,
        "emcp_commit": commit,
    }


def machine_line(m: dict[str, Any]) -> str:
    where = f"{m['os']} {m['kernel']}, python {m['python']}"
    return f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, {where}"


# -- helpers ---------------------------------------------------------------------------


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    if not a or not b:
        return "-"
    return f"{a / b:.2f}x" if a / b >= 0.1 else f"{a / b:.2g}x"  # a 1,000-fold gap stays readable


def table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    header = list(header)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def calls_index(raw: dict[str, Any]) -> dict[tuple[str, str, int], dict[str, Any]]:
    figures = raw.get("calls", {}).get("figures", [])
    return {(f["server"], f["transport"], f["concurrency"]): f for f in figures}


def sdk_best(index: dict[tuple[str, str, int], dict[str, Any]], concurrency: int) -> dict[str, Any] | None:
    """The baseline's best transport at a concurrency: what emcp's WebSocket is set against (the SDK has none)."""
    runs = [f for (s, _, c), f in index.items() if s == "sdk" and c == concurrency]
    return max(runs, key=lambda f: f["calls_per_s"]) if runs else None


def counterpart(index: dict[tuple[str, str, int], dict[str, Any]], transport: str, c: int) -> dict[str, Any] | None:
    return sdk_best(index, c) if transport == "websocket" else index.get(("sdk", transport, c))


def section_note(raw: dict[str, Any], name: str) -> str:
    s = raw[name]
    quick = " (a `--quick` run: small figures)" if s.get("quick") else ""
    commit = f", emcp at {s['emcp_commit']}" if s.get("emcp_commit") else ""
    return f"_Run at {s['run_at']}, {s['seconds']:.0f} s{commit}{quick}._"


# -- the goals --------------------------------------------------------------------------


def goals(raw: dict[str, Any]) -> str:
    index = calls_index(raw)
    rows = []
    if index:
        concurrencies = sorted({c for (_, _, c) in index})
        http = [
            (index[("emcp", t, c)]["calls_per_s"] / index[("sdk", t, c)]["calls_per_s"], f"{LABELS[t]} c={c}")
            for t in HTTP_TRANSPORTS
            for c in concurrencies
            if ("emcp", t, c) in index and ("sdk", t, c) in index
        ]
        ws = [
            (index[("emcp", "websocket", c)]["calls_per_s"] / best["calls_per_s"], f"c={c}")
            for c in concurrencies
            if ("emcp", "websocket", c) in index and (best := sdk_best(index, c))
        ]
        p99 = [
            (f["p99_ms"] / other["p99_ms"], f"{LABELS[t]} c={c}")
            for (s, t, c), f in index.items()
            if s == "emcp" and (other := counterpart(index, t, c))
        ]
        rows.append(
            goal_row(
                f"calls/s over HTTP transports ≥ {GOAL_HTTP_RATIO:g}x the SDK's",
                http,
                higher=True,
                target=GOAL_HTTP_RATIO,
            )
        )
        rows.append(
            goal_row(
                f"calls/s over WebSocket ≥ {GOAL_WS_RATIO:g}x the SDK's best transport",
                ws,
                higher=True,
                target=GOAL_WS_RATIO,
            )
        )
        rows.append(goal_row(f"p99 latency ≤ {GOAL_P99_RATIO:g}x the SDK's", p99, higher=False, target=GOAL_P99_RATIO))
    idle = [f for f in raw.get("idle", {}).get("figures", []) if f["server"] == "emcp" and "skipped" not in f]
    if idle:
        per = [(f["kib_per_session"], f"{LABELS[f['transport']]} {f['opened']:,}") for f in idle if f["opened"]]
        rows.append(
            goal_row(
                f"RSS per idle session ≤ {GOAL_IDLE_KIB:g} KiB", per, higher=False, target=GOAL_IDLE_KIB, unit=" KiB"
            )
        )
        most: dict[str, int] = {}
        for f in idle:
            if f["held"]:
                most[f["transport"]] = max(most.get(f["transport"], 0), f["requested"])
        held = [(float(most.get(t, 0)), LABELS[t]) for t in dict.fromkeys(f["transport"] for f in idle)]
        rows.append(
            goal_row(
                f"{GOAL_IDLE_HELD:,} idle sessions held",
                held,
                higher=True,
                target=GOAL_IDLE_HELD,
                unit=" sessions",
                digits=0,
            )
        )
    return table(["Goal (issue 7)", "Measured: worst ... best", "Met"], rows)


def goal_row(
    goal: str, values: list[tuple[float, str]], higher: bool, target: float, unit: str = "x", digits: int = 2
) -> list[str]:
    if not values:
        return [goal, "not measured", "-"]
    values.sort(key=lambda v: v[0], reverse=not higher)  # worst first
    met = [v for v in values if (v[0] >= target if higher else v[0] <= target)]
    worst, best = values[0], values[-1]
    measured = f"{worst[0]:,.{digits}f}{unit} ({worst[1]}) ... {best[0]:,.{digits}f}{unit} ({best[1]})"
    verdict = "yes" if len(met) == len(values) else "no" if not met else f"{len(met)} of {len(values)}"
    return [goal, measured, verdict]


# -- the sections -------------------------------------------------------------------------


def calls_section(raw: dict[str, Any]) -> str:
    index = calls_index(raw)
    rows = []
    for (server, transport, c), f in sorted(index.items(), key=lambda kv: (list(LABELS).index(kv[0][1]), kv[0][2])):
        if server != "emcp":
            continue
        other = counterpart(index, transport, c)
        against = (
            "-" if other is None else ("SDK" if transport != "websocket" else f"SDK best: {LABELS[other['transport']]}")
        )
        rows.append(
            [
                LABELS[transport],
                c,
                against,
                fmt(f["calls_per_s"]),
                fmt(other and other["calls_per_s"]),
                ratio(f["calls_per_s"], other and other["calls_per_s"]),
                f"{f['p50_ms']:.2f} / {f['p95_ms']:.2f} / {f['p99_ms']:.2f}",
                "-" if other is None else f"{other['p50_ms']:.2f} / {other['p95_ms']:.2f} / {other['p99_ms']:.2f}",
                ratio(f["p99_ms"], other and other["p99_ms"]),
                fmt(f["cpu_ms_per_call"], 2),
                fmt(other and other["cpu_ms_per_call"], 2),
                ratio(f["cpu_ms_per_call"], other and other["cpu_ms_per_call"]),
            ]
        )
    cfg = raw["calls"]["config"]
    return "\n\n".join(
        [
            "## Tool calls: throughput, latency, server CPU per call",
            section_note(raw, "calls"),
            f"c sessions of the SDK's own client (emcp's `websocket_client` for WebSocket) call `query` "
            f"(10 rows) back to back, at least {cfg['calls']} calls each and {cfg['min_samples']} per round; "
            f"the servers take turns, {cfg['rounds']} round(s) each, and each one's best round is shown. "
            "Ratios are emcp / SDK: above 1 is better for calls/s, below 1 is better for latency and CPU. "
            "**The SDK has no WebSocket server transport**, so emcp's WebSocket rows are set against the "
            "SDK's best transport at the same concurrency (named in the row). The client runs on the same two "
            "cores as the server under test, so at high concurrency part of each figure is the client's cost.",
            table(
                [
                    "Transport",
                    "c",
                    "against",
                    "emcp calls/s",
                    "SDK calls/s",
                    "ratio",
                    "emcp p50/p95/p99 ms",
                    "SDK p50/p95/p99 ms",
                    "p99 ratio",
                    "emcp CPU ms/call",
                    "SDK CPU ms/call",
                    "CPU ratio",
                ],
                rows,
            ),
            "![Throughput against concurrency](benchmarks/throughput.png)",
            "![Latency distributions](benchmarks/latency_cdf.png)",
        ]
    )


def idle_section(raw: dict[str, Any]) -> str:
    figures = raw["idle"]["figures"]
    by = {(f["server"], f["transport"], f["requested"]): f for f in figures}
    rows = []
    for transport in LABELS:
        for n in sorted({f["requested"] for f in figures if f["transport"] == transport}):
            e, s = by.get(("emcp", transport, n)), by.get(("sdk", transport, n))
            rows.append(
                [
                    LABELS[transport],
                    f"{n:,}",
                    *idle_cells(e),
                    *idle_cells(s),
                    ratio(e and e.get("kib_per_session"), s and s.get("kib_per_session")),
                ]
            )
    skipped = sorted({f["skipped"] for f in figures if "skipped" in f})
    return "\n\n".join(
        [
            "## Idle sessions: RSS per session and the most held",
            section_note(raw, "idle"),
            "Sessions that did the MCP handshake and then say nothing (SSE: an open event stream; Streamable "
            "HTTP 2025-11-25: the `initialize` and `notifications/initialized` POSTs, then no connection; "
            "WebSocket: an open socket), opened by light raw clients in helper processes, up a ladder of "
            "counts on one server process per transport. RSS per session = (server RSS with N open - RSS "
            "before) / N. *Held* = all N opened, all still open after a 2 s settle, and a `ping` answered "
            "on a sample of them. Streamable HTTP at 2026-07-28 is stateless: it has no idle sessions. "
            "Both servers cap Streamable HTTP sessions at 10,000 by default (emcp's `sessions.max_sessions`, the "
            "SDK's `max_sessions`); both caps are raised above the ladder's top for this run.",
            table(
                [
                    "Transport",
                    "N",
                    "emcp KiB/session",
                    "emcp held",
                    "emcp s to open",
                    "SDK KiB/session",
                    "SDK held",
                    "SDK s to open",
                    "emcp/SDK memory",
                ],
                rows,
            ),
            *(f"Not attempted: {s} (one descriptor per connection in the server)." for s in skipped),
            "![Idle sessions](benchmarks/idle.png)",
        ]
    )


def idle_cells(f: dict[str, Any] | None) -> list[str]:
    if f is None:
        return ["-", "-", "-"]
    if "skipped" in f:
        return ["not attempted", "-", "-"]
    held = (
        "yes" if f["held"] else f"no: {f['opened']:,} opened, {f['alive']:,} open, ping {f['answered']}/{f['pinged']}"
    )
    if f.get("errors"):
        held += " (" + "; ".join(f"{k} x{v}" for k, v in list(f["errors"].items())[:2]) + ")"
    return [fmt(f["kib_per_session"]), held, fmt(f["open_seconds"])]


def large_section(raw: dict[str, Any]) -> str:
    figures = raw["large"]["figures"]
    rows = []
    for f in figures:
        rate = f["received_bytes"] / f["seconds"] / 1e6 if f["seconds"] else 0
        rows.append(
            [
                f["size_label"],
                f"{f['rows']:,}",
                f["server"],
                f["path"],
                fmt(f["seconds"], 2),
                fmt(rate),
                fmt(f["server_cpu_s"]),
                fmt(f["rss_growth_mib"]),
                f"{f['received_bytes'] / 1e6:,.0f} MB received" if not f["failure"] else f"**failed**: {f['failure']}",
            ]
        )
    by = {(f["server"], f["path"], f["size_label"]): f for f in figures}
    sizes = list(dict.fromkeys(f["size_label"] for f in figures))
    ratios = []
    for size in sizes:
        sdk = next((f for (s, _, z), f in by.items() if s == "sdk" and z == size), None)
        for (s, path, z), f in by.items():
            if s == "emcp" and z == size and sdk:
                ratios.append(
                    [
                        size,
                        path,
                        ratio(f["seconds"], sdk["seconds"]),
                        ratio(max(f["rss_growth_mib"], 0.1), max(sdk["rss_growth_mib"], 0.1)),
                    ]
                )
    cfg = raw["large"]["config"]
    return "\n\n".join(
        [
            "## Large results: emcp's block stream against the SDK's single result",
            section_note(raw, "large"),
            "The sensor table crossed with itself and cut to the rows whose NDJSON is about the size named. "
            "emcp: the `sql` call (first rows and a handle) then the whole result by its HTTP download, or "
            "by `resources/read` of every block on a raw WebSocket client, two requests ahead; the time "
            "includes the call. SDK: its `sql` tool returns the whole result as one text (an SDK tool cannot "
            "stream), asked with one 2026-07-28 POST on a raw socket. Peak RSS growth is the server's, over "
            f"its RSS before the call (VmHWM reset, and RSS polled every 50 ms). The SDK gets {cfg['time_cap']:.0f} s "
            f"and {cfg['rss_cap_gib']:g} GiB of RSS growth per result; past either it is stopped and the row "
            "says so, with its figures at that moment.",
            table(
                ["Size", "Rows", "Server", "Path", "Seconds", "MB/s", "Server CPU s", "Peak RSS growth MiB", "Result"],
                rows,
            ),
            table(["Size", "emcp path", "time emcp/SDK", "peak RSS growth emcp/SDK"], ratios),
            "![Large results](benchmarks/large.png)",
        ]
    )


def cancel_section(raw: dict[str, Any]) -> str:
    figures = raw["cancel"]["figures"]
    by = {(f["server"], f["transport"]): f for f in figures}
    rows = []
    for transport in LABELS:
        e, s = by.get(("emcp", transport)), by.get(("sdk", transport))
        if e or s:
            rows.append([LABELS[transport], *cancel_cells(e), *cancel_cells(s)])
    return "\n\n".join(
        [
            "## Cancel-to-interrupt latency",
            section_note(raw, "cancel"),
            "A query that works for seconds and answers one row (a count over the sensor table crossed "
            "with itself) is cancelled 0.5 s after the call: `notifications/cancelled` on a 2025-11-25 "
            "session or a WebSocket, closing the response stream at 2026-07-28. The latency is from the "
            "cancel until the server's CPU time last grew before 50 ms without growth, polled every 2 ms: "
            "the moment the server stopped working, judged from outside, the same way for both (resolution: "
            "the kernel's 10 ms CPU clock tick). Median of the rounds; every round in raw.json.",
            table(["Transport", "emcp ms", "emcp: query uncancelled s", "SDK ms", "SDK: query uncancelled s"], rows),
        ]
    )


def cancel_cells(f: dict[str, Any] | None) -> list[str]:
    if f is None:
        return ["- (not served)", "-"]
    return [fmt(f["latency_s"] * 1e3), fmt(f["full_run_s"], 2)]


def machine_section(raw: dict[str, Any]) -> str:
    m = raw["machine"]
    packages = ", ".join(f"{k} {v}" for k, v in m["packages"].items())
    return "\n".join(
        [
            "## Machine",
            "",
            f"- CPU: {m['cpu']}, {m['cores']} cores; RAM {m['ram_gib']} GiB",
            f"- {m['os']} {m['kernel']}, Python {m['python']}",
            f"- Packages: {packages}",
            f"- emcp at commit {m['emcp_commit']}",
            "- Both servers and the load clients share these cores; each server is one process.",
        ]
    )


# -- the plots -------------------------------------------------------------------------------


def plain_log_x(ax: Axes, ticks: list[float] | None = None) -> None:
    """A log x axis labelled 1, 10, 100 rather than 10^0, 10^1, 10^2."""
    ax.set_xscale("log")
    if ticks:
        ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def panel(ax: Axes, title: str, xlabel: str, ticks: list[float] | None, legend_size: int = 8) -> None:
    """What every panel of a plot has: the plain log x axis, a title, a grid and a legend."""
    plain_log_x(ax, ticks)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=legend_size)


def save(fig: Figure, path: Path, dpi: int = 110) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def plot_throughput(raw: dict[str, Any], path: Path) -> None:
    index = calls_index(raw)
    transports = [t for t in LABELS if any(k[1] == t for k in index)]
    fig, axes = plt.subplots(1, len(transports), figsize=(4 * len(transports), 3.6), sharey=True, squeeze=False)
    for ax, transport in zip(axes[0], transports, strict=True):
        for server in ("emcp", "sdk"):
            points = sorted((c, f["calls_per_s"]) for (s, t, c), f in index.items() if s == server and t == transport)
            if transport == "websocket" and server == "sdk":
                points = sorted((c, b["calls_per_s"]) for c in {k[2] for k in index} if (b := sdk_best(index, c)))
                label = "SDK, best transport (no WebSocket)"
            else:
                label = "emcp" if server == "emcp" else "SDK"
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker="o",
                    color=COLORS[server],
                    label=label,
                    linestyle="--" if transport == "websocket" and server == "sdk" else "-",
                )
        ax.set_ylim(bottom=0)
        panel(ax, LABELS[transport], "concurrent sessions", sorted({k[2] for k in index}))
    axes[0][0].set_ylabel("tools/call per second")
    save(fig, path)


def plot_latency(raw: dict[str, Any], path: Path) -> None:
    index = calls_index(raw)
    transports = [t for t in LABELS if any(k[1] == t for k in index)]
    concurrencies = sorted({k[2] for k in index})
    fig, axes = plt.subplots(
        len(transports), len(concurrencies), figsize=(3.6 * len(concurrencies), 2.6 * len(transports)), squeeze=False
    )
    for row, transport in zip(axes, transports, strict=True):
        for ax, c in zip(row, concurrencies, strict=True):
            for server in ("emcp", "sdk"):
                f = index.get((server, transport, c))
                if f is None and transport == "websocket" and server == "sdk":
                    f = sdk_best(index, c)
                if f and f.get("latencies_ms"):
                    xs = sorted(f["latencies_ms"])
                    ys = [(i + 1) / len(xs) for i in range(len(xs))]
                    label = (
                        "emcp"
                        if server == "emcp"
                        else "SDK"
                        if f["transport"] == transport
                        else (f"SDK ({LABELS[f['transport']]})")
                    )
                    ax.plot(xs, ys, color=COLORS[server], label=label)
            plain_log_x(ax)
            ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "23457" else ""))
            ax.tick_params(axis="x", which="minor", labelsize=7)
            ax.set_title(f"{LABELS[transport]}, c={c}", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
            if ax is row[0]:
                ax.set_ylabel("fraction of calls")
            if row is axes[-1]:
                ax.set_xlabel("latency (ms, log)")
    fig.suptitle("tools/call latency distribution (CDF): further left is faster", fontsize=11)
    save(fig, path, dpi=100)


def plot_large(raw: dict[str, Any], path: Path) -> None:
    figures = raw["large"]["figures"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in dict.fromkeys((f["server"], f["path"]) for f in figures):
        points = [f for f in figures if (f["server"], f["path"]) == key]
        sizes = [f["result_bytes"] / 1e6 for f in points]
        style = {
            "color": COLORS[key[0]],
            "marker": "o",
            "linestyle": "-" if "download" in key[1] or key[0] == "sdk" else ":",
        }
        left.plot(sizes, [f["seconds"] for f in points], label=f"{key[0]}: {key[1]}", **style)
        right.plot(sizes, [max(f["rss_growth_mib"], 0.1) for f in points], label=f"{key[0]}: {key[1]}", **style)
        for f in points:
            if f["failure"]:
                right.annotate("failed", (f["result_bytes"] / 1e6, max(f["rss_growth_mib"], 0.1)), fontsize=8)
    for ax, title in ((left, "wall time (s)"), (right, "server peak RSS growth (MiB)")):
        ax.set_yscale("log")
        panel(ax, title, "result size (MB of NDJSON)", sorted({f["result_bytes"] / 1e6 for f in figures}), 7)
    save(fig, path)


def plot_idle(raw: dict[str, Any], path: Path) -> None:
    figures = [f for f in raw["idle"]["figures"] if "skipped" not in f and f["opened"]]
    transports = [t for t in LABELS if any(f["transport"] == t for f in figures)]
    fig, axes = plt.subplots(1, len(transports), figsize=(4 * len(transports), 3.4), sharey=True, squeeze=False)
    for ax, transport in zip(axes[0], transports, strict=True):
        for server in ("emcp", "sdk"):
            points = sorted(
                (f["opened"], f["kib_per_session"])
                for f in figures
                if f["server"] == server and f["transport"] == transport
            )
            if points:
                ax.plot(
                    *zip(*points, strict=True),
                    marker="o",
                    color=COLORS[server],
                    label="emcp" if server == "emcp" else "SDK",
                )
        ax.axhline(GOAL_IDLE_KIB, color="gray", linestyle=":", label=f"goal {GOAL_IDLE_KIB:g} KiB")
        ax.set_ylim(bottom=0)
        panel(ax, LABELS[transport], "idle sessions open", sorted({f["requested"] for f in figures}))
    axes[0][0].set_ylabel("server RSS per idle session (KiB)")
    save(fig, path)


# -- the page --------------------------------------------------------------------------------


def write(raw: dict[str, Any], out: Path) -> None:
    """docs/benchmarks.md and its plots in docs/benchmarks/, from `raw`."""
    plots = out / "benchmarks"
    plots.mkdir(parents=True, exist_ok=True)
    parts = [
        "# Benchmarks: emcp against the official MCP Python SDK server",
        "Generated by `make bench` (`benchmarks/versus_sdk.py`, then `benchmarks/report.py`) from the "
        "figures in [benchmarks/raw.json](benchmarks/raw.json); do not edit by hand. Both servers run on the "
        "same machine in the same run: emcp (`emcp serve`, hypercorn on Trio) and the baseline, the SDK's "
        "`MCPServer` on uvicorn (`benchmarks/sdk_baseline.py`), serving the same `query` and `sql` tools over "
        "the same SQLite demo data, each in a process of its own.",
        machine_section(raw),
        "## Against the goals\n\n" + goals(raw),
    ]
    if "calls" in raw:
        plot_throughput(raw, plots / "throughput.png")
        plot_latency(raw, plots / "latency_cdf.png")
        parts.append(calls_section(raw))
    if "idle" in raw:
        plot_idle(raw, plots / "idle.png")
        parts.append(idle_section(raw))
    if "large" in raw:
        plot_large(raw, plots / "large.png")
        parts.append(large_section(raw))
    if "cancel" in raw:
        parts.append(cancel_section(raw))
    parts.append(
        "## Reproducing\n\n"
        "`make bench` runs everything with the defaults; `make bench ARGS='--quick'` checks every section "
        "in a few minutes; `make bench ARGS='--only idle --idle 1000 10000 20000'` re-runs one section and "
        "keeps the others' figures. `python benchmarks/report.py` re-renders this page from raw.json."
    )
    (out / "benchmarks.md").write_text("\n\n".join(parts) + "\n")


def dump(raw: dict[str, Any]) -> str:
    """raw.json text: indented, but each list of numbers on one line (latencies would take thousands)."""
    text = json.dumps(raw, indent=1)
    return (
        re.sub(
            r"\[\s*((?:-?[\d.e+-]+,\s*)*-?[\d.e+-]+)\s*\]", lambda m: "[" + re.sub(r"\s+", "", m.group(1)) + "]", text
        )
        + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="re-render docs/benchmarks.md from raw figures")
    default = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "raw.json"
    parser.add_argument("raw", type=Path, nargs="?", default=default)
    args = parser.parse_args()
    write(json.loads(args.raw.read_text()), args.raw.parent.parent)


if __name__ == "__main__":
    main()
