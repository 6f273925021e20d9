"""The real `lookout run` with its state dir on a real 200 KiB tmpfs, a real mosquitto: broker outage, the
spool fills the disk, the broker returns, space returns, a second outage (issue #15, item 6).

Before: the first failed COMMIT was followed by "cannot rollback - no transaction is active", the service
died within seconds (no report, no `stopped` status) and died again at every restart.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.telemetry.spool import DISK_FULL, RESERVE_BYTES

from ..conftest import fill_disk
from ..service.live_device import start_run, stop_run
from .conftest import wait_until

FPS = 20.0


def _free(path: Path) -> int:
    return shutil.disk_usage(path).free


def _seqs(sub) -> set[int]:
    return {m.json()["seq"] for m in sub.on("/detections")}


def _metrics_after(sub, t: float) -> list[dict]:
    return [m for m in (x.json() for x in sub.on("/metrics")) if m["ts"] > t]


@pytest.mark.slow
@pytest.mark.broker
def test_full_disk_outage_and_recovery(
    persistent_broker, collect, tiny_tmpfs, clean_env, tmp_path: Path
) -> None:
    state = tiny_tmpfs("state", 200)
    filler = state / "filler"
    filler.write_bytes(b"\0" * 40 * 1024)  # another program's file: the space that returns later
    sub = collect(persistent_broker, ["lookout/full-dev/#"], client_id="full-monitor", persistent=True)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "full-dev"\nstate_dir = "{state}"\n[source]\ntype = "synthetic"\n[pipeline]\nfps = {FPS}\n'
        f'[mqtt]\nurl = "{persistent_broker.url}"\npublish_empty = true\nmetrics_interval_s = 1.0\n'
        "homeassistant = false\nreconnect_max_s = 1.0\n"
    )
    report = tmp_path / "report.json"
    proc = start_run(clean_env, "--config", str(cfg), "--report", str(report))

    def running(pred):  # a wait that fails at once, with the service's stderr, when it has died
        def check():
            if proc.poll() is not None:
                pytest.fail(f"the service died ({proc.returncode}): {proc.communicate()[1][-3000:]}")
            return pred()

        return check

    try:
        wait_until(running(lambda: len(sub.on("/detections")) >= 10), 90, "first detections")
        # 1. outage: the spool fills the disk, then cannot keep more; the service keeps running
        persistent_broker.stop_process()
        wait_until(running(lambda: _free(state) < RESERVE_BYTES), 90, "the spool to fill the disk")
        time.sleep(3.0)  # frames keep coming: ~60 detections that nothing can keep
        assert proc.poll() is None, proc.communicate()[1][-3000:]

        # 2. the broker returns (the disk still full): what is spooled and what is new both arrive,
        # and the loss is counted with its reason in metrics and status
        persistent_broker.start_process()
        t_up = time.time()
        wait_until(
            running(lambda: any(m.json()["ts"] > t_up + 1 for m in sub.on("/detections"))), 60, "new ones"
        )
        m = wait_until(
            lambda: [x for x in _metrics_after(sub, t_up) if x["spool_drop_reasons"].get(DISK_FULL)], 30,
            "metrics counting the drops",
        )[-1]  # fmt: skip
        assert m["spool_dropped"] >= m["spool_drop_reasons"][DISK_FULL] > 0
        status = [s.json() for s in sub.on("/status") if s.json().get("state") == "online"][-1]
        assert status["spool_drop_reasons"].get(DISK_FULL, 0) > 0, status

        # 3. space returns; the backlog is gone from the spool and it keeps messages again
        filler.unlink()
        t_free = time.time()
        wait_until(
            running(lambda: any(x["spool_depth"] <= 5 for x in _metrics_after(sub, t_free))), 30, "empty"
        )
        dropped_before = _metrics_after(sub, t_free)[-1]["spool_dropped"]

        # 4. a second outage after recovery: everything is spooled and delivered, nothing dropped
        seq_before = max(_seqs(sub))
        persistent_broker.stop_process()
        time.sleep(3.0)
        persistent_broker.start_process()
        t_up2 = time.time()
        wait_until(
            running(lambda: any(m.json()["ts"] > t_up2 + 1 for m in sub.on("/detections"))), 60, "again"
        )
        assert proc.poll() is None
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err and "cannot rollback" not in err
    rep = json.loads(report.read_text())
    last = rep["mqtt"]["last_seq"]
    wait_until(lambda: max(_seqs(sub)) >= last, 30, "the last seq")
    seqs = _seqs(sub)
    missing = set(range(1, last + 1)) - seqs
    assert missing and max(missing) < seq_before, "only the first outage lost messages"
    assert set(range(seq_before, last + 1)) <= seqs, "the second outage lost none"
    dropped = rep["mqtt"]["dropped"]
    assert rep["mqtt"]["dropped_reasons"] == {DISK_FULL: dropped}
    assert dropped == dropped_before, "nothing dropped after space returned"
    # every detection that was not kept is counted; the rest of the count is metrics (one a second)
    assert len(missing) <= dropped <= len(missing) + 2 * 60, (len(missing), dropped)


@pytest.mark.broker
def test_a_run_that_starts_on_a_full_disk_keeps_running(
    broker, collect, tiny_tmpfs, clean_env, tmp_path
) -> None:
    """No room for the spool file at all: the service spools in memory, publishes, runs to its frame limit
    and exits 0 (before: exit 2 at every start, a restart loop under systemd)."""
    state = tiny_tmpfs("state", 128)
    fill_disk(state)
    sub = collect(broker, ["lookout/full-start/#"])
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "full-start"\nstate_dir = "{state}"\n[source]\ntype = "synthetic"\n[pipeline]\nfps = {FPS}\n'
        f'[mqtt]\nurl = "{broker.url}"\npublish_empty = true\nhomeassistant = false\n'
    )
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "app", "run", "--config", str(cfg), "--report", str(report),
                        "--max-frames", "40"], env=clean_env, capture_output=True, text=True, timeout=180)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    assert "spooling in memory" in r.stderr
    rep = json.loads(report.read_text())
    assert rep["mqtt"]["spool_storage"].startswith(f"memory: {DISK_FULL}")
    # the disk stayed full: every detection went out directly, none was lost
    wait_until(lambda: len(_seqs(sub)) >= 40, 30, "40 detections")
    assert sorted(_seqs(sub)) == list(range(1, 41)) and rep["mqtt"]["dropped"] == 0
    assert sub.on("/status")[-1].json()["state"] == "stopped"
