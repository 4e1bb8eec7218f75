"""A small sensor table shared by the SQL unit tests, so each checks real SQLite results."""

from __future__ import annotations

ROWS = [
    (1, "2026-01-01 00:00:00", "dev-001", 20.5, "C"),
    (2, "2026-01-01 01:00:00", "dev-001", 22.0, "C"),
    (3, "2026-01-02 00:00:00", "dev-002", 18.0, "C"),
    (4, "2026-01-02 01:00:00", "dev-002", 25.5, "C"),
    (5, "2026-01-02 02:00:00", "dev-003", 101.3, "kPa"),
    (6, "2026-01-03 00:00:00", "dev-003", None, None),
]
