"""The real `lookout run` service through broker outages: every seq arrives, the pipeline never stops."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from ..service.live_device import start_run, stop_run
from .conftest import broker_outage, wait_until

OUTAGE_S = 10.0


def service(config: Path, report: Path, env: dict) -> subprocess.Popen:
    return start_run(env, "--config", str(config), "--report", str(report))


def write_config(tmp_path: Path, url: str, video: Path) -> Path:
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "outage-dev"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[source]\ntype = "opencv"\nuri = "{video}"\nloop = true\nrealtime = true\n'
        "[pipeline]\nfps = 20.0\n"
        f'[mqtt]\nurl = "{url}"\npublish_empty = true\nmetrics_interval_s = 1.0\nhomeassistant = false\n'
        "reconnect_max_s = 1.0\n"
    )
    return cfg


def unique_seqs(collector) -> list[int]:
    return sorted({m.json()["seq"] for m in collector.on("/detections")})


@pytest.mark.slow
def test_broker_stopped_10s_mid_run(
    persistent_broker, collect, demo_video, clean_env, tmp_path: Path
) -> None:
    sub = collect(persistent_broker, ["lookout/outage-dev/#"], client_id="outage-monitor", persistent=True)
    proc = service(write_config(tmp_path, persistent_broker.url, demo_video), tmp_path / "r.json", clean_env)
    try:
        sub.wait_for("/detections", 20, timeout_s=60)
        t_down, t_up = broker_outage(persistent_broker, OUTAGE_S)
        wait_until(
            lambda: any(m.json()["ts"] > t_up + 1 for m in sub.on("/detections")), 60, "detections after"
        )
        assert proc.poll() is None
    finally:
        err = stop_run(proc)
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    published = report["detections_published"]
    wait_until(lambda: len(unique_seqs(sub)) >= published, 30, "every seq")
    seqs = unique_seqs(sub)
    assert seqs == list(range(1, published + 1)), (
        f"missing: {sorted(set(range(1, published + 1)) - set(seqs))[:10]}"
    )
    # first arrivals are in seq order (redeliveries after reconnect may repeat a seq)
    first: list[int] = []
    for m in sub.on("/detections"):
        s = m.json()["seq"]
        if s not in first:
            first.append(s)
    assert first == sorted(first)
    # the pipeline kept running during the outage: frames captured then were delivered afterwards
    during = [m.json() for m in sub.on("/detections") if t_down + 1 < m.json()["ts"] < t_up - 1]
    assert len(during) >= 0.5 * 20 * (OUTAGE_S - 2)


@pytest.mark.slow
def test_service_killed_while_broker_down_then_both_restart(
    persistent_broker, collect, demo_video, clean_env, tmp_path: Path
) -> None:
    sub = collect(persistent_broker, ["lookout/outage-dev/#"], client_id="kill-monitor", persistent=True)
    cfg = write_config(tmp_path, persistent_broker.url, demo_video)
    proc = service(cfg, tmp_path / "r1.json", clean_env)
    try:
        sub.wait_for("/detections", 10, timeout_s=60)
        persistent_broker.stop_process()
        time.sleep(3.0)  # detections pile up in the spool
    finally:
        proc.kill()  # kill -9: paho's in-memory queue dies with it; the spool does not
        proc.communicate(timeout=30)
    persistent_broker.start_process()
    proc2 = service(cfg, tmp_path / "r2.json", clean_env)
    try:
        wait_until(lambda: len(sub.on("/detections")) > 0 and max(unique_seqs(sub)) > 100, 90, "new seqs")
    finally:
        err = stop_run(proc2)
    assert proc2.returncode == 0, err[-2000:]
    last = json.loads((tmp_path / "r2.json").read_text())["mqtt"]["last_seq"]
    wait_until(lambda: len(unique_seqs(sub)) >= last, 30, "every seq")
    assert unique_seqs(sub) == list(range(1, last + 1))
