"""Fleet history: bounded-rate device samples and bench documents, with retention.

One class for both databases: a SQLite file (WAL; embedded, the default) or PostgreSQL
(`postgresql://...`, psycopg 3), which several monitors on several machines write at once and any
`fleet serve` / `fleet report` reads. Same schema, same SQL, same retention; the schema comes from the
numbered steps in app/fleet/migrations.py. Each sample names the monitor that wrote it.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from app.errors import ConfigError
from app.fleet import migrations
from app.redact import redact

log = logging.getLogger(__name__)

SAMPLE_COLUMNS = (
    "device_id",
    "online",
    "state",
    "runtime",
    "model",
    "fallback",
    "fps",
    "infer_p50_ms",
    "infer_p90_ms",
    "infer_p99_ms",
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
    "version",
)
_BOOL_COLUMNS = ("online", "throttled", "under_voltage")
_JSON_COLUMNS = ("fallback",)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PG_SCHEMES = ("postgresql://", "postgres://")
_PG_LOCK_KEY = 0x6C6F6F6B  # "look": serialises migrations of monitors starting together


def parse_duration(text: str) -> float:
    """'90s', '30m', '24h', '7d', '2w' or plain seconds -> seconds (ConfigError naming the text)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise ConfigError(
            f"duration {text!r}: expected a positive number with s, m, h, d or w (e.g. 24h, 7d)"
        )
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def is_postgres(target: str | Path) -> bool:
    return str(target).startswith(_PG_SCHEMES)


def _cell(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return v


def _uncell(col: str, v: Any) -> Any:
    if v is None:
        return None
    if col in _BOOL_COLUMNS:
        return bool(v)
    if col in _JSON_COLUMNS:
        try:
            return json.loads(v)
        except (TypeError, ValueError):
            return v
    return v


class Store:
    """History in SQLite (a path) or PostgreSQL (a postgresql:// URL); safe across threads (one lock).

    `monitor` names the writer in every row (several monitors may share one history).
    """

    def __init__(
        self, target: str | Path, retention_s: float | None = None, monitor: str | None = None
    ) -> None:
        self.retention_s = retention_s
        self.monitor = monitor
        self.dialect = "postgresql" if is_postgres(target) else "sqlite"
        self.location = redact(str(target)) if self.dialect == "postgresql" else str(target)
        self.path = Path(target) if self.dialect == "sqlite" else None
        self._target = str(target)
        self._lock = threading.Lock()
        self._db: Any = None
        self._last_prune = 0.0
        self._connect()
        self.schema_version = self._migrate()
        self.prune()

    # ---- connection and transactions ---------------------------------------------------------------
    def _connect(self) -> None:
        try:
            if self.dialect == "sqlite":
                assert self.path is not None
                self.path.parent.mkdir(parents=True, exist_ok=True)
                db = sqlite3.connect(self.path, check_same_thread=False, timeout=10, isolation_level=None)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
            else:
                try:
                    import psycopg
                except ImportError:
                    raise ConfigError(
                        "fleet database postgresql://...: psycopg is not installed (pip install 'lookout[fleet]')"
                    ) from None
                db = psycopg.connect(self._target, autocommit=True, connect_timeout=10)
        except ConfigError:
            raise
        except Exception as exc:  # sqlite3.Error, OSError, psycopg.Error
            raise ConfigError(f"fleet database {self.location}: {_one_line(exc)}") from None
        self._db = db

    def _sql(self, q: str) -> str:
        return q.replace("?", "%s") if self.dialect == "postgresql" else q

    @contextmanager
    def _tx(self, write: bool = True) -> Iterator[Any]:
        """One transaction under the lock; reconnects once when PostgreSQL dropped the connection."""
        with self._lock:
            if self._db is None or getattr(self._db, "closed", False):
                self._connect()
            db = self._db
            begin = "BEGIN IMMEDIATE" if (write and self.dialect == "sqlite") else "BEGIN"
            db.execute(begin)
            try:
                yield _Cursor(db, self._sql)
            except BaseException:
                try:
                    db.execute("ROLLBACK")
                except Exception:  # the connection itself is gone: reconnect next time
                    self._drop_connection()
                raise
            else:
                db.execute("COMMIT")

    def _drop_connection(self) -> None:
        with suppress(Exception):
            self._db.close()
        self._db = None

    def _migrate(self) -> int:
        """Apply the pending numbered migrations (serialised across processes); returns the version."""
        d = self.dialect
        try:
            with self._tx() as cur:
                if d == "postgresql":
                    cur.execute("SELECT pg_advisory_xact_lock(?)", (_PG_LOCK_KEY,))
                cur.execute(migrations.render(migrations.VERSION_TABLE, d))
                row = cur.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
                current = row[0] or 0
                if current > migrations.LATEST:
                    raise ConfigError(
                        f"fleet database {self.location} has schema version {current}; this lookout knows "
                        f"up to {migrations.LATEST}: upgrade lookout"
                    )
                for m in migrations.MIGRATIONS:
                    if m.version <= current:
                        continue
                    for stmt in m.statements:
                        cur.execute(migrations.render(stmt, d))
                    cur.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                        (m.version, m.description, time.time()),
                    )
                    log.info("fleet database %s: migrated to schema version %d", self.location, m.version)
                return max(current, migrations.LATEST)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"fleet database {self.location}: {_one_line(exc)}") from None

    # ---- writes ------------------------------------------------------------------------------------
    def add_samples(self, rows: list[dict[str, Any]], ts: float) -> None:
        """Insert one sample per registry row (as returned by Registry.snapshot), then prune hourly."""
        cols = ("ts", "monitor", *SAMPLE_COLUMNS)
        q = f"INSERT INTO samples ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        data = [(ts, self.monitor, *(_cell(r.get(c)) for c in SAMPLE_COLUMNS)) for r in rows]
        with self._tx() as cur:
            cur.executemany(q, data)
        if time.time() - self._last_prune > 3600:
            self.prune()

    def add_bench(self, device_id: str, ts: float, payload_json: str) -> None:
        """Record a bench document seen at `ts`; the same document seen again only refreshes its ts."""
        with self._tx() as cur:
            row = cur.execute(
                "SELECT ts, payload FROM bench WHERE device_id = ? ORDER BY ts DESC LIMIT 1", (device_id,)
            ).fetchone()
            if row and row[1] == payload_json:
                cur.execute("UPDATE bench SET ts = ? WHERE device_id = ? AND ts = ?", (ts, device_id, row[0]))
            else:
                cur.execute(
                    "INSERT INTO bench (ts, device_id, payload, monitor) VALUES (?, ?, ?, ?)",
                    (ts, device_id, payload_json, self.monitor),
                )

    def prune(self, now: float | None = None) -> int:
        """Delete rows older than the retention; returns how many were deleted."""
        now = time.time() if now is None else now
        self._last_prune = now
        if not self.retention_s:
            return 0
        cutoff = now - self.retention_s
        with self._tx() as cur:
            n = cur.execute("DELETE FROM samples WHERE ts < ?", (cutoff,)).rowcount
            n += cur.execute("DELETE FROM bench WHERE ts < ?", (cutoff,)).rowcount
        return n

    # ---- reads -------------------------------------------------------------------------------------
    def samples(
        self, since: float, device_id: str | None = None, until: float | None = None
    ) -> list[dict[str, Any]]:
        """Samples with since <= ts (<= until), oldest first; each names the monitor that wrote it."""
        cols = ("ts", "monitor", *SAMPLE_COLUMNS)
        q = f"SELECT {', '.join(cols)} FROM samples WHERE ts >= ?"
        args: tuple = (since,)
        if until is not None:
            q += " AND ts <= ?"
            args += (until,)
        if device_id is not None:
            q += " AND device_id = ?"
            args += (device_id,)
        with self._tx(write=False) as cur:
            rows = cur.execute(q + " ORDER BY ts", args).fetchall()
        return [{c: _uncell(c, v) for c, v in zip(cols, r, strict=True)} for r in rows]

    def has_device(self, device_id: str) -> bool:
        """Whether the history holds any sample of this device."""
        with self._tx(write=False) as cur:
            return (
                cur.execute("SELECT 1 FROM samples WHERE device_id = ? LIMIT 1", (device_id,)).fetchone()
                is not None
            )

    def latest_bench(self, since: float = 0.0, device_id: str | None = None) -> dict[str, dict]:
        """The newest bench document per device (parsed), received at or after `since`."""
        q, args = "SELECT device_id, payload FROM bench WHERE ts >= ?", (since,)
        if device_id is not None:
            q, args = q + " AND device_id = ?", (since, device_id)
        with self._tx(write=False) as cur:
            rows = cur.execute(q + " ORDER BY ts", args).fetchall()
        out: dict[str, dict] = {}
        for dev, text in rows:
            try:
                doc = json.loads(text)
            except ValueError:
                continue
            if isinstance(doc, dict):
                out[dev] = doc
        return out

    def count(self, table: str = "samples") -> int:
        if table not in ("samples", "bench"):
            raise ValueError(table)
        with self._tx(write=False) as cur:
            return cur.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._drop_connection()


class _Cursor:
    """The two databases' connections behind one tiny interface, with `?` placeholders."""

    def __init__(self, db: Any, sql: Any) -> None:
        self._db, self._sqlfix = db, sql

    def execute(self, q: str, args: tuple = ()) -> Any:
        return self._db.execute(self._sqlfix(q), args)

    def executemany(self, q: str, rows: list[tuple]) -> None:
        if hasattr(self._db, "executemany"):  # sqlite3
            self._db.executemany(self._sqlfix(q), rows)
        else:  # psycopg: executemany lives on a cursor (pipelined)
            with self._db.cursor() as c:
                c.executemany(self._sqlfix(q), rows)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
