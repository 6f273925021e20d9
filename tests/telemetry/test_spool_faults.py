"""The spool under faults: a full disk (a real tiny tmpfs), a corrupt database file, a state dir that is
not a directory (issue #15, items 6 and 8).

Before: a failed COMMIT on a full disk was followed by a ROLLBACK that raised "cannot rollback - no
transaction is active" (the process died, and died again at every restart); a corrupt spool.sqlite
stopped `lookout run` with exit 2 "file is not a database"; a state dir that is a file gave a traceback.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from app.telemetry.spool import DISK_FULL, Spool, SpoolError, SpoolWriteError

from ..conftest import fill_disk


def _detection(seq: int) -> bytes:
    return json.dumps({"seq": seq, "detections": [], "pad": "x" * 300}).encode()


def _fill(s: Spool, failures_wanted: int) -> tuple[list[int], list[int], list[int]]:
    """put_seq until `failures_wanted` writes failed: (stored seqs, stored ids, failed seqs)."""
    stored, ids, failed = [], [], []
    for _ in range(5000):
        try:
            msg_id, seq = s.put_seq("lookout/d/detections", _detection)
            stored.append(seq)
            ids.append(msg_id)
        except SpoolWriteError as exc:
            assert exc.reason == DISK_FULL, exc
            assert json.loads(exc.payload)["seq"] == exc.seq  # what could not be kept, for a direct send
            failed.append(exc.seq)
            s.note_dropped(exc.reason)
            if len(failed) >= failures_wanted:
                break
    return stored, ids, failed


def test_full_disk_counts_every_message_it_could_not_keep_and_recovers(tiny_tmpfs) -> None:
    state = tiny_tmpfs("state", 200)
    filler = state / "filler"
    filler.write_bytes(b"\0" * 40 * 1024)  # someone else's file: space that "returns" later
    s = Spool(state / "spool.sqlite")
    stored, ids, failed = _fill(s, 20)
    assert len(stored) >= 20 and len(failed) == 20
    assert sorted(stored + failed) == list(range(1, len(stored) + len(failed) + 1))  # no seq used twice
    assert s.dropped == 20 and s.drop_reasons == {DISK_FULL: 20}
    with pytest.raises(SpoolWriteError) as err:
        s.put("lookout/d/status", b'{"state": "online"}', retain=True, replace=True)
    assert err.value.reason == DISK_FULL and err.value.payload == b'{"state": "online"}'
    last = s.last_seq
    s.close()

    # a restart on the full disk: it opens, and the seq and the counts are where they were
    s = Spool(state / "spool.sqlite")
    assert s.last_seq == last and s.dropped == 20 and s.drop_reasons == {DISK_FULL: 20}
    assert s.depth == len(stored)

    # the broker takes the backlog: deleting it works on the full disk, and frees room for new messages
    s.ack_many(ids)
    assert s.depth == 0
    msg_id, seq = s.put_seq("lookout/d/detections", _detection)
    assert msg_id is not None and seq == last + 1

    # full again, until space returns
    stored2, _, failed2 = _fill(s, 5)
    assert failed2 and s.drop_reasons == {DISK_FULL: 25}
    filler.unlink()
    msg_id, seq = s.put_seq("lookout/d/detections", _detection)
    assert msg_id is not None and seq == failed2[-1] + 1
    s.close()
    s = Spool(state / "spool.sqlite")
    assert s.last_seq == seq and s.dropped == 25 and s.depth == len(stored2) + 2
    s.close()


def test_corrupt_spool_is_moved_aside_and_the_seq_continues(tmp_path: Path, caplog) -> None:
    path = tmp_path / "spool.sqlite"
    s = Spool(path)
    for _ in range(5):
        s.put_seq("d", _detection)
    s.close()
    garbage = b"this is not a database " * 200
    path.write_bytes(garbage)
    with caplog.at_level(logging.WARNING):
        s = Spool(path)
    aside = s.moved_aside
    assert aside is not None and aside.parent == tmp_path and aside.read_bytes() == garbage  # kept
    assert str(aside) in caplog.text
    assert s.last_seq == 5 and s.put_seq("d", _detection)[1] == 6  # the consumer sees no repeated seq
    s.close()


def test_damaged_pages_are_found_at_open(tmp_path: Path) -> None:
    path = tmp_path / "spool.sqlite"
    s = Spool(path)
    for _ in range(300):
        s.put_seq("d", _detection)
    s.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[5 * 4096 : 5 * 4096 + 64] = b"\xff" * 64  # a b-tree page in the middle, header intact
    path.write_bytes(bytes(data))
    s = Spool(path)
    assert s.moved_aside is not None and s.last_seq == 300 and s.depth == 0
    s.close()


def test_corrupt_spool_that_cannot_be_moved_says_what_to_do(tiny_tmpfs) -> None:
    state = tiny_tmpfs("ro", 64)
    (state / "spool.sqlite").write_bytes(b"garbage" * 100)
    subprocess.run(["mount", "-o", "remount,ro", str(state)], check=True)
    with pytest.raises(SpoolError) as err:
        Spool(state / "spool.sqlite")
    msg = str(err.value)
    assert "\n" not in msg and str(state / "spool.sqlite") in msg and "move it" in msg, msg


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(lookout_cmd: list[str], env: dict, state: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*lookout_cmd, "run", "--source", "synthetic", "--max-frames", "3", "--state-dir", str(state),
         "--broker", f"mqtt://127.0.0.1:{_closed_port()}"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip


def test_run_with_a_corrupt_spool_starts_fresh(lookout_cmd, clean_env, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "spool.sqlite").write_bytes(b"garbage" * 100)
    r = _run(lookout_cmd, clean_env, state)
    assert r.returncode == 0, r.stderr[-3000:]
    aside = [p for p in state.iterdir() if p.name.startswith("spool.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes() == b"garbage" * 100
    assert str(aside[0]) in r.stderr and "Traceback" not in r.stderr


def test_run_with_a_state_dir_that_is_a_file_is_one_line(lookout_cmd, clean_env, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("I am a file")
    r = _run(lookout_cmd, clean_env, state)
    assert r.returncode == 2, r.stderr[-3000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(state) in lines[0] and "not a directory" in lines[0], r.stderr


def test_second_run_on_the_same_state_dir_stops_in_one_line(lookout_cmd, clean_env, tmp_path: Path) -> None:
    state = tmp_path / "state"
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # a broker that is not there: the spool is opened all the same
    url = f"mqtt://127.0.0.1:{port.getsockname()[1]}"
    first = subprocess.Popen(
        [*lookout_cmd, "run", "--source", "synthetic", "--fps", "5", "--state-dir", str(state), "--broker", url],
        env=clean_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        lock = state / "lookout.lock"
        for _ in range(600):  # until the first run holds the state dir (its pid written), at most 60 s
            if lock.is_file() and lock.read_text().strip() == str(first.pid):
                break
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.1)
        second = subprocess.run(
            [*lookout_cmd, "run", "--source", "synthetic", "--max-frames", "1", "--state-dir", str(state),
             "--broker", url], env=clean_env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        first.terminate()
        first.communicate(timeout=60)
        port.close()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"in use by another lookout run (pid {first.pid})" in lines[0], second.stderr


def test_the_state_dir_lock_goes_with_its_holder(tmp_path: Path) -> None:
    from app.state_lock import StateDirInUse, StateDirLock

    first = StateDirLock(tmp_path)
    with pytest.raises(StateDirInUse, match=rf"in use by another lookout run \(pid {os.getpid()}\)"):
        StateDirLock(tmp_path)
    first.release()
    StateDirLock(tmp_path).release()  # free again: nothing stale left behind


def test_a_spool_that_cannot_be_created_on_a_full_disk_runs_in_memory(tiny_tmpfs, caplog) -> None:
    """Before: SpoolError "database or disk is full", so `lookout run` exited 2 at every systemd restart."""
    state = tiny_tmpfs("state", 128)
    fill_disk(state)
    s = Spool(state / "spool.sqlite")
    assert s.storage.startswith(f"memory: {DISK_FULL}")
    assert "spooling in memory" in caplog.text
    # the disk is still full, and the memory spool keeps messages (the disk's reserve is not its business)
    ids = [s.put_seq("lookout/d/detections", _detection)[0] for _ in range(3)]
    assert s.depth == 3 and s.last_seq == 3
    s.ack_many(ids)
    assert s.depth == 0
    s.close()
