"""The fleet history schema as numbered migrations, one list for SQLite and PostgreSQL.

Each step is applied once, in order, inside one transaction that also records it in
`schema_migrations`; `{real}`, `{int}`, `{bool}` and `{text}` are filled per database. Step 1 is the
schema the SQLite history had before migrations were versioned (`IF NOT EXISTS`, so an old file is
adopted as version 1 and then upgraded). Append new steps; never edit an applied one.
"""

from __future__ import annotations

from typing import NamedTuple


class Migration(NamedTuple):
    version: int
    description: str
    statements: tuple[str, ...]


TYPES = {
    "sqlite": {"real": "REAL", "int": "INTEGER", "bool": "BOOLEAN", "text": "TEXT"},
    "postgresql": {"real": "DOUBLE PRECISION", "int": "BIGINT", "bool": "BOOLEAN", "text": "TEXT"},
}

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "samples and bench documents",
        (
            """CREATE TABLE IF NOT EXISTS samples (
                ts {real} NOT NULL, device_id {text}, online {bool}, state {text}, runtime {text},
                model {text}, fallback {text}, fps {real}, infer_p90_ms {real}, power_w {real},
                power_source {text}, energy_mj_per_inference {real}, temp_c {real}, cpu_percent {real},
                rss_mb {real}, throttled {bool}, under_voltage {bool}, spool_depth {int},
                detections_per_min {int}, seq_gaps {int})""",
            "CREATE INDEX IF NOT EXISTS samples_dev_ts ON samples (device_id, ts)",
            "CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts)",
            "CREATE TABLE IF NOT EXISTS bench (ts {real} NOT NULL, device_id {text} NOT NULL, payload {text} NOT NULL)",
            "CREATE INDEX IF NOT EXISTS bench_ts ON bench (ts)",
        ),
    ),
    Migration(
        2,
        "inference p50/p99 and the monitor that wrote each sample (several monitors, one history)",
        (
            "ALTER TABLE samples ADD COLUMN infer_p50_ms {real}",
            "ALTER TABLE samples ADD COLUMN infer_p99_ms {real}",
            "ALTER TABLE samples ADD COLUMN monitor {text}",
            "ALTER TABLE bench ADD COLUMN monitor {text}",
        ),
    ),
    Migration(
        3,
        "the device's software version with each sample (a simulated device says so there)",
        ("ALTER TABLE samples ADD COLUMN version {text}",),
    ),
)

LATEST = MIGRATIONS[-1].version
VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version {int} PRIMARY KEY, description {text} NOT NULL, applied_at {real} NOT NULL)"
)


def render(sql: str, dialect: str) -> str:
    """One statement with the column types of `dialect` filled in."""
    return sql.format(**TYPES[dialect])
