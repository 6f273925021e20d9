"""Store-and-forward spool: SQLite (WAL) outbox for QoS 1 messages, plus the persisted seq counters
(`seq` of the detections topic, `events_seq` of the events topic: each gap-free on its own).

A message is written here before it is handed to paho and deleted when its PUBACK arrives, so a
broker outage or a crash (kill -9) loses nothing while the spool has room. Bounded by count
(`max_messages`, then `drop_policy`) and by age (`max_age_s`); every drop is counted in `dropped`
and by reason in `drop_reasons`, both persisted. Thread-safe (one connection behind a lock).

Faults:
- A full disk: new messages are refused while less than `RESERVE_BYTES` are free and the file has no
  free pages of its own, so that the room to delete acknowledged messages (which appends to the
  write-ahead log too) is kept: the spool frees itself once the broker takes its backlog. Below `CHECKPOINT_BELOW_BYTES` free, every write is
  followed by a checkpoint that truncates the write-ahead log (it would otherwise grow into the last of
  the disk with old versions of pages). A refused or failed write is rolled back and raises
  `SpoolWriteError`, which carries the payload and its seq so that the caller can send it directly or
  drop it and count it (`note_dropped`).
- A file that is not a usable database at open ("file is not a database", damaged pages found by
  quick_check) is renamed `<name>.corrupt-<time>` (kept, named in the log) and a fresh spool starts.
- The seq and the drop counters are mirrored in `<name>.counters.json` beside the spool: a fixed-size
  file rewritten in place, which needs no new blocks on a full disk and survives a corrupt database.
  At open the larger of each pair is taken, so neither fault makes a seq repeat.

Durability: WAL with synchronous=NORMAL survives a process crash; a power cut may lose the last
few commits (use synchronous="FULL" to trade write speed for that).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from app.errors import LookoutError

log = logging.getLogger("lookout.telemetry.spool")

DropPolicy = Literal["drop_oldest", "drop_newest"]
PRIO_HIGH = 0  # status and command replies: jump the backlog (other topics, so per-topic order holds)
PRIO_NORMAL = 1
SEQ_COUNTERS = ("seq", "events_seq")  # one persisted, gap-free counter per topic that carries a seq

# drop reasons (`drop_reasons` keys)
DROP_MAX_MESSAGES = "max_messages"
DROP_MAX_AGE = "max_age_s"
DISK_FULL = "disk full"

_CORRUPT = (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
_COUNTERS_SIZE = 512  # bytes of the mirror file, rewritten in place
_CHECKPOINT_EVERY_S = 1.0  # at most one rescue checkpoint per second while the disk stays full
ACK_CHUNK = 16  # acknowledged messages deleted per transaction
RESERVE_BYTES = 64 * 1024  # free space kept for deleting acknowledged messages: new ones are refused
REUSABLE_PAGES = 4  # free pages in the file that let a new message in on a full disk
CHECKPOINT_BELOW_BYTES = 1024 * 1024  # free space below which every write truncates the WAL

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
_UPSERT = "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value"

_R = TypeVar("_R")


class SpoolError(LookoutError):
    """The spool database cannot be opened or written."""


class SpoolWriteError(SpoolError):
    """A write failed and nothing was stored. `reason`: "disk full" or "spool error: ...". A failed put
    carries the message it could not keep (seq 0 when it had none), so the caller can send it."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.topic, self.payload, self.qos, self.retain = "", b"", 1, False
        self.correlation: bytes | None = None
        self.seq = 0

    def carrying(
        self, topic: str, payload: bytes, qos: int, retain: bool, correlation: bytes | None, seq: int
    ) -> SpoolWriteError:
        self.topic, self.payload, self.qos, self.retain = topic, payload, qos, retain
        self.correlation, self.seq = correlation, seq
        return self


class _Unusable(Exception):
    """Internal: the database file is corrupt (not a database, or damaged pages)."""


@dataclass(frozen=True)
class SpooledMessage:
    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    correlation: bytes | None
    created: float


def ensure_state_dir(path: Path) -> None:
    """Create the state directory; SpoolError (one line) when it cannot be one."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise SpoolError(
            f"state_dir {path} is not a directory (a file is in the way): point state_dir (--state-dir) at a folder"
        ) from None
    except OSError as exc:
        raise SpoolError(f"state_dir {path}: cannot create it: {exc.strerror or exc}") from None


def _is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL from SQLite, or ENOSPC from the OS."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    return isinstance(exc, sqlite3.Error) and write_failure_reason(exc) == DISK_FULL


def write_failure_reason(exc: sqlite3.Error) -> str:
    """`disk full` for SQLITE_FULL, else `spool error: <message>`."""
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
        return DISK_FULL
    return f"spool error: {exc}"


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
        self.moved_aside: Path | None = None  # where a corrupt spool file was moved at open
        self.storage = "file"  # or "memory: <why>" when the file could not be created (a full disk)
        self._lock = threading.Lock()
        self._closed = False
        self._last_rescue = 0.0
        self._mirror = _CounterMirror(self.path.with_suffix(".counters.json"))
        ensure_state_dir(self.path.parent)
        mirrored = self._mirror.read()
        unusable = ""
        try:
            try:
                meta = self._open(synchronous)
            except _Unusable as exc:
                unusable = str(exc)
                self.moved_aside = self._move_aside(unusable)
                meta = self._open(synchronous)
        except (sqlite3.Error, OSError, _Unusable) as exc:
            if not _is_disk_full(exc):
                raise SpoolError(f"spool {self.path}: {exc}") from None
            # no room for even an empty database: keep running on one in memory, rather than exit and
            # have systemd restart into the same full disk until it gives up
            meta = self._open(synchronous, ":memory:")
            self.storage = f"memory: {DISK_FULL} at start ({self.path} could not be created)"
            log.warning(
                "spool %s: the disk is full: spooling in memory (at most spool.max_messages) until the next "
                "start; messages not yet sent are lost if the process stops; free space under %s",
                self.path, self.path.parent,
            )  # fmt: skip
        # counters: 'seq', 'dropped' and 'dropped:<reason>'; the larger of database and mirror
        self._counts = {k: max(meta.get(k, 0), mirrored.get(k, 0)) for k in meta.keys() | mirrored.keys()}
        self._dirty = {k for k, v in self._counts.items() if v != meta.get(k)}  # saved by the next write
        if self.moved_aside is not None:
            seq = self._counts.get("seq", 0)
            known = (
                f"the seq continues at {seq + 1}"
                if mirrored
                else "the last seq is unknown (no mirror): seq restarts at 1"
            )
            log.warning(
                "spool %s was not usable (%s): moved aside to %s (kept; its unsent messages are not sent); "
                "started a fresh spool, %s",
                self.path, unusable, self.moved_aside, known,
            )  # fmt: skip

    # --- opening -------------------------------------------------------------------------------------
    def _open(self, synchronous: str, where: str = "") -> dict[str, int]:
        """Connect (to the spool file, or `where`), check, create the schema; the meta counters.
        _Unusable when the file is corrupt."""
        db = sqlite3.connect(where or str(self.path), isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={synchronous}")
            check = db.execute("PRAGMA quick_check(1)").fetchone()
            if check is None or check[0] != "ok":
                raise _Unusable(f"damaged pages: {check[0] if check else 'quick_check returned nothing'}")
            db.executescript(_SCHEMA)
            self._depth = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.DatabaseError as exc:
            db.close()
            if getattr(exc, "sqlite_errorcode", None) in _CORRUPT:
                raise _Unusable(str(exc)) from None
            raise
        except BaseException:
            db.close()
            raise
        self._db = db
        return meta

    def _move_aside(self, reason: str) -> Path:
        """Rename the corrupt file (and its -wal/-shm) to `<name>.corrupt-<time>`; SpoolError if impossible."""
        stamp = time.strftime("%Y%m%dT%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            os.rename(self.path, aside)
            for suffix in ("-wal", "-shm"):
                side = Path(f"{self.path}{suffix}")
                if side.exists():
                    os.rename(side, Path(f"{aside}{suffix}"))
        except OSError as exc:
            raise SpoolError(
                f"spool {self.path} is not usable ({reason}) and cannot be moved aside ({exc.strerror or exc}): "
                f"move it away (mv {self.path} {aside}) and start again"
            ) from None
        return aside

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
        SpoolWriteError (nothing stored) when the write fails.
        """
        return self._put(topic, lambda _seq: payload, qos, retain, prio, replace, correlation, None)[0]

    def put_seq(
        self,
        topic: str,
        make_payload: Callable[[int], bytes],
        qos: int = 1,
        retain: bool = False,
        *,
        counter: str = "seq",
    ) -> tuple[int | None, int]:
        """Allocate the next value of `counter` (SEQ_COUNTERS) and store `make_payload(seq)` in the same
        transaction: (id, seq).

        The seq is consumed even when the message is not stored (drop_newest, or a failed write whose
        SpoolWriteError carries it), so the consumer sees the gap and no seq is ever used twice.
        """
        if counter not in SEQ_COUNTERS:
            raise ValueError(f"unknown seq counter {counter!r}; expected one of {SEQ_COUNTERS}")
        return self._put(topic, make_payload, qos, retain, PRIO_NORMAL, False, None, counter)

    def _put(
        self,
        topic: str,
        make_payload: Callable[[int], bytes],
        qos: int,
        retain: bool,
        prio: int,
        replace: bool,
        correlation: bytes | None,
        counter: str | None,
    ) -> tuple[int | None, int]:
        with self._lock:
            self._check_open()
            seq = 0
            if counter is not None:
                seq = self._counts[counter] = self._counts.get(counter, 0) + 1  # consumed, whatever follows
                self._dirty.add(counter)
            payload = make_payload(seq)
            if not self._room_for_new() and not (self._rescue_checkpoint() and self._room_for_new()):
                self._mirror.write(self._counts)
                raise SpoolWriteError(
                    f"spool {self.path}: disk full (less than {RESERVE_BYTES // 1024} KiB free, kept for "
                    "deleting sent messages)",
                    DISK_FULL,
                ).carrying(topic, payload, qos, retain, correlation, seq)

            def body(staged: dict[str, int]) -> tuple[int | None, int]:
                db, depth = self._db, self._depth
                if replace:
                    depth -= db.execute("DELETE FROM messages WHERE topic = ?", (topic,)).rowcount
                if depth >= self.max_messages:
                    if self.drop_policy == "drop_newest":
                        _stage_drop(staged, DROP_MAX_MESSAGES, 1)
                        return None, depth
                    n = db.execute(
                        "DELETE FROM messages WHERE id IN (SELECT id FROM messages ORDER BY id LIMIT ?)",
                        (depth - self.max_messages + 1,),
                    ).rowcount
                    depth -= n
                    _stage_drop(staged, DROP_MAX_MESSAGES, n)
                cur = db.execute(
                    "INSERT INTO messages (topic, payload, qos, retain, prio, correlation, created) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, payload, qos, int(retain), prio, correlation, time.time()),
                )
                return cur.lastrowid, depth + 1

            try:
                msg_id = self._write(body)
            except SpoolWriteError as exc:
                self._mirror.write(self._counts)  # the consumed seq survives a restart even now
                raise exc.carrying(topic, payload, qos, retain, correlation, seq) from None
            return msg_id, seq

    def note_dropped(self, reason: str, n: int = 1) -> None:
        """Count messages that were neither stored nor sent (e.g. a full disk while the broker is down).

        Saved in the mirror at once (in place) and in the database with the next successful write."""
        if n <= 0:
            return
        with self._lock:
            for key in ("dropped", f"dropped:{reason}"):
                self._counts[key] = self._counts.get(key, 0) + n
                self._dirty.add(key)
            self._mirror.write(self._counts)

    # --- reading and acknowledging -----------------------------------------------------------------
    def pending(self, limit: int = 100, exclude: Iterable[int] = ()) -> list[SpooledMessage]:
        """Up to `limit` unacknowledged messages, high priority first, then in put order."""
        skip = set(exclude)
        with self._lock:
            self._check_open()
            try:
                rows = self._db.execute(
                    "SELECT id, topic, payload, qos, retain, correlation, created FROM messages ORDER BY prio, id LIMIT ?",
                    (limit + len(skip),),
                ).fetchall()
            except sqlite3.Error as exc:
                raise SpoolError(f"spool {self.path}: {exc}") from None
        out = [
            SpooledMessage(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), r[5], r[6])
            for r in rows
            if r[0] not in skip
        ]
        return out[:limit]

    def ack(self, msg_id: int) -> None:
        self.ack_many((msg_id,))

    def ack_many(self, ids: Iterable[int]) -> None:
        """Delete acknowledged messages (unknown ids are ignored: dropped or superseded meanwhile).

        In transactions of at most ACK_CHUNK ids, so each needs little room in the write-ahead log.
        SpoolWriteError when some cannot be deleted (a full disk): they stay, and the caller retries."""
        ids = list(ids)
        for start in range(0, len(ids), ACK_CHUNK):
            chunk = [(i,) for i in ids[start : start + ACK_CHUNK]]

            def body(_staged: dict[str, int], chunk: list[tuple[int]] = chunk) -> tuple[None, int]:
                n = self._db.executemany("DELETE FROM messages WHERE id = ?", chunk).rowcount
                return None, self._depth - n

            with self._lock:
                self._check_open()
                self._write(body)

    def purge_expired(self, now: float | None = None) -> int:
        """Drop messages older than max_age_s; returns how many (counted in `dropped`)."""
        cutoff = (time.time() if now is None else now) - self.max_age_s

        def body(staged: dict[str, int]) -> tuple[int, int]:
            n = self._db.execute("DELETE FROM messages WHERE created < ?", (cutoff,)).rowcount
            _stage_drop(staged, DROP_MAX_AGE, n)
            return n, self._depth - n

        with self._lock:
            self._check_open()
            return self._write(body)

    # --- counters ----------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        return self._depth

    @property
    def dropped(self) -> int:
        """Messages lost since the spool was created: dropped by the bounds, or not kept (persisted)."""
        return self._counts.get("dropped", 0)

    @property
    def drop_reasons(self) -> dict[str, int]:
        """`dropped` by reason: max_messages, max_age_s, disk full, spool error: ..."""
        return {
            k.split(":", 1)[1]: v for k, v in sorted(self._counts.items()) if k.startswith("dropped:") and v
        }

    @property
    def last_seq(self) -> int:
        """The last detections seq allocated (0 before the first)."""
        return self._counts.get("seq", 0)

    def last_of(self, counter: str) -> int:
        """The last value allocated from `counter` (0 before the first)."""
        return self._counts.get(counter, 0)

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()
                self._mirror.close()

    # --- internals ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"spool {self.path} is closed")

    def _write(self, body: Callable[[dict[str, int]], tuple[_R, int]]) -> _R:
        """BEGIN IMMEDIATE; body(staged drops) -> (result, new depth); save the counters; COMMIT.

        Nothing changes (in the file or here) unless the commit succeeds. On a full disk, checkpoint
        and try once more; then SpoolWriteError. The caller holds the lock."""
        db = self._db
        for attempt in (1, 2):
            staged: dict[str, int] = {}
            try:
                db.execute("BEGIN IMMEDIATE")
                result, depth = body(staged)
                counts = dict(self._counts)
                for key, n in staged.items():
                    counts[key] = counts.get(key, 0) + n
                keys = self._dirty | staged.keys()
                if keys:
                    db.executemany(_UPSERT, [(k, counts[k]) for k in sorted(keys)])
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:  # SQLite may have rolled back already (e.g. SQLITE_FULL at COMMIT)
                    with contextlib.suppress(sqlite3.Error):
                        db.execute("ROLLBACK")
                reason = write_failure_reason(exc)
                if attempt == 1 and reason == DISK_FULL and self._rescue_checkpoint():
                    continue
                raise SpoolWriteError(f"spool {self.path}: {exc}", reason) from None
            self._depth = depth
            if keys:
                self._counts = counts
                self._dirty.clear()
                self._mirror.write(counts)
            if self.storage == "file" and self._free_bytes() < CHECKPOINT_BELOW_BYTES:
                self._checkpoint()  # keep the WAL from taking the last of the disk
            return result
        raise AssertionError("unreachable")

    def _rescue_checkpoint(self) -> bool:
        """A checkpoint when the disk is full, at most once a second; True when it completed."""
        now = time.monotonic()
        if now - self._last_rescue < _CHECKPOINT_EVERY_S:
            return False
        self._last_rescue = now
        return self._checkpoint()

    def _checkpoint(self) -> bool:
        """Copy the write-ahead log into the database and truncate it (frees its old page versions)."""
        try:
            busy = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return False
        return busy == 0

    def _room_for_new(self) -> bool:
        """A new message fits without eating into the reserve: free disk space above RESERVE_BYTES, or
        free pages inside the database file (left by deleted messages) to take it. In memory: always
        (bounded by max_messages)."""
        if self.storage != "file" or self._free_bytes() >= RESERVE_BYTES:
            return True
        try:
            return self._db.execute("PRAGMA freelist_count").fetchone()[0] >= REUSABLE_PAGES
        except sqlite3.Error:
            return False

    def _free_bytes(self) -> int:
        """Space available in the spool's directory (a large number when it cannot be asked)."""
        try:
            st = os.statvfs(self.path.parent)
        except OSError:
            return 1 << 62
        return st.f_bavail * st.f_frsize


def _stage_drop(staged: dict[str, int], reason: str, n: int) -> None:
    if n:
        for key in ("dropped", f"dropped:{reason}"):
            staged[key] = staged.get(key, 0) + n


class _CounterMirror:
    """The counters as JSON in a fixed-size file, rewritten in place with pwrite (no new blocks)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def read(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("spool counters %s unreadable (%s): ignored", self.path, exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and type(v) is int and v >= 0}

    def write(self, counts: dict[str, int]) -> None:
        data = json.dumps(counts, sort_keys=True).encode()
        if len(data) >= _COUNTERS_SIZE:
            log.debug("spool counters do not fit %d bytes: not mirrored", _COUNTERS_SIZE)
            return
        try:
            if self._fd is None:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
                try:
                    if os.fstat(fd).st_size < _COUNTERS_SIZE:
                        os.pwrite(fd, b" " * _COUNTERS_SIZE, 0)  # allocate once; rewritten in place after
                except OSError:
                    os.close(fd)
                    raise
                self._fd = fd
            os.pwrite(self._fd, data.ljust(_COUNTERS_SIZE), 0)
        except OSError as exc:
            log.debug("spool counters %s not written: %s", self.path, exc)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
