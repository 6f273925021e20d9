"""`lookout run --source video` whose file is deleted mid-run ends by itself (#15 item 13)."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import cv2
import paho.mqtt.client as mqtt

FRAMES = 60


def test_run_ends_when_its_video_file_is_deleted(broker, lookout_cmd, clean_env, tmp_path: Path) -> None:
    from app.vision.demo import demo_frame

    video = tmp_path / "cam.avi"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    for i in range(FRAMES):
        w.write(demo_frame(i))
    w.release()
    online = threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    sub.on_message = lambda _c, _u, m: json.loads(m.payload).get("state") == "online" and online.set()
    sub.connect(broker.host, broker.port)
    sub.subscribe("lookout/gone-1/status", qos=1)
    sub.loop_start()
    report = tmp_path / "r.json"
    proc = subprocess.Popen(
        [*lookout_cmd, "run", "--source", str(video), "--fps", "10", "--report", str(report), "--device-id",
         "gone-1", "--broker", broker.url, "--state-dir", str(tmp_path / "state")],
        env=clean_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert online.wait(60), "the service did not come online"
        time.sleep(0.5)  # --source FILE is read once (loop = false); at 10 fps that takes 6 s
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        video.unlink()
        out, err = proc.communicate(timeout=60)
    finally:
        sub.loop_stop()
        sub.disconnect()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "is gone; ending" in err
    summary = json.loads(out.strip().splitlines()[-1])
    # the open file was still read to its end (a capped, live pipeline may drop a stale frame: counted)
    assert summary["frames"] + summary["dropped_frames"] == FRAMES, summary
    assert json.loads(report.read_text())["frames"] == summary["frames"]
