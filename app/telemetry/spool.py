"""Store-and-forward spool: SQLite (WAL) outbox for QoS 1 messages, plus the persisted detections seq.

A message is written here before it is handed to paho and deleted when its PUBACK arrives, so a
broker outage or a crash (kill -9) loses nothing while the spool has room. Bounded by count
(`max_messages`, then `drop_policy`) and by age (`max_age_s`); every drop is counted in `dropped`,
which is persisted. Thread-safe (one connection behind a lock).

Durability: WAL with synchronous=NORMAL survives a process crash; a power cut may lose the last
few commits (use synchronous="FULL" to trade write speed for that).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from app.errors import LookoutError

DropPolicy = Literal["drop_oldest", "drop_newest"]
PRIO_HIGH = 0  # status and command replies: jump the backlog (other topics, so per-topic order holds)
PRIO_NORMAL = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    prio INTEGER NOT NULL DEFAULT 1,
    correlation BLOB,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_prio_id ON messages (prio, id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('seq', 0), ('dropped', 0);
"""


class SpoolError(LookoutError):
    """The spool database cannot be opened or written."""


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation: bytes | None
    created: float


class Spool:
    """SQLite outbox. `put` before publishing, `pending` to send in order, `ack` on PUBACK."""

    def __init__(
        self,
        path: str | Path,
        max_messages: int = 100_000,
        max_age_s: float = 7 * 24 * 3600,
        drop_policy: DropPolicy = "drop_oldest",
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
    ) -> None:
        if drop_policy not in ("drop_oldest", "drop_newest"):
            raise SpoolError(f"spool drop_policy {drop_policy!r}: expected drop_oldest or drop_newest")
        if max_messages < 1:
            raise SpoolError(f"spool max_messages must be >= 1 (got {max_messages})")
        self.path = Path(path)
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self.drop_policy = drop_policy
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.executescript(_SCHEMA)
            self._depth = self._db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except (sqlite3.Error, OSError) as exc:
            raise SpoolError(f"spool {self.path}: {exc}") from None
        self._seq, self._dropped, self._closed = meta["seq"], meta["dropped"], False

    # --- writing -----------------------------------------------------------------------------------
    def put(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        prio: int = PRIO_NORMAL,
        replace: bool = False,
        correlation: bytes | None = None,
    ) -> int | None:
        """Store one message; its id, or None when drop_newest rejected it (counted in `dropped`).

        `replace=True` first deletes older pending messages on the same topic (retained topics:
        only the newest matters); superseded messages are not counted as dropped.
        """
        return self._put(topic, lambda _seq: payload, qos, retain, prio, replace, correlation, False)[0]

    def put_seq(
        self, topic: str, make_payload: Callable[[int], bytes], qos: int = 1, retain: bool = False
    ) -> tuple[int | None, int]:
        """Allocate the next seq and store `make_payload(seq)` in the same transaction: (id, seq).

        The seq is consumed even when drop_newest rejects the message, so the consumer sees the gap.
        """
        return self._put(topic, make_payload, qos, retain, PRIO_NORMAL, False, None, True)

    def _put(
        self,
        topic: str,
        make_payload: Callable[[int], bytes],
        qos: int,
        retain: bool,
        prio: int,
        replace: bool,
        correlation: bytes | None,
        with_seq: bool,
    ) -> tuple[int | None, int]:
        with self._lock, self._txn():
            seq = 0
            if with_seq:
                seq = self._db.execute(
                    "UPDATE meta SET value = value + 1 WHERE key = 'seq' RETURNING value"
                ).fetchone()[0]
                self._seq = seq
            payload = make_payload(seq)
            if replace:
                self._depth -= self._db.execute("DELETE FROM messages WHERE topic = ?", (topic,)).rowcount
            if self._depth >= self.max_messages:
                if self.drop_policy == "drop_newest":
                    self._count_dropped(1)
                    return None, seq
                excess = self._depth - self.max_messages + 1
                n = self._db.execute(
                    "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                    (excess,),
                ).rowcount
                self._depth -= n
                self._count_dropped(n)
            cur = self._db.execute(
                "INSERT INTO messages (topic, payload, qos, retain, prio, correlation, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (topic, payload, qos, int(retain), prio, correlation, time.time()),
            )
            self._depth += 1
            return cur.lastrowid, seq

    # --- reading and acknowledging -----------------------------------------------------------------
    def pending(self, limit: int = 100, exclude: Iterable[int] = ()) -> list[SpooledMessage]:
        """Up to `limit` unacknowledged messages, high priority first, then in put order."""
        skip = set(exclude)
        with self._lock:
            if self._closed:
                raise SpoolError(f"spool {self.path} is closed")
            rows = self._db.execute(
                "SELECT id, topic, payload, qos, retain, correlation, created FROM messages ORDER BY prio, id LIMIT ?",
                (limit + len(skip),),
            ).fetchall()
        out = [
            SpooledMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6])
            for r in rows
            if r[0] not in skip
        ]
        return out[:limit]

    def ack(self, msg_id: int) -> None:
        self.ack_many((msg_id,))

    def ack_many(self, ids: Iterable[int]) -> None:
        """Delete acknowledged messages (unknown ids are ignored: dropped or superseded meanwhile)."""
        ids = list(ids)
        if not ids:
            return
        with self._lock, self._txn():
            n = self._db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ids]).rowcount
            self._depth -= n

    def purge_expired(self, now: float | None = None) -> int:
        """Drop messages older than max_age_s; returns how many (counted in `dropped`)."""
        cutoff = (time.time() if now is None else now) - self.max_age_s
        with self._lock, self._txn():
            n = self._db.execute("DELETE FROM messages WHERE created < ?", (cutoff,)).rowcount
            self._depth -= n
            self._count_dropped(n)
            return n

    # --- counters ----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages dropped by the bounds since the spool file was created (persisted)."""
        return self._dropped

    @property
    def last_seq(self) -> int:
        """The last seq allocated (0 before the first)."""
        return self._seq

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _count_dropped(self, n: int) -> None:
        if n:
            self._db.execute("UPDATE meta SET value = value + ? WHERE key = 'dropped'", (n,))
            self._dropped += n

    def _txn(self) -> _Txn:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")
        return _Txn(self._db)


class _Txn:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; SQLite errors become SpoolError."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise SpoolError(f"spool: {exc}") from None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as err:
                self.db.execute("ROLLBACK")
                raise SpoolError(f"spool: {err}") from None
        self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise SpoolError(f"spool: {exc}") from None
