"""Fleet history in SQLite (WAL): bounded-rate device samples and bench documents, with retention."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from app.errors import ConfigError

SAMPLE_COLUMNS = (
    "device_id",
    "online",
    "state",
    "runtime",
    "model",
    "fallback",
    "fps",
    "infer_p90_ms",
    "power_w",
    "power_source",
    "energy_mj_per_inference",
    "temp_c",
    "cpu_percent",
    "rss_mb",
    "throttled",
    "under_voltage",
    "spool_depth",
    "detections_per_min",
    "seq_gaps",
)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS samples (ts REAL NOT NULL, {", ".join(c + " " for c in SAMPLE_COLUMNS)});
CREATE INDEX IF NOT EXISTS samples_dev_ts ON samples (device_id, ts);
CREATE INDEX IF NOT EXISTS samples_ts ON samples (ts);
CREATE TABLE IF NOT EXISTS bench (ts REAL NOT NULL, device_id TEXT NOT NULL, payload TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS bench_ts ON bench (ts);
"""
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """'90s', '30m', '24h', '7d', '2w' or plain seconds -> seconds (ConfigError naming the text)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(
            f"duration {text!r}: expected a positive number with s, m, h, d or w (e.g. 24h, 7d)"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return v


class Store:
    """One SQLite file; safe to call from the monitor's threads (one connection behind a lock)."""

    def __init__(self, path: str | Path, retention_s: float | None = None) -> None:
        self.path = Path(path)
        self.retention_s = retention_s
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"fleet database {self.path}: {exc}") from None
        self._lock = threading.Lock()
        self._last_prune = 0.0
        self.prune()

    def add_samples(self, rows: list[dict[str, Any]], ts: float) -> None:
        """Insert one sample per registry row (as returned by Registry.snapshot), then prune hourly."""
        q = f"INSERT INTO samples (ts, {', '.join(SAMPLE_COLUMNS)}) VALUES ({', '.join('?' * (len(SAMPLE_COLUMNS) + 1))})"
        data = [(ts, *(_cell(r.get(c)) for c in SAMPLE_COLUMNS)) for r in rows]
        with self._lock, self._db:
            self._db.executemany(q, data)
        if time.time() - self._last_prune > 3600:
            self.prune()

    def add_bench(self, device_id: str, ts: float, payload_json: str) -> None:
        """Record a bench document seen at `ts`; the same document seen again only refreshes its ts."""
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT rowid, payload FROM bench WHERE device_id = ? ORDER BY ts DESC LIMIT 1", (device_id,)
            ).fetchone()
            if row and row[1] == payload_json:
                self._db.execute("UPDATE bench SET ts = ? WHERE rowid = ?", (ts, row[0]))
            else:
                self._db.execute(
                    "INSERT INTO bench (ts, device_id, payload) VALUES (?, ?, ?)",
                    (ts, device_id, payload_json),
                )

    def prune(self, now: float | None = None) -> int:
        """Delete rows older than the retention; returns how many were deleted."""
        now = time.time() if now is None else now
        self._last_prune = now
        if not self.retention_s:
            return 0
        cutoff = now - self.retention_s
        with self._lock, self._db:
            n = self._db.execute("DELETE FROM samples WHERE ts < ?", (cutoff,)).rowcount
            n += self._db.execute("DELETE FROM bench WHERE ts < ?", (cutoff,)).rowcount
        return n

    def samples(self, since: float, device_id: str | None = None) -> list[dict[str, Any]]:
        """Samples at or after `since` (Unix s), oldest first."""
        cols = ("ts", *SAMPLE_COLUMNS)
        q = f"SELECT {', '.join(cols)} FROM samples WHERE ts >= ?"
        args: tuple = (since,)
        if device_id is not None:
            q += " AND device_id = ?"
            args += (device_id,)
        with self._lock:
            rows = self._db.execute(q + " ORDER BY ts", args).fetchall()
        return [dict(zip(cols, r, strict=True)) for r in rows]

    def latest_bench(self, since: float = 0.0) -> dict[str, dict]:
        """The newest bench document per device (parsed), received at or after `since`."""
        with self._lock:
            rows = self._db.execute(
                "SELECT device_id, payload FROM bench WHERE ts >= ? ORDER BY ts", (since,)
            ).fetchall()
        out: dict[str, dict] = {}
        for dev, text in rows:
            try:
                out[dev] = json.loads(text)
            except ValueError:
                continue
        return out

    def count(self, table: str = "samples") -> int:
        if table not in ("samples", "bench"):
            raise ValueError(table)
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
