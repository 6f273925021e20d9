"""A source that fails mid-run leaves the service running and reporting `degraded`."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt

from .live_device import start_run, stop_run


def write_avi(path: Path, frames: int) -> Path:
    from app.vision.demo import demo_frame

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(frames):
        w.write(demo_frame(i))
    w.release()
    return path


def test_file_truncated_mid_run_goes_degraded_and_keeps_running(broker, clean_env, tmp_path: Path) -> None:
    video = write_avi(tmp_path / "cam.avi", 120)
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        f'device_id = "trunc-dev"\nstate_dir = "{tmp_path / "state"}"\n'
        f'[source]\ntype = "opencv"\nuri = "{video}"\nloop = true\nrealtime = true\n'
        "[reconnect]\ninitial_s = 0.2\nmax_s = 0.5\n"
        f'[mqtt]\nurl = "{broker.url}"\nmetrics_interval_s = 1.0\nhomeassistant = false\n'
    )
    states: list[str] = []
    lock = threading.Lock()

    def on_message(_c, _u, msg) -> None:
        with lock:
            states.append(json.loads(msg.payload)["state"])

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = on_message
    sub.connect(broker.host, broker.port)
    sub.subscribe("lookout/trunc-dev/status", qos=1)
    sub.loop_start()
    proc = start_run(clean_env, "--config", str(cfg), "--report", str(tmp_path / "r.json"))
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "online" not in states:
            time.sleep(0.1)
        assert "online" in states
        time.sleep(1.0)
        os.truncate(video, video.stat().st_size // 3)  # the camera file is cut while being read
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and "degraded" not in states:
            time.sleep(0.1)
        assert "degraded" in states, states
        time.sleep(2.0)
        assert proc.poll() is None, "the service must keep running on a failing source"
    finally:
        err = stop_run(proc)
        sub.loop_stop()
        sub.disconnect()
    assert proc.returncode == 0, err[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["source"]["degraded_events"] >= 1
    assert report["source"]["failures"] >= 1
    assert report["frames"] > 0
    assert states[-1] == "stopped"
