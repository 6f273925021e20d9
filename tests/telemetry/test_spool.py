"""The SQLite store-and-forward spool: order, acks, bounds, drop policies, persisted seq."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from app.telemetry.spool import PRIO_HIGH, Spool, SpoolError


def test_put_pending_ack_in_order(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    ids = [s.put("t/a", f"m{i}".encode(), 1, False) for i in range(5)]
    assert ids == sorted(ids) and s.depth == 5
    rows = s.pending(10)
    assert [r.payload for r in rows] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [r.payload for r in s.pending(2, exclude=[ids[0]])] == [b"m1", b"m2"]
    s.ack(ids[1])
    s.ack_many([ids[0], 999_999])
    assert [r.payload for r in s.pending(10)] == [b"m2", b"m3", b"m4"] and s.depth == 3


def test_high_priority_first_and_replace_keeps_only_newest(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db")
    s.put("d", b"1")
    s.put("status", b"old", retain=True, prio=PRIO_HIGH, replace=True)
    s.put("d", b"2")
    s.put("status", b"new", retain=True, prio=PRIO_HIGH, replace=True)
    rows = s.pending(10)
    assert [(r.topic, r.payload, r.retain) for r in rows] == [
        ("status", b"new", True),
        ("d", b"1", False),
        ("d", b"2", False),
    ]
    assert s.dropped == 0  # superseded is not lost


def test_survives_reopen_with_seq_and_dropped(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db", max_messages=3)
    for i in range(5):
        s.put_seq("d", lambda seq, i=i: f"{i}:{seq}".encode())
    assert s.dropped == 2 and s.last_seq == 5
    s.close()
    s2 = Spool(tmp_path / "s.db", max_messages=3)
    assert s2.depth == 3 and s2.dropped == 2 and s2.last_seq == 5
    assert [r.payload for r in s2.pending(10)] == [b"2:3", b"3:4", b"4:5"]
    assert s2.put_seq("d", lambda seq: str(seq).encode())[1] == 6


def test_drop_newest_rejects_but_consumes_seq(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db", max_messages=2, drop_policy="drop_newest")
    assert s.put_seq("d", lambda q: b"a")[1] == 1
    assert s.put_seq("d", lambda q: b"b")[1] == 2
    msg_id, seq = s.put_seq("d", lambda q: b"c")
    assert msg_id is None and seq == 3 and s.dropped == 1  # the consumer sees the gap at 3
    assert [r.payload for r in s.pending(10)] == [b"a", b"b"]


def test_age_bound(tmp_path: Path) -> None:
    s = Spool(tmp_path / "s.db", max_age_s=60)
    s.put("d", b"old")
    s.put("d", b"new")
    rows = s.pending(10)
    # purge as if 61 s had passed since the first put only
    assert s.purge_expired(now=rows[0].created + 60.5) >= 1
    assert s.dropped >= 1 and all(r.payload != b"old" for r in s.pending(10))


def test_bad_settings_and_unwritable_path(tmp_path: Path) -> None:
    with pytest.raises(SpoolError, match="drop_policy"):
        Spool(tmp_path / "s.db", drop_policy="drop_random")  # type: ignore[arg-type]
    (tmp_path / "file").write_text("x")
    with pytest.raises(SpoolError, match="file is not a directory"):
        Spool(tmp_path / "file" / "s.db")


WRITER = textwrap.dedent(
    """
    import sys
    from app.telemetry.spool import Spool
    s = Spool(sys.argv[1])
    while True:
        _, seq = s.put_seq("d", lambda seq: str(seq).encode())
        if seq == 200:
            print("200 written", flush=True)
    """
)


def test_seq_is_gap_free_after_kill_9(tmp_path: Path) -> None:
    """A writer killed mid-stream: every seq allocated is in the spool, none skipped or repeated."""
    db = tmp_path / "s.db"
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(db)], stdout=subprocess.PIPE, text=True,
                         cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "200 written"  # it keeps writing: the kill lands mid-stream
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    s = Spool(db)
    seqs = [int(r.payload) for r in s.pending(10**6)]
    assert seqs == list(range(1, s.last_seq + 1)) and s.depth == len(seqs)
