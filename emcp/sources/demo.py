"""The embedded demo dataset, so `emcp serve` has edge data to show with nothing else installed.

It imitates what an EdgeLake node holds for its own demo database
`new_company`: a month of readings from 50 devices, their event log and a
device registry. The generator is deterministic (fixed seeds, no clock), so
every install serves the same rows and tests can rely on them.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import random
import sqlite3
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

#: Bump whenever the generated rows change: an older file is then regenerated.
DEMO_VERSION = 1
DEMO_DATABASE = "new_company"

SENSOR_ROWS = 1_000_000
EVENT_ROWS = 20_000
DEVICE_COUNT = 50
#: One reading every STEP seconds, the devices taking turns: each device reports
#: every STEP * DEVICE_COUNT = 150 s, and the data spans about 35 days.
STEP = 3
START = dt.datetime(2026, 1, 1)
SEED = 20260101

_DAY = 86_400

_SCHEMA = """
CREATE TABLE devices (
    device TEXT PRIMARY KEY,
    location TEXT,
    kind TEXT,
    installed TEXT
);
CREATE TABLE sensor (
    row_id INTEGER PRIMARY KEY,
    timestamp TEXT NOT NULL,
    device TEXT NOT NULL,
    value REAL NOT NULL,
    unit TEXT NOT NULL
);
CREATE TABLE events (
    row_id INTEGER PRIMARY KEY,
    timestamp TEXT,
    device TEXT,
    level TEXT,
    message TEXT
);
"""

# Built after the inserts: filling an index from sorted data is much faster
# than updating it row by row.
_INDEXES = """
CREATE INDEX sensor_device_timestamp ON sensor (device, timestamp);
CREATE INDEX sensor_timestamp ON sensor (timestamp);
CREATE INDEX events_timestamp ON events (timestamp);
"""

_SITES = ("plant-north", "plant-south", "warehouse-east", "depot-west", "office-hq")
_AREAS = ("boiler-room", "cold-store", "line-1", "line-2", "roof", "loading-dock", "server-room")


class _Kind:
    """How one kind of device reads: a daily curve around a base, plus noise."""

    __slots__ = ("amplitude", "base", "name", "noise", "spread", "unit")

    def __init__(self, name: str, unit: str, base: float, spread: float, amplitude: float, noise: float):
        self.name = name
        self.unit = unit
        self.base = base  # typical reading
        self.spread = spread  # how far one device's own base sits from `base`
        self.amplitude = amplitude  # day/night swing (negative: lowest in the afternoon)
        self.noise = noise  # peak-to-peak noise of one reading


_KINDS = (
    _Kind("temperature", "C", 21.0, 4.0, 5.0, 0.6),
    _Kind("temperature", "C", 21.0, 4.0, 5.0, 0.6),
    _Kind("humidity", "%", 55.0, 10.0, -12.0, 2.0),
    _Kind("temperature", "C", 21.0, 4.0, 5.0, 0.6),
    _Kind("pressure", "hPa", 1013.0, 6.0, 1.5, 0.4),
)


def ensure_demo_data(data_dir: Path) -> Path:
    """Make sure `data_dir` holds the current demo database, generating it if needed.

    Safe against crashes and concurrent starts: the database is built under a
    private temporary name and renamed into place, so `new_company.db` is
    either absent, an older complete version, or the current complete one.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / f"{DEMO_DATABASE}.db"
    if _version_of(target) == DEMO_VERSION:
        return data_dir
    fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=f"{DEMO_DATABASE}.db.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.chmod(0o644)  # mkstemp's 0600 is for the unfinished file, not the dataset
        _generate(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return data_dir


def _version_of(path: Path) -> int | None:
    """The generator version that wrote `path`, or None if it is missing or unreadable."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return int(version)


def _generate(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        # Nothing to protect while building: a failed build is thrown away whole.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -131072")  # 128 MiB, so index builds sort in memory
        conn.execute("PRAGMA temp_store = MEMORY")
        conn.execute("BEGIN")
        _execute_script(conn, _SCHEMA)
        conn.executemany("INSERT INTO devices VALUES (?, ?, ?, ?)", _devices())
        conn.executemany("INSERT INTO sensor VALUES (?, ?, ?, ?, ?)", _sensor_rows())
        conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?)", _event_rows())
        _execute_script(conn, _INDEXES)
        conn.execute(f"PRAGMA user_version = {DEMO_VERSION}")
        conn.execute("COMMIT")
    finally:
        conn.close()
    # The rename must not be able to land before the data does.
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _execute_script(conn: sqlite3.Connection, script: str) -> None:
    """Run `;`-separated statements inside the open transaction (`executescript` would commit it)."""
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _device_name(index: int) -> str:
    return f"dev-{index:03d}"


def _devices() -> list[tuple[str, str, str, str]]:
    rng = random.Random(SEED)
    rows = []
    for i in range(DEVICE_COUNT):
        kind = _KINDS[i % len(_KINDS)]
        location = f"{_SITES[i % len(_SITES)]}/{rng.choice(_AREAS)}"
        installed = dt.date(2024, 1, 1) + dt.timedelta(days=rng.randrange(700))
        rows.append((_device_name(i), location, kind.name, installed.isoformat()))
    return rows


def _timestamps(count: int) -> Iterator[str]:
    """`count` timestamps STEP seconds apart from START, without a datetime per row."""
    days = (count * STEP) // _DAY + 1
    dates = [(START.date() + dt.timedelta(days=d)).isoformat() for d in range(days)]
    times = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(_DAY)]
    for i in range(count):
        s = i * STEP
        yield f"{dates[s // _DAY]} {times[s % _DAY]}"


def _sensor_rows() -> Iterator[tuple[int, str, str, float, str]]:
    rng = random.Random(SEED + 1)
    days = (SENSOR_ROWS * STEP) // _DAY + 1
    kinds = [_KINDS[d % len(_KINDS)] for d in range(DEVICE_COUNT)]
    names = [_device_name(d) for d in range(DEVICE_COUNT)]
    bases = [k.base + k.spread * (rng.random() * 2 - 1) for k in kinds]
    # Day-to-day "weather": each device's day sits a little above or below its base.
    weather = [[k.amplitude * 0.5 * (rng.random() * 2 - 1) for _ in range(days)] for k in kinds]
    # Coolest at 03:00, warmest at 15:00.
    curve = [math.sin(2 * math.pi * (s - 9 * 3600) / _DAY) for s in range(_DAY)]
    timestamps = _timestamps(SENSOR_ROWS)
    random_ = rng.random
    for i in range(SENSOR_ROWS):
        d = i % DEVICE_COUNT
        s = i * STEP
        kind = kinds[d]
        value = bases[d] + kind.amplitude * curve[s % _DAY] + weather[d][s // _DAY] + kind.noise * (random_() - 0.5)
        yield (i + 1, next(timestamps), names[d], round(value, 2), kind.unit)


_MESSAGES = {
    "info": ("heartbeat ok", "configuration reloaded", "connection restored", "firmware up to date"),
    "warn": ("battery at {n}%", "reading outside expected range", "clock drift of {n} ms corrected"),
    "error": ("sensor read timeout", "lost connection to gateway", "checksum mismatch in frame {n}"),
}


def _event_rows() -> Iterator[tuple[int, str, str, str, str]]:
    rng = random.Random(SEED + 2)
    span = SENSOR_ROWS * STEP
    seconds = sorted(rng.randrange(span) for _ in range(EVENT_ROWS))
    levels = rng.choices(("info", "warn", "error"), weights=(80, 15, 5), k=EVENT_ROWS)
    for i, (s, level) in enumerate(zip(seconds, levels, strict=True)):
        stamp = (START + dt.timedelta(seconds=s)).strftime("%Y-%m-%d %H:%M:%S")
        message = rng.choice(_MESSAGES[level]).format(n=rng.randrange(1, 100))
        yield (i + 1, stamp, _device_name(rng.randrange(DEVICE_COUNT)), level, message)
